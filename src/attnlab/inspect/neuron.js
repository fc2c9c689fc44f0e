/* attnlab neuron view: one head's arithmetic for one query token, redone from the vectors.
 * Reads sentence.vectors of the payload (attnlab.inspect.html.attention_payload):
 *   [layer] {d_k, d_v, scale, q: [head] base64 float32 L*d_k, k: [...], v: [head] L*d_v,
 *            mask: null | [1 or H] base64 float32 L*L additive (0 seen, -Infinity blocked)}
 * and shows q, each k, q∘k, q·k, the scaled score (+ mask), the softmax weight, weight × v and
 * the output Σ weight × v. Text only through textContent; numbers on hover through title.
 * State for tests: data-* on the panel (data-ready, data-layer, data-head, data-query,
 * data-order, data-sorted) and on each key row (data-key, data-weight, data-dot, data-score,
 * data-blocked).
 */
(function () {
  "use strict";
  var LEGEND = "q (query): what this word is looking for \u00b7 k (key): what each word " +
    "offers \u00b7 q\u00b7k: how well they match \u00b7 \u00f7\u221ad_k keeps the scores in a " +
    "range where softmax is not too sharp \u00b7 softmax turns the scores into weights that " +
    "sum to 1 \u00b7 output = \u03a3 weight \u00d7 v (value)";
  var POS = "31, 119, 180", NEG = "214, 39, 40";  // blue for positive, red for negative

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** base64 of little-endian float32 -> Float64Array (the page computes in float64). */
  function floats(b64) {
    var s = atob(b64), n = s.length / 4, view = new DataView(new ArrayBuffer(s.length));
    for (var i = 0; i < s.length; i++) view.setUint8(i, s.charCodeAt(i));
    var out = new Float64Array(n);
    for (var j = 0; j < n; j++) out[j] = view.getFloat32(4 * j, true);
    return out;
  }

  function select(label, onChange) {
    var s = el("select");
    s.setAttribute("aria-label", label);
    s.addEventListener("change", function () { onChange(+s.value); });
    return s;
  }

  function fill(sel, names, value) {
    sel.replaceChildren();
    names.forEach(function (name, i) {
      var o = el("option", "", name);
      o.value = String(i);
      sel.appendChild(o);
    });
    sel.value = String(value);
  }

  function Panel(box) {
    var self = this;
    this.box = box;
    this.sentence = null;
    this.cache = {};
    this.state = {layer: 0, head: 0, query: 0, sorted: false};
    box.classList.add("neuron");
    box.appendChild(el("div", "muted legend", LEGEND));
    var bar = el("div", "controls");
    this.layerSelect = select("neuron layer", function (v) { self.show({layer: v}); });
    this.headSelect = select("neuron head", function (v) { self.show({head: v}); });
    this.querySelect = select("query token", function (v) { self.show({query: v}); });
    [["Layer ", this.layerSelect], ["Head ", this.headSelect],
     ["Query token ", this.querySelect]].forEach(function (pair) {
      var l = el("label", "", pair[0]);
      l.appendChild(pair[1]);
      bar.appendChild(l);
    });
    this.sortBox = el("input");
    this.sortBox.type = "checkbox";
    this.sortBox.setAttribute("aria-label", "sort by weight");
    this.sortBox.addEventListener("change", function () {
      self.show({sorted: self.sortBox.checked});
    });
    var sl = el("label", "", "");
    sl.appendChild(this.sortBox);
    sl.appendChild(document.createTextNode(" sort by weight"));
    bar.appendChild(sl);
    box.appendChild(bar);
    this.note = el("div", "muted");
    box.appendChild(this.note);
    this.body = el("div", "nv-scroll");
    box.appendChild(this.body);
  }

  /** Show a sentence of the payload (or null); keeps layer, head and query where they fit. */
  Panel.prototype.setSentence = function (s) {
    this.sentence = s;
    this.cache = {};
    this.show({});
  };

  /** Change any of {layer, head, query, sorted} and redraw (callable from scripts and tests). */
  Panel.prototype.show = function (change) {
    var st = this.state, s = this.sentence;
    Object.keys(change).forEach(function (k) { st[k] = change[k]; });
    this.box.dataset.ready = "0";
    this.body.replaceChildren();
    if (!s || !s.vectors) {
      this.note.textContent = s ? "Neuron view not available: " + s.vectors_note + "." : "";
      this.box.dataset.ready = "1";
      return;
    }
    var nLayers = s.vectors.length;
    st.layer = st.layer >= 0 && st.layer < nLayers ? st.layer : 0;
    st.head = st.head >= 0 && st.head < s.heads[st.layer] ? st.head : 0;
    st.query = st.query >= 0 && st.query < s.tokens.length ? st.query : 0;
    fill(this.layerSelect, s.vectors.map(function (_, i) { return String(i); }), st.layer);
    var heads = [];
    for (var h = 0; h < s.heads[st.layer]; h++) heads.push(String(h));
    fill(this.headSelect, heads, st.head);
    fill(this.querySelect, s.tokens.map(function (t, i) { return i + ": " + t; }), st.query);
    this.sortBox.checked = st.sorted;
    var lv = s.vectors[st.layer];
    this.note.textContent = "Layer " + st.layer + ", head " + st.head + ": d_k = " + lv.d_k +
      ", so the scores are divided by \u221a" + lv.d_k + " = " + (1 / lv.scale).toFixed(3) + ".";
    this.draw(s, this.compute(s, st.layer, st.head, st.query));
    var b = this.box.dataset;
    b.layer = String(st.layer);
    b.head = String(st.head);
    b.query = String(st.query);
    b.sorted = st.sorted ? "1" : "0";
    b.ready = "1";
  };

  Panel.prototype.vectors = function (layer, head, kind) {
    var key = layer + ":" + head + ":" + kind;
    if (!this.cache[key]) {
      var lv = this.sentence.vectors[layer];
      var list = lv[kind];
      if (kind === "mask") list = list && list[list.length > 1 ? head : 0];
      else list = list[head];
      this.cache[key] = list ? floats(list) : null;
    }
    return this.cache[key];
  };

  /** The head's arithmetic for query i: per key j, q∘k_j, q·k_j, score_j, weight_j, w_j·v_j. */
  Panel.prototype.compute = function (s, layer, head, i) {
    var lv = s.vectors[layer], L = s.tokens.length, dk = lv.d_k, dv = lv.d_v;
    var Q = this.vectors(layer, head, "q"), K = this.vectors(layer, head, "k");
    var V = this.vectors(layer, head, "v"), M = this.vectors(layer, head, "mask");
    var q = Q.subarray(i * dk, (i + 1) * dk), keys = [], top = -Infinity;
    for (var j = 0; j < L; j++) {
      var k = K.subarray(j * dk, (j + 1) * dk), prod = new Float64Array(dk), dot = 0;
      for (var c = 0; c < dk; c++) { prod[c] = q[c] * k[c]; dot += prod[c]; }
      var score = dot * lv.scale + (M ? M[i * L + j] : 0);
      if (score > top) top = score;
      keys.push({j: j, k: k, prod: prod, dot: dot, score: score,
                 blocked: score === -Infinity});
    }
    var total = 0;
    keys.forEach(function (r) { r.e = r.blocked ? 0 : Math.exp(r.score - top); total += r.e; });
    var out = new Float64Array(dv);
    keys.forEach(function (r) {
      r.weight = total > 0 ? r.e / total : 0;
      r.wv = new Float64Array(dv);
      for (var c = 0; c < dv; c++) {
        r.wv[c] = r.weight * V[r.j * dv + c];
        out[c] += r.wv[c];
      }
    });
    return {q: q, keys: keys, out: out, dk: dk};
  };

  function maxAbs(arrays) {
    var m = 0;
    arrays.forEach(function (a) {
      for (var i = 0; i < a.length; i++) if (Math.abs(a[i]) > m) m = Math.abs(a[i]);
    });
    return m || 1;
  }

  /** A vector as a row of coloured cells (blue > 0, red < 0); each number on hover. */
  function cells(values, scale, name) {
    var row = el("span", "vec"), w = Math.max(4, Math.min(12, Math.floor(256 / values.length)));
    for (var i = 0; i < values.length; i++) {
      var x = values[i], c = el("span", "vcell");
      c.style.width = w + "px";
      c.style.background = "rgba(" + (x >= 0 ? POS : NEG) + ", " +
        Math.min(1, Math.abs(x) / scale).toFixed(3) + ")";
      c.title = name + "[" + i + "] = " + x.toFixed(4);
      row.appendChild(c);
    }
    return row;
  }

  /** A table cell holding text or one element. */
  function cell(tag, cls, content) {
    var td = el(tag, cls);
    if (typeof content === "string") td.textContent = content;
    else if (content) td.appendChild(content);
    return td;
  }

  Panel.prototype.draw = function (s, r) {
    var keys = r.keys.slice();
    if (this.state.sorted) keys.sort(function (a, b) { return b.weight - a.weight || a.j - b.j; });
    var sq = maxAbs([r.q]), sk = maxAbs(keys.map(function (x) { return x.k; }));
    var sp = maxAbs(keys.map(function (x) { return x.prod; }));
    var sv = maxAbs(keys.map(function (x) { return x.wv; }).concat([r.out]));
    var t = el("table", "nv"), head = el("tr");
    ["key token", "k (key)", "q \u2218 k", "q\u00b7k", "\u00f7\u221ad_k (score)", "softmax weight",
     "weight \u00d7 v"].forEach(function (h) { head.appendChild(cell("th", "", h)); });
    var qrow = el("tr", "query");
    qrow.appendChild(cell("td", "tokname", "q of \u201c" + s.tokens[this.state.query] + "\u201d"));
    qrow.appendChild(cell("td", "", cells(r.q, sq, "q")));
    t.appendChild(head);
    t.appendChild(qrow);
    keys.forEach(function (x) {
      var tr = el("tr", x.blocked ? "key blocked" : "key");
      tr.dataset.key = String(x.j);
      tr.dataset.weight = String(x.weight);
      tr.dataset.dot = String(x.dot);
      tr.dataset.score = x.blocked ? "blocked" : String(x.score);
      tr.dataset.blocked = x.blocked ? "1" : "0";
      tr.appendChild(cell("td", "tokname" + (s.special[x.j] ? " special" : ""), s.tokens[x.j]));
      tr.appendChild(cell("td", "", cells(x.k, sk, "k")));
      tr.appendChild(cell("td", "", cells(x.prod, sp, "q\u2218k")));
      tr.appendChild(cell("td", "num dot", x.dot.toFixed(3)));
      tr.appendChild(cell("td", "num score", x.blocked ? "blocked" : x.score.toFixed(3)));
      var bar = el("span", "wbar");
      bar.style.width = Math.round(60 * x.weight) + "px";
      var wcell = cell("td", "num weight", bar);
      wcell.appendChild(el("span", "wnum", x.weight.toFixed(3)));
      tr.appendChild(wcell);
      tr.appendChild(cell("td", "", cells(x.wv, sv, "weight\u00d7v")));
      t.appendChild(tr);
    });
    var foot = el("tr", "output");
    foot.appendChild(cell("td", "tokname", "output"));
    var label = cell("td", "muted", "= \u03a3 weight \u00d7 v, summed over the keys");
    label.colSpan = 5;
    foot.appendChild(label);
    foot.appendChild(cell("td", "", cells(r.out, sv, "output")));
    t.appendChild(foot);
    this.body.appendChild(t);
    this.box.dataset.order = keys.map(function (x) { return x.j; }).join(",");
  };

  window.AttnNeuron = {
    mount: function (box) { return new Panel(box); }
  };
})();
