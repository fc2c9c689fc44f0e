/* attnlab attention view. Draws the payload built by attnlab.inspect.html.attention_payload
 * (classifier, encoder) or attnlab.tasks.translation.view.translation_payload (the "what
 * mattered" row: mattered.js, data s.mattered and payload.faithfulness):
 *   {model, sentences: [{text, prediction: {label, labels, probs} | null, rollout: [L] | null,
 *    truncated, vectors: [layer] {...} | null, vectors_note,   (vectors: see neuron.js)
 *    and either  tokens, special, heads: [H per layer], layer_names,
 *                attention: [layer][head] base64 of L*L uint8 (weight*255, row = query)
 *    or          translation, finished, beam, kind (shown first),
 *                kinds: [{name, label, layer_names, query_tokens, key_tokens, query_special,
 *                         key_special, heads, attention: [layer][head] base64 of Lq*Lk uint8,
 *                         words: {the same token fields, heads, attention} | absent}]}]}
 * A classifier's sentence is read as one kind "self" with the same tokens both sides.
 * Text only ever reaches the page through textContent; nothing is parsed as HTML.
 * State for tests and scripts: data-* attributes on the root element (data-ready, data-tokens
 * and data-query-tokens (query tokens), data-key-tokens, data-kind, data-words, data-lines,
 * data-layer, data-heads, data-maps, data-sentence, data-prediction, data-translation).
 */
