/* attnlab: what the view shows of a sentence above the head view: the prediction (a
 * classifier), the translation (a translation run) and the attention rollout. Used by view.js;
 * text only through textContent (`el`, which mattered.js uses too).
 */
(function () {
  "use strict";

  /** A new `tag` element with class `cls` and text `text` (as text, never markup). */
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** Fill `box` with the prediction or translation of sentence `s`; marks `root` with
   * data-prediction or data-translation. Returns the section's title. */
  function prediction(box, s, root) {
    var title = "Prediction";
    box.replaceChildren();
    if (s.translation !== undefined) {
      title = "Translation";
      box.appendChild(el("div", "translation", s.translation));
      box.appendChild(el("div", "muted", (s.beam > 1 ? "beam search (beam " + s.beam +
        "), the best beam" : "greedy search") + (s.finished ? "" :
        "; cut at the length limit before the end of sentence")));
      root.dataset.translation = s.translation;
    } else if (!s.prediction) {
      box.appendChild(el("div", "muted", s.note || ("No classification head: the rollout " +
                                         "reads the mean of all tokens (the pooled sentence " +
                                         "embedding).")));
    } else {
      var pr = s.prediction;
      pr.probs.forEach(function (q, i) {
        var row = el("div", "bar" + (pr.labels[i] === pr.label ? " best" : ""));
        var name = el("span", "", pr.labels[i]);
        name.style.minWidth = "90px";
        var fill = el("div", "fill");
        fill.style.width = Math.round(200 * q) + "px";
        row.appendChild(name);
        row.appendChild(fill);
        row.appendChild(el("span", "", (100 * q).toFixed(1) + "%"));
        box.appendChild(row);
      });
      root.dataset.prediction = pr.label;
    }
    if (s.truncated) {
      var n = s.tokens ? s.tokens.length : s.kinds[0].key_tokens.length;
      box.appendChild(el("div", "muted", "The text was truncated to " + n + " tokens."));
    }
    return title;
  }

  /** Fill `box` with the tokens of `s`, shaded by their rollout relevance (if it has one). */
  function rollout(box, s) {
    var max = 0;
    box.replaceChildren();
    if (!s.rollout) return;
    s.rollout.forEach(function (v) { if (v > max) max = v; });
    s.tokens.forEach(function (t, i) {
      var span = el("span", s.special[i] ? "special" : "", t);
      var a = max > 0 ? s.rollout[i] / max : 0;
      span.style.background = "rgba(255, 140, 0, " + a.toFixed(3) + ")";
      span.title = "relevance " + s.rollout[i].toFixed(4);
      box.appendChild(span);
    });
  }

  window.AttnSummary = {prediction: prediction, rollout: rollout, el: el};
})();
