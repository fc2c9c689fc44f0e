/* attnlab attention view. Draws the payload built by attnlab.inspect.html.attention_payload:
 *   {model, sentences: [{text, tokens, special, heads: [H per layer], layer_names,
 *    attention: [layer][head] base64 of L*L uint8 (weight*255, row = query),
 *    rollout: [L], prediction: {label, labels, probs} | null, truncated,
 *    vectors: [layer] {...} | null, vectors_note}]}  (vectors: see neuron.js, the panel)
 * Text only ever reaches the page through textContent; nothing is parsed as HTML.
 * State for tests and scripts: data-* attributes on the root element (data-ready, data-tokens,
 * data-lines, data-layer, data-heads, data-maps, data-sentence).
 */
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
                 "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
  var ROW = 18;          // px per token row in the head view
  var THUMB = 72;        // px side of a model-view map
  var MIN_WEIGHT = 0.01; // lines below this weight are not drawn

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function decode(b64) {
    var s = atob(b64), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }

  function View(root, payload) {
    this.root = root;
    this.cache = {};
    this.state = {sentence: 0, layer: 0, heads: [0], focus: null, side: null};
    root.classList.add("attnlab");
    root.replaceChildren();
    this.build();
    this.setPayload(payload);
  }

  View.prototype.build = function () {
    var self = this, r = this.root;
    this.title = el("div", "muted");
    r.appendChild(this.title);

    this.sentenceBar = el("div", "controls");
    this.sentenceSelect = el("select");
    this.sentenceSelect.setAttribute("aria-label", "sentence");
    this.sentenceSelect.addEventListener("change", function () {
      self.state.sentence = +self.sentenceSelect.value;
      self.state.focus = null;
      self.render();
    });
    var sl = el("label", "", "Sentence ");
    sl.appendChild(this.sentenceSelect);
    this.sentenceBar.appendChild(sl);
    r.appendChild(this.sentenceBar);

    this.text = el("div", "text");
    r.appendChild(this.text);

    r.appendChild(el("h2", "", "Prediction"));
    this.prediction = el("div", "prediction");
    r.appendChild(this.prediction);

    r.appendChild(el("h2", "", "Attention rollout"));
    this.sentence = el("div", "sentence");
    r.appendChild(this.sentence);

    r.appendChild(el("h2", "", "Head view"));
    var controls = el("div", "controls");
    this.layerSelect = el("select");
    this.layerSelect.setAttribute("aria-label", "layer");
    this.layerSelect.addEventListener("change", function () {
      self.state.layer = +self.layerSelect.value;
      var h = self.headCount(self.state.layer);
      self.state.heads = self.state.heads.filter(function (x) { return x < h; });
      if (!self.state.heads.length) self.state.heads = [0];
      self.renderHeads();
    });
    var ll = el("label", "", "Layer ");
    ll.appendChild(this.layerSelect);
    controls.appendChild(ll);
    this.headBox = el("div", "heads");
    controls.appendChild(el("span", "", "Heads"));
    controls.appendChild(this.headBox);
    var all = el("button", "", "all"), none = el("button", "", "none");
    all.type = none.type = "button";
    all.addEventListener("click", function () {
      var h = self.headCount(self.state.layer), hs = [];
      for (var i = 0; i < h; i++) hs.push(i);
      self.selectHeads(hs);
    });
    none.addEventListener("click", function () { self.selectHeads([]); });
    controls.appendChild(all);
    controls.appendChild(none);
    r.appendChild(controls);
    r.appendChild(el("div", "muted",
      "Lines join each query token (left) to the key tokens (right) it attends to; opacity " +
      "and width follow the weight. Hover a token to see only its lines; click a query " +
      "token to see its arithmetic in the neuron view."));
    this.headView = el("div", "headview");
    this.left = el("div", "tokcol left");
    this.canvas = el("canvas", "lines");
    this.right = el("div", "tokcol right");
    this.headView.appendChild(this.left);
    this.headView.appendChild(this.canvas);
    this.headView.appendChild(this.right);
    r.appendChild(this.headView);

    r.appendChild(el("h2", "", "Neuron view"));
    this.neuronBox = el("div");
    r.appendChild(this.neuronBox);
    this.neuron = AttnNeuron.mount(this.neuronBox);

    r.appendChild(el("h2", "", "Model view"));
    r.appendChild(el("div", "muted", "Every head of every layer (rows: layers, columns: " +
      "heads; query down, key across). Click a map to show it in the head view."));
    this.modelView = el("div", "modelview");
    r.appendChild(this.modelView);
  };

  View.prototype.setPayload = function (payload) {
    this.payload = payload;
    this.cache = {};
    this.state.sentence = 0;
    this.state.focus = null;
    var sel = this.sentenceSelect, sents = payload.sentences || [];
    sel.replaceChildren();
    sents.forEach(function (s, i) {
      var o = el("option", "", (i + 1) + ". " + s.text.slice(0, 80));
      o.value = String(i);
      sel.appendChild(o);
    });
    this.sentenceBar.style.display = sents.length > 1 ? "" : "none";
    this.title.textContent = "Model: " + (payload.model || "?");
    this.render();
  };

  View.prototype.current = function () {
    return (this.payload.sentences || [])[this.state.sentence];
  };

  View.prototype.headCount = function (layer) {
    var s = this.current();
    return s ? s.heads[layer] : 0;
  };

  View.prototype.matrix = function (layer, head) {
    var key = this.state.sentence + ":" + layer + ":" + head;
    if (!this.cache[key]) this.cache[key] = decode(this.current().attention[layer][head]);
    return this.cache[key];
  };

  View.prototype.render = function () {
    var s = this.current();
    this.root.dataset.ready = "0";
    if (!s) {
      this.text.textContent = "";
      this.prediction.replaceChildren();
      this.sentence.replaceChildren();
      this.left.replaceChildren();
      this.right.replaceChildren();
      this.modelView.replaceChildren();
      this.neuron.setSentence(null);
      this.root.dataset.tokens = "0";
      this.root.dataset.lines = "0";
      return;
    }
    if (this.state.layer >= s.heads.length) this.state.layer = 0;
    var H = s.heads[this.state.layer];
    this.state.heads = this.state.heads.filter(function (h) { return h < H; });
    var ls = this.layerSelect;
    ls.replaceChildren();
    s.heads.forEach(function (_, i) {
      var o = el("option", "", String(i));
      o.value = String(i);
      ls.appendChild(o);
    });
    ls.value = String(this.state.layer);
    this.text.textContent = s.text;
    this.root.dataset.sentence = String(this.state.sentence);
    this.root.dataset.tokens = String(s.tokens.length);
    this.renderPrediction(s);
    this.renderRollout(s);
    this.renderTokens(s);
    this.renderModelView(s);
    this.neuron.setSentence(s);
    this.renderHeads();
  };

  View.prototype.renderPrediction = function (s) {
    var p = this.prediction;
    p.replaceChildren();
    if (!s.prediction) {
      p.appendChild(el("div", "muted", "No classification head: the rollout reads the mean " +
                                       "of all tokens (the pooled sentence embedding)."));
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
        p.appendChild(row);
      });
      this.root.dataset.prediction = pr.label;
    }
    if (s.truncated) {
      p.appendChild(el("div", "muted", "The text was truncated to " + s.tokens.length +
                                       " tokens."));
    }
  };

  View.prototype.renderRollout = function (s) {
    var box = this.sentence, max = 0;
    box.replaceChildren();
    s.rollout.forEach(function (v) { if (v > max) max = v; });
    s.tokens.forEach(function (t, i) {
      var span = el("span", s.special[i] ? "special" : "", t);
      var a = max > 0 ? s.rollout[i] / max : 0;
      span.style.background = "rgba(255, 140, 0, " + a.toFixed(3) + ")";
      span.title = "relevance " + s.rollout[i].toFixed(4);
      box.appendChild(span);
    });
  };

  View.prototype.renderTokens = function (s) {
    var self = this;
    [this.left, this.right].forEach(function (col, side) {
      col.replaceChildren();
      s.tokens.forEach(function (t, i) {
        var d = el("div", "tok" + (s.special[i] ? " special" : ""), t);
        d.dataset.index = String(i);
        d.addEventListener("mouseenter", function () {
          self.state.focus = i;
          self.state.side = side === 0 ? "query" : "key";
          self.drawLines();
        });
        d.addEventListener("mouseleave", function () {
          self.state.focus = null;
          self.drawLines();
        });
        if (side === 0) d.addEventListener("click", function () { self.explain(i); });
        col.appendChild(d);
      });
    });
  };

  View.prototype.renderHeads = function () {
    var self = this, box = this.headBox, H = this.headCount(this.state.layer);
    box.replaceChildren();
    for (var h = 0; h < H; h++) {
      (function (h) {
        var on = self.state.heads.indexOf(h) >= 0;
        var b = el("span", "head-toggle" + (on ? " on" : ""), String(h));
        b.style.setProperty("--c", PALETTE[h % PALETTE.length]);
        b.dataset.head = String(h);
        b.setAttribute("role", "checkbox");
        b.setAttribute("aria-checked", on ? "true" : "false");
        b.addEventListener("click", function () {
          var hs = self.state.heads.slice(), k = hs.indexOf(h);
          if (k >= 0) hs.splice(k, 1); else hs.push(h);
          self.selectHeads(hs);
        });
        box.appendChild(b);
      })(h);
    }
    this.root.dataset.layer = String(this.state.layer);
    this.markSelected();
    this.drawLines();
  };

  /** Show these heads of the current layer (also callable from scripts and tests). */
  View.prototype.selectHeads = function (heads, layer) {
    if (layer !== undefined) {
      this.state.layer = layer;
      this.layerSelect.value = String(layer);
    }
    var H = this.headCount(this.state.layer);
    this.state.heads = heads.filter(function (h) { return h >= 0 && h < H; })
                            .sort(function (a, b) { return a - b; });
    this.renderHeads();
  };

  /** Open the neuron view on query token i, in this layer and the first selected head. */
  View.prototype.explain = function (i) {
    this.neuron.show({layer: this.state.layer, head: this.state.heads[0] || 0, query: i});
    this.neuronBox.scrollIntoView({block: "start"});
  };

  View.prototype.drawLines = function () {
    var s = this.current();
    if (!s) return;
    var L = s.tokens.length, c = this.canvas, dpr = window.devicePixelRatio || 1;
    var width = Math.max(200, Math.min(420, 80 + 4 * L));
    c.style.width = width + "px";
    c.style.height = L * ROW + "px";
    c.width = Math.round(width * dpr);
    c.height = Math.round(L * ROW * dpr);
    var g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, L * ROW);
    var focus = this.state.focus, side = this.state.side, lines = 0;
    var threshold = Math.ceil(MIN_WEIGHT * 255);
    g.lineCap = "round";
    var self = this;
    this.state.heads.forEach(function (h) {
      var m = self.matrix(self.state.layer, h);
      g.strokeStyle = PALETTE[h % PALETTE.length];
      for (var i = 0; i < L; i++) {
        if (focus !== null && side === "query" && i !== focus) continue;
        var y0 = i * ROW + ROW / 2, row = i * L;
        for (var j = 0; j < L; j++) {
          if (focus !== null && side === "key" && j !== focus) continue;
          var q = m[row + j];
          if (q < threshold) continue;
          var w = q / 255;
          g.globalAlpha = Math.min(1, 0.15 + 0.85 * w);
          g.lineWidth = 0.5 + 3 * w;
          g.beginPath();
          g.moveTo(0, y0);
          g.lineTo(width, j * ROW + ROW / 2);
          g.stroke();
          lines++;
        }
      }
    });
    g.globalAlpha = 1;
    [this.left, this.right].forEach(function (col, k) {
      var kids = col.children;
      for (var i = 0; i < kids.length; i++) {
        var on = focus !== null && i === focus && (k === 0) === (side === "query");
        kids[i].classList.toggle("focus", on);
      }
    });
    this.root.dataset.heads = this.state.heads.join(",");
    this.root.dataset.lines = String(lines);
    this.root.dataset.ready = "1";
  };

  View.prototype.renderModelView = function (s) {
    var self = this, mv = this.modelView, L = s.tokens.length;
    var maxH = Math.max.apply(null, s.heads);
    mv.replaceChildren();
    mv.style.gridTemplateColumns = "40px repeat(" + maxH + ", " + (THUMB + 4) + "px)";
    mv.appendChild(el("div", "collabel", ""));
    for (var h = 0; h < maxH; h++) mv.appendChild(el("div", "collabel", "head " + h));
    var side = Math.min(L, THUMB), maps = 0;
    s.heads.forEach(function (H, layer) {
      mv.appendChild(el("div", "rowlabel", "layer " + layer));
      for (var h = 0; h < maxH; h++) {
        if (h >= H) { mv.appendChild(el("div", "", "")); continue; }
        var c = el("canvas", "cell");
        c.width = c.height = side;
        c.style.width = c.style.height = THUMB + "px";
        c.style.imageRendering = "pixelated";
        c.dataset.layer = String(layer);
        c.dataset.head = String(h);
        c.title = "layer " + layer + ", head " + h;
        self.paintMap(c, self.matrix(layer, h), L, side);
        (function (layer, h) {
          c.addEventListener("click", function () { self.selectHeads([h], layer); });
        })(layer, h);
        mv.appendChild(c);
        maps++;
      }
    });
    this.root.dataset.maps = String(maps);
  };

  /** Paint an L x L uint8 map into a side x side canvas (max over the cells each pixel covers). */
  View.prototype.paintMap = function (canvas, m, L, side) {
    var g = canvas.getContext("2d"), img = g.createImageData(side, side), d = img.data;
    for (var y = 0; y < side; y++) {
      var i0 = Math.floor(y * L / side), i1 = Math.max(i0 + 1, Math.floor((y + 1) * L / side));
      for (var x = 0; x < side; x++) {
        var j0 = Math.floor(x * L / side), j1 = Math.max(j0 + 1, Math.floor((x + 1) * L / side));
        var v = 0;
        for (var i = i0; i < i1; i++) {
          for (var j = j0; j < j1; j++) if (m[i * L + j] > v) v = m[i * L + j];
        }
        var p = 4 * (y * side + x), t = v / 255;
        d[p] = Math.round(255 - 200 * t);
        d[p + 1] = Math.round(255 - 150 * t);
        d[p + 2] = Math.round(255 - 40 * t);
        d[p + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
  };

  View.prototype.markSelected = function () {
    var layer = this.state.layer, heads = this.state.heads;
    var cells = this.modelView.querySelectorAll("canvas.cell");
    for (var k = 0; k < cells.length; k++) {
      var c = cells[k];
      c.classList.toggle("selected", +c.dataset.layer === layer &&
                                     heads.indexOf(+c.dataset.head) >= 0);
    }
  };

  window.AttnView = {
    mount: function (root, payload) { return new View(root, payload); }
  };
})();
