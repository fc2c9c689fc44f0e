/* attnlab head view and model view drawing, on <canvas>: pure functions of uint8 matrices
 * (weight*255, row-major, rows = query tokens, columns = key tokens; the two counts may differ,
 * as in a translation run's cross-attention). Used by view.js.
 */
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
                 "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
  var ROW = 18;          // px per token row in the head view
  var THUMB = 72;        // px of the longer side of a model-view map
  var MIN_WEIGHT = 0.01; // lines below this weight are not drawn

  function color(h) { return PALETTE[h % PALETTE.length]; }

  /** Draw the lines of the given heads: {matrices: [[head, Uint8Array]], rows, cols,
   * focus: index | null, side: "query" | "key"}. Returns the number of lines drawn. */
  function lines(canvas, o) {
    var n = Math.max(o.rows, o.cols), dpr = window.devicePixelRatio || 1;
    var width = Math.max(200, Math.min(420, 80 + 4 * n)), height = n * ROW;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    var g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    g.lineCap = "round";
    var threshold = Math.ceil(MIN_WEIGHT * 255), drawn = 0;
    o.matrices.forEach(function (hm) {
      var m = hm[1];
      g.strokeStyle = color(hm[0]);
      for (var i = 0; i < o.rows; i++) {
        if (o.focus !== null && o.side === "query" && i !== o.focus) continue;
        var y0 = i * ROW + ROW / 2, row = i * o.cols;
        for (var j = 0; j < o.cols; j++) {
          if (o.focus !== null && o.side === "key" && j !== o.focus) continue;
          var q = m[row + j];
          if (q < threshold) continue;
          var w = q / 255;
          g.globalAlpha = Math.min(1, 0.15 + 0.85 * w);
          g.lineWidth = 0.5 + 3 * w;
          g.beginPath();
          g.moveTo(0, y0);
          g.lineTo(width, j * ROW + ROW / 2);
          g.stroke();
          drawn++;
        }
      }
    });
    g.globalAlpha = 1;
    return drawn;
  }

  /** Pixel and CSS sizes of a rows x cols map: the longer side THUMB px on screen. */
  function mapSize(rows, cols) {
    var n = Math.max(rows, cols, 1), scale = Math.min(1, THUMB / n);
    return {w: Math.max(1, Math.round(cols * scale)), h: Math.max(1, Math.round(rows * scale)),
            cssW: Math.max(4, Math.round(THUMB * cols / n)),
            cssH: Math.max(4, Math.round(THUMB * rows / n))};
  }

  /** Paint a rows x cols map into its canvas (max over the cells each pixel covers). */
  function paintMap(canvas, m, rows, cols) {
    var W = canvas.width, Hh = canvas.height;
    var g = canvas.getContext("2d"), img = g.createImageData(W, Hh), d = img.data;
    for (var y = 0; y < Hh; y++) {
      var i0 = Math.floor(y * rows / Hh), i1 = Math.max(i0 + 1, Math.floor((y + 1) * rows / Hh));
      for (var x = 0; x < W; x++) {
        var j0 = Math.floor(x * cols / W), j1 = Math.max(j0 + 1, Math.floor((x + 1) * cols / W));
        var v = 0;
        for (var i = i0; i < i1; i++) {
          for (var j = j0; j < j1; j++) if (m[i * cols + j] > v) v = m[i * cols + j];
        }
        var p = 4 * (y * W + x), t = v / 255;
        d[p] = Math.round(255 - 200 * t);
        d[p + 1] = Math.round(255 - 150 * t);
        d[p + 2] = Math.round(255 - 40 * t);
        d[p + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** Fill the model view grid `mv` with a map per layer x head of `v` ({query_tokens,
   * key_tokens, heads}); matrix(layer, head) gives the weights, pick(layer, head) is called on
   * a click. Returns the number of maps. */
  function modelView(mv, v, matrix, pick) {
    var rows = v.query_tokens.length, cols = v.key_tokens.length;
    var maxH = Math.max.apply(null, v.heads), size = mapSize(rows, cols), maps = 0;
    mv.replaceChildren();
    mv.style.gridTemplateColumns = "40px repeat(" + maxH + ", " + (THUMB + 4) + "px)";
    mv.appendChild(el("div", "collabel", ""));
    for (var h = 0; h < maxH; h++) mv.appendChild(el("div", "collabel", "head " + h));
    v.heads.forEach(function (H, layer) {
      mv.appendChild(el("div", "rowlabel", "layer " + layer));
      for (var h = 0; h < maxH; h++) {
        if (h >= H) { mv.appendChild(el("div", "", "")); continue; }
        var c = el("canvas", "cell");
        c.width = size.w;
        c.height = size.h;
        c.style.width = size.cssW + "px";
        c.style.height = size.cssH + "px";
        c.style.imageRendering = "pixelated";
        c.dataset.layer = String(layer);
        c.dataset.head = String(h);
        c.title = "layer " + layer + ", head " + h;
        paintMap(c, matrix(layer, h), rows, cols);
        (function (layer, h) {
          c.addEventListener("click", function () { pick(layer, h); });
        })(layer, h);
        mv.appendChild(c);
        maps++;
      }
    });
    return maps;
  }

  /** Outline the maps of `mv` that show one of `heads` of `layer`. */
  function markSelected(mv, layer, heads) {
    var cells = mv.querySelectorAll("canvas.cell");
    for (var k = 0; k < cells.length; k++) {
      var c = cells[k];
      c.classList.toggle("selected", +c.dataset.layer === layer &&
                                     heads.indexOf(+c.dataset.head) >= 0);
    }
  }

  window.AttnDraw = {color: color, lines: lines, modelView: modelView,
                     markSelected: markSelected, THUMB: THUMB};
})();
