/* attnlab: the "what mattered" row, beside the rollout. For one decision (a classifier's
 * predicted label, or one generated token of a translation) every token is shaded by its
 * attribution score by the method picked: orange for the target, blue against it. Below: the
 * target's probability, the completeness gap (integrated gradients) and, when the run has a
 * faithfulness report, the method's figures beside random's. For a translation the source and
 * the target prefix are shaded, and under them the same generated token's cross-attention over
 * the source (last decoder layer, mean of its heads); a click on a generated token in the head
 * view (cross- or decoder self-attention, pieces) picks that decision.
 * Data (attnlab.inspect.mattered.mattered_block), per sentence:
 *   mattered: {tokens, special, source_length: S | null, targets: [D], method,
 *              decision_kinds: [kind names whose query row d is decision d],
 *              methods: [{name, scores: [D][L], probabilities: [D], gap: [D] | null,
 *                         details: {name: value}}],
 *              cross: [D][S] | null, note: why methods were left out | null} | null
 * and for the whole page: faithfulness: {split, n, data, methods: {NAME: {comprehensiveness,
 *   sufficiency, comprehensiveness_sem, ...}}} | null.
 * Text only through textContent. State on the section: data-ready, data-method,
 * data-decision, data-tokens (tokens shaded).
 */
(function () {
  "use strict";

  var el = window.AttnSummary.el;  // summary.js comes first in the page

  function words(name) { return name.replace(/_/g, " "); }

  function select(label, onChange) {
    var s = el("select");
    s.setAttribute("aria-label", label);
    s.addEventListener("change", function () { onChange(s.value); });
    return s;
  }

  function options(sel, items, value) {
    sel.replaceChildren();
    items.forEach(function (item) {
      var o = el("option", "", item[1]);
      o.value = item[0];
      sel.appendChild(o);
    });
    sel.value = value;
  }

  /** The largest |value| of tokens [0, stop) that are not special (else of all of them). */
  function largest(values, special, stop) {
    var max = 0, i;
    for (i = 0; i < stop; i++) if (!special[i]) max = Math.max(max, Math.abs(values[i]));
    if (max === 0) for (i = 0; i < stop; i++) max = Math.max(max, Math.abs(values[i]));
    return max;
  }

  /** Shade tokens [start, stop) of `tokens` in `box` by `values`, |value| = `max` in full
   * colour. Returns the number drawn. */
  function shade(box, tokens, special, values, start, stop, what, max) {
    for (var i = start; i < stop; i++) {
      var v = values[i], a = max > 0 ? Math.min(1, Math.abs(v) / max) : 0;
      var span = el("span", special[i] ? "special" : "", tokens[i]);
      span.style.background = (v >= 0 ? "rgba(230, 120, 20, " : "rgba(50, 110, 220, ") +
                              a.toFixed(3) + ")";
      span.dataset.index = String(i);
      span.dataset.score = String(v);
      span.title = what + " " + v.toPrecision(4);
      box.appendChild(span);
    }
    return stop - start;
  }

  function Mattered(section) {
    var self = this;
    this.section = section;
    this.m = null;
    this.faith = null;
    this.method = null;
    this.decision = 0;
    section.classList.add("mattered");
    section.appendChild(el("h2", "", "What mattered"));
    var controls = el("div", "controls");
    this.methodSelect = select("attribution method", function (v) { self.pick(v); });
    var l1 = el("label", "", "Method ");
    l1.appendChild(this.methodSelect);
    controls.appendChild(l1);
    this.decisionSelect = select("generated token", function (v) { self.showDecision(+v); });
    this.decisionLabel = el("label", "", "Generated token ");
    this.decisionLabel.appendChild(this.decisionSelect);
    controls.appendChild(this.decisionLabel);
    section.appendChild(controls);
    this.tokens = el("div", "tokens attribution");
    section.appendChild(this.tokens);
    this.crossBox = el("div");
    this.crossBox.appendChild(el("div", "muted", "Beside it, its cross-attention over the " +
                                 "source (last decoder layer, mean of the heads):"));
    this.cross = el("div", "tokens cross");
    this.crossBox.appendChild(this.cross);
    section.appendChild(this.crossBox);
    this.summary = el("div", "muted summary");
    section.appendChild(this.summary);
    this.note = el("div", "muted note");
    section.appendChild(this.note);
    this.faithfulness = el("div", "muted faithfulness");
    section.appendChild(this.faithfulness);
  }

  /** Show sentence `s` (its `mattered` entry; none: the row hides) and the run's report. */
  Mattered.prototype.setSentence = function (s, faithfulness) {
    var m = s ? s.mattered : null;
    if (m !== this.m) this.decision = 0;  // another sentence (not a redraw of this one)
    this.m = m || null;
    this.faith = faithfulness || null;
    this.section.style.display = m ? "" : "none";
    if (!m) {
      this.section.dataset.ready = "1";
      this.section.dataset.method = "";
      return;
    }
    var names = m.methods.map(function (e) { return e.name; });
    if (names.indexOf(this.method) < 0) this.method = m.method;
    options(this.methodSelect, names.map(function (n) { return [n, words(n)]; }), this.method);
    options(this.decisionSelect, m.targets.map(function (t, d) {
      return [String(d), d + ": " + t];
    }), String(this.decision));
    this.decisionLabel.style.display = m.source_length === null ? "none" : "";
    this.draw();
  };

  /** Show method `name`'s scores (also callable from scripts and tests). */
  Mattered.prototype.pick = function (name) {
    this.method = name;
    this.methodSelect.value = name;
    this.draw();
  };

  /** Show decision `d` (a generated token), if `kind` (the head view's attention kind, when
   * the click came from there) has its rows as decisions. */
  Mattered.prototype.showDecision = function (d, kind) {
    var m = this.m;
    if (!m || d < 0 || d >= m.targets.length) return;
    if (kind !== undefined && (m.decision_kinds || []).indexOf(kind) < 0) return;
    this.decision = d;
    this.decisionSelect.value = String(d);
    this.draw();
  };

  Mattered.prototype.entry = function () {
    var m = this.m, name = this.method;
    return m.methods.filter(function (e) { return e.name === name; })[0] || m.methods[0];
  };

  Mattered.prototype.draw = function () {
    var m = this.m, e = this.entry(), d = this.decision, S = m.source_length;
    // a translation's decision d sees the source and the target prefix up to itself
    var scores = e.scores[d];
    var stop = S === null ? m.tokens.length : Math.min(m.tokens.length, S + d + 1);
    var max = largest(scores, m.special, stop), n = 0;
    this.tokens.replaceChildren();
    if (S === null) {
      n = shade(this.tokens, m.tokens, m.special, scores, 0, stop, "score", max);
    } else {
      n = shade(this.tokens, m.tokens, m.special, scores, 0, S, "score", max);
      this.tokens.appendChild(el("span", "gap", "\u2192"));
      n += shade(this.tokens, m.tokens, m.special, scores, S, stop, "score", max);
    }
    this.cross.replaceChildren();
    var cross = m.cross && m.cross[d];
    this.crossBox.style.display = cross ? "" : "none";
    if (cross) shade(this.cross, m.tokens, m.special, cross, 0, cross.length, "weight",
                     largest(cross, m.special, cross.length));
    this.summary.textContent = this.describe(e, d);
    this.note.textContent = m.note || "";
    this.faithfulness.textContent = this.faithText(e.name);
    var ds = this.section.dataset;
    ds.method = e.name;
    ds.decision = String(d);
    ds.tokens = String(n);
    ds.ready = "1";
  };

  Mattered.prototype.describe = function (e, d) {
    var m = this.m, target = "\u201c" + m.targets[d] + "\u201d";
    var what = m.source_length === null ? "the predicted label " + target
                                        : "the generated token " + target;
    var details = Object.keys(e.details || {}).map(function (k) {
      return words(k) + " " + e.details[k];
    });
    var text = "Each token's score for " + what + " (probability " +
      e.probabilities[d].toFixed(3) + ") by " + words(e.name) +
      (details.length ? " (" + details.join(", ") + ")" : "") +
      ": orange for it, blue against it.";
    if (e.gap) text += " Completeness gap (sum of the scores minus f(input) \u2212 " +
                       "f(baseline)): " + e.gap[d].toPrecision(3) + ".";
    return text;
  };

  /** The method's faithfulness line, or nothing when the run has no report. */
  Mattered.prototype.faithText = function (name) {
    var f = this.faith;
    if (!f || !f.methods) return "";
    var where = "on " + (f.data ? f.data + "'s " : "the ") + (f.split || "?") + " split" +
                (f.n ? " (" + f.n + " sentences)" : "");
    var mine = f.methods[name], floor = f.methods.random;
    if (!mine) return "The run's faithfulness report (" + where + ") has no figures for " +
                      words(name) + ".";
    function figures(x) {
      return ["comprehensiveness", "sufficiency"].filter(function (k) {
        return typeof x[k] === "number";
      }).map(function (k) {
        var sem = x[k + "_sem"];
        return k + " " + x[k].toFixed(3) + (typeof sem === "number" ? " \u00b1 " +
                                            sem.toFixed(3) : "");
      }).join(", ");
    }
    var text = "Faithfulness of " + words(name) + " " + where + ": " + figures(mine) +
      " (comprehensiveness: higher is more faithful; sufficiency: lower is)";
    if (floor && name !== "random") text += "; random: " + figures(floor);
    return text + ".";
  };

  window.AttnMattered = {mount: function (section) { return new Mattered(section); }};
})();