(function () {
  "use strict";
  var D = window.AttnDraw;
  var NOTES = {
    self: "Lines join each query token (left) to the key tokens (right) it attends to; " +
      "opacity and width follow the weight. Hover a token to see only its lines.",
    decoder: "Each target position (left) attends to itself and the positions before it " +
      "(right): the decoder is causal. Hover a token to see only its lines.",
    cross: "Each generated token (left: the decoding step that chose it) attends to the " +
      "source tokens (right). Hover a token to see only its lines."
  };

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

  function labelled(text, control) {
    var l = el("label", "", text);
    return l.appendChild(control) && l;
  }

  /** The attention kinds of a sentence; a classifier's is one kind "self". */
  function kindsOf(s) {
    if (s.kinds) return s.kinds;
    return [{name: "self", label: "self-attention", layer_names: s.layer_names,
             query_tokens: s.tokens, key_tokens: s.tokens, query_special: s.special,
             key_special: s.special, heads: s.heads, attention: s.attention}];
  }

  function View(root, payload) {
    this.root = root;
    this.cache = {};
    this.state = {sentence: 0, kind: null, words: false, layer: 0, heads: [0], focus: null,
                  side: null};
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
    this.sentenceSelect = this.select("sentence", function (v) {
      self.state.sentence = +v;
      self.state.focus = null;
      self.render();
    });
    this.sentenceBar.appendChild(labelled("Sentence ", this.sentenceSelect));
    r.appendChild(this.sentenceBar);
    this.text = el("div", "text");
    r.appendChild(this.text);
    this.predictionTitle = el("h2", "", "Prediction");
    r.appendChild(this.predictionTitle);
    this.prediction = el("div", "prediction");
    r.appendChild(this.prediction);
    this.rolloutSection = el("div");
    this.rolloutSection.appendChild(el("h2", "", "Attention rollout"));
    this.sentence = el("div", "sentence");
    this.rolloutSection.appendChild(this.sentence);
    r.appendChild(this.rolloutSection);
    this.mattered = AttnMattered.mount(r.appendChild(el("div")));
    r.appendChild(el("h2", "", "Head view"));
    this.buildKindBar(r);
    this.buildHeadControls(r);
    this.note = el("div", "muted");
    r.appendChild(this.note);
    this.headView = el("div", "headview");
    this.left = el("div", "tokcol left");
    this.canvas = el("canvas", "lines");
    this.right = el("div", "tokcol right");
    this.headView.appendChild(this.left);
    this.headView.appendChild(this.canvas);
    this.headView.appendChild(this.right);
    r.appendChild(this.headView);
    this.neuronSection = el("div");
    this.neuronSection.appendChild(el("h2", "", "Neuron view"));
    this.neuronBox = el("div");
    this.neuronSection.appendChild(this.neuronBox);
    r.appendChild(this.neuronSection);
    this.neuron = AttnNeuron.mount(this.neuronBox);
    r.appendChild(el("h2", "", "Model view"));
    r.appendChild(el("div", "muted", "Every head of every layer (rows: layers, columns: " +
      "heads; query down, key across). Click a map to show it in the head view."));
    this.modelView = el("div", "modelview");
    r.appendChild(this.modelView);
  };

  View.prototype.select = function (label, onChange) {
    var s = el("select");
    s.setAttribute("aria-label", label);
    s.addEventListener("change", function () { onChange(s.value); });
    return s;
  };

  /** The attention kind selector and the word-merge toggle (hidden when there is no use). */
  View.prototype.buildKindBar = function (r) {
    var self = this;
    this.kindBar = el("div", "controls");
    this.kindSelect = this.select("attention", function (v) { self.showKind(v); });
    this.kindBar.appendChild(labelled("Attention ", this.kindSelect));
    this.wordsBox = el("input");
    this.wordsBox.type = "checkbox";
    this.wordsBox.setAttribute("aria-label", "merge subword pieces into words");
    this.wordsBox.addEventListener("change", function () {
      self.showKind(self.state.kind, self.wordsBox.checked);
    });
    this.wordsLabel = el("label", "", "");
    this.wordsLabel.appendChild(this.wordsBox);
    this.wordsLabel.appendChild(document.createTextNode(" merge subword pieces into words"));
    this.kindBar.appendChild(this.wordsLabel);
    r.appendChild(this.kindBar);
  };

  View.prototype.buildHeadControls = function (r) {
    var self = this, controls = el("div", "controls");
    this.layerSelect = this.select("layer", function (v) {
      self.state.layer = +v;
      var h = self.headCount(self.state.layer);
      self.state.heads = self.state.heads.filter(function (x) { return x < h; });
      if (!self.state.heads.length) self.state.heads = [0];
      self.renderHeads();
    });
    controls.appendChild(labelled("Layer ", this.layerSelect));
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

  /** The current kind of the current sentence, as pieces. */
  View.prototype.kind = function () {
    var s = this.current(), ks = s ? kindsOf(s) : [], name = this.state.kind;
    for (var i = 0; i < ks.length; i++) if (ks[i].name === name) return ks[i];
    return ks[0];
  };

  /** What the head and model views draw: the current kind, merged into words if asked. */
  View.prototype.shown = function () {
    var k = this.kind();
    return k && this.state.words && k.words ? k.words : k;
  };

  View.prototype.headCount = function (layer) {
    var v = this.shown();
    return v ? v.heads[layer] : 0;
  };

  View.prototype.matrix = function (layer, head) {
    var v = this.shown(), words = this.state.words && this.kind().words ? "w" : "p";
    var key = [this.state.sentence, this.kind().name, words, layer, head].join(":");
    if (!this.cache[key]) this.cache[key] = decode(v.attention[layer][head]);
    return this.cache[key];
  };

  /** Show attention kind ``name`` (and pieces or words); also callable from scripts. */
  View.prototype.showKind = function (name, words) {
    this.state.kind = name;
    if (words !== undefined) this.state.words = !!words;
    this.state.focus = null;
    this.render();
  };

  View.prototype.render = function () {
    var s = this.current();
    this.root.dataset.ready = "0";
    if (!s) return this.clear();
    var ks = kindsOf(s), names = ks.map(function (k) { return k.name; });
    if (names.indexOf(this.state.kind) < 0) this.state.kind = s.kind || names[0];
    this.renderKindBar(ks);
    var v = this.shown();
    if (this.state.layer >= v.heads.length) this.state.layer = 0;
    var H = v.heads[this.state.layer];
    this.state.heads = this.state.heads.filter(function (h) { return h < H; });
    var ls = this.layerSelect;
    ls.replaceChildren();
    v.heads.forEach(function (_, i) {
      var o = el("option", "", String(i));
      o.value = String(i);
      ls.appendChild(o);
    });
    ls.value = String(this.state.layer);
    this.text.textContent = s.text;
    var d = this.root.dataset;
    d.sentence = String(this.state.sentence);
    d.tokens = d.queryTokens = String(v.query_tokens.length);
    d.keyTokens = String(v.key_tokens.length);
    d.kind = this.kind().name;
    d.words = v === this.kind() ? "0" : "1";
    this.note.textContent = NOTES[this.kind().name] || NOTES.self;
    if (!s.kinds) this.note.textContent += " Click a query token to see its arithmetic in " +
                                            "the neuron view.";
    this.renderPrediction(s);
    this.renderRollout(s);
    this.mattered.setSentence(s, this.payload.faithfulness);
    this.renderTokens(v);
    this.renderModelView(v);
    this.neuronSection.style.display = s.kinds ? "none" : "";
    this.neuron.setSentence(s.kinds ? null : s);
    this.renderHeads();
  };

  View.prototype.clear = function () {
    this.text.textContent = "";
    [this.prediction, this.sentence, this.left, this.right, this.modelView].forEach(
      function (e) { e.replaceChildren(); });
    this.neuron.setSentence(null);
    this.mattered.setSentence(null);
    this.root.dataset.tokens = "0";
    this.root.dataset.lines = "0";
  };

  View.prototype.renderKindBar = function (ks) {
    var sel = this.kindSelect, k = this.kind();
    sel.replaceChildren();
    ks.forEach(function (kind) {
      var o = el("option", "", kind.label || kind.name);
      o.value = kind.name;
      sel.appendChild(o);
    });
    sel.value = k.name;
    this.kindSelect.parentNode.style.display = ks.length > 1 ? "" : "none";
    this.wordsLabel.style.display = k.words ? "" : "none";
    this.wordsBox.checked = this.state.words && !!k.words;
    this.kindBar.style.display = ks.length > 1 || k.words ? "" : "none";
  };

  View.prototype.renderPrediction = function (s) {
    this.predictionTitle.textContent = AttnSummary.prediction(this.prediction, s, this.root);
  };

  View.prototype.renderRollout = function (s) {
    this.rolloutSection.style.display = s.rollout ? "" : "none";
    AttnSummary.rollout(this.sentence, s);
  };

  View.prototype.renderTokens = function (v) {
    var self = this;
    [[this.left, v.query_tokens, v.query_special], [this.right, v.key_tokens, v.key_special]]
      .forEach(function (col, side) {
        col[0].replaceChildren();
        col[1].forEach(function (t, i) {
          var d = el("div", "tok" + (col[2][i] ? " special" : ""), t);
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
          if (side === 0) d.addEventListener("click", function () { self.clickQuery(i); });
          col[0].appendChild(d);
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
        b.style.setProperty("--c", D.color(h));
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
    D.markSelected(this.modelView, this.state.layer, this.state.heads);
    if (this.onHeads) this.onHeads();  // e.g. the Roles tab's marks (rolestab.js)
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

  /** A click on query token i: its arithmetic (encoder), or what mattered to it (a decision). */
  View.prototype.clickQuery = function (i) {
    if (!this.current().kinds) return this.explain(i);
    if (this.shown() === this.kind()) this.mattered.showDecision(i, this.kind().name);
  };

  /** Open the neuron view on query token i, in this layer and the first selected head. */
  View.prototype.explain = function (i) {
    this.neuron.show({layer: this.state.layer, head: this.state.heads[0] || 0, query: i});
    this.neuronBox.scrollIntoView({block: "start"});
  };

  View.prototype.drawLines = function () {
    var v = this.shown();
    if (!v) return;
    var self = this, focus = this.state.focus, side = this.state.side;
    var lines = D.lines(this.canvas, {
      rows: v.query_tokens.length, cols: v.key_tokens.length, focus: focus, side: side,
      matrices: this.state.heads.map(function (h) {
        return [h, self.matrix(self.state.layer, h)];
      })});
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

  View.prototype.renderModelView = function (v) {
    var self = this;
    this.root.dataset.maps = String(D.modelView(this.modelView, v, function (layer, h) {
      return self.matrix(layer, h);
    }, function (layer, h) { self.selectHeads([h], layer); }));
  };

  window.AttnView = {
    mount: function (root, payload) { return new View(root, payload); }
  };
})();
