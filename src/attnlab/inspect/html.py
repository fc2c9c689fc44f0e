"""A self-contained HTML attention explorer: one file, scripts and styles inline, no network.

The page (``view.html``, ``view.css`` and the scripts of :data:`_SCRIPTS` beside this module)
shows, for each sentence: the prediction (or the translation), the attention rollout over the
sentence, what mattered to the decision (each token's attribution by a method the user picks,
with the method's faithfulness when the run has a report; ``mattered.js``), a head view (query
tokens and key tokens in two columns joined by lines whose opacity and width follow the weight,
one colour per head, several heads overlaid), a neuron view (one head's arithmetic for one
query: ``q``, each ``k``, ``q∘k``, ``q·k``, the scaled score, the softmax weight, ``weight·v``
and their sum; ``neuron.js``) and a model view (a small map for every layer × head). Lines and
maps are drawn on ``<canvas>``, so sentences of up to 512 tokens stay responsive. A page whose
data carry ``roles`` (:meth:`AttentionView.with_data`,
:func:`~attnlab.inspect.roles_view.with_roles`) also has a "Roles" tab: the heat map of heads ×
roles, the best induction and previous-token heads marked in the head view (``rolestab.js``).

Safety: the data are embedded as JSON in a ``<script type="application/json">`` block with
``<``, ``>``, ``&`` and the JavaScript line separators escaped, so no text can close the block
or open a comment; the page inserts every token with ``textContent``; and its
Content-Security-Policy allows no network access at all.

A sentence may carry several attention kinds (a translation run's encoder self-, decoder
self- and cross-attention, :mod:`attnlab.tasks.translation.view`), each with its own query
and key tokens (``"kinds"``); a classifier's sentence has one, given by its ``"tokens"`` and
``"attention"`` (query tokens = key tokens), and the page reads it as the kind ``"self"``.

Attention weights travel as one base64 string of ``L·S`` bytes per head (``round(w·255)``): a
quarter of float32, and plenty for opacity. The neuron view's queries, keys and values travel
exactly, as base64 of little-endian float32 (``L·d`` numbers per head and kind), and the page
recomputes the scores and weights from them; they are left out of sentences over
:data:`MAX_VECTOR_TOKENS` tokens to keep pages small.
"""

from __future__ import annotations

import base64
import html as html_lib
import json
import math
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from attnlab.inspect.attended import Attended
from attnlab.io.atomic import write_text_atomic

__all__ = ["MAX_VECTOR_TOKENS", "AttentionView", "attention_payload", "embed_json", "model_name",
           "quantize", "render_page"]

MAX_VECTOR_TOKENS = 64  # longest sentence whose queries, keys and values the payload carries
_SCRIPTS = ("neuron.js", "headview.js", "summary.js", "mattered.js", "roles.js",
            "rolestab.js", "view.js")  # view.js uses the others; rolestab.js uses roles.js

_MARKER = re.compile(r"/\*@ATTNLAB_(CSS|JS|DATA)@\*/")
# the data block of a rendered page: the data hold no "<" (embed_json) and no script holds
# "</script" (render_page), so the block ends at the first "</script>" after it
_DATA_BLOCK = re.compile(r'(<script id="attnlab-data" type="application/json">)(.*?)(</script>)',
                         re.DOTALL)
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}


def embed_json(obj: object) -> str:
    """JSON text that is safe inside an HTML ``<script>`` element.

    ``</script>``, ``<!--`` and ``]]>`` cannot occur in the result, and it parses back to
    ``obj`` with ``JSON.parse`` (or ``json.loads``).
    """
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], text)


def _asset(name: str) -> str:
    return resources.files("attnlab.inspect").joinpath(name).read_text(encoding="utf-8")


def render_page(template: str, data: object, *, scripts: tuple[str, ...] = _SCRIPTS,
                css: str | None = "view.css") -> str:
    """Fill ``template`` (``view.html``, ``app.html``, ``roles.html``) with the inline style
    (``css``; ``None``: the template has its own), ``scripts`` in order, and ``data``.

    The markers are replaced in one pass, so nothing inside the inserted parts is replaced.
    """
    names = (*scripts, *(() if css is None else (css,)))
    assets = {name: _asset(name) for name in names}
    for name, text in assets.items():
        if re.search(r"</(script|style)", text, re.IGNORECASE):
            raise ValueError(f"{name} must not contain a closing </script> or </style> tag")
    parts = {"CSS": "" if css is None else assets[css],
             "JS": "\n".join(assets[n] for n in scripts), "DATA": embed_json(data)}
    return _MARKER.sub(lambda m: parts[m.group(1)], _asset(template))


def model_name(spec: str | os.PathLike) -> str:
    """The name a page or picture shows for a model: a run folder's last path component
    (``runs/h4`` → ``h4``; ``runs/h4/best`` → ``h4/best``) or the pretrained name as given,
    never a whole local path."""
    path = Path(spec)
    if not path.name:  # "." or "/"
        path = path.resolve()
    if path.name in ("best", "last") and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name or str(spec)


_shown_name = model_name  # attention_payload's parameter of that name hides the function


def quantize(weights: torch.Tensor) -> str:
    """One head's ``(L, S)`` weights as base64 of ``round(w·255)`` bytes, row-major."""
    q = (weights.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)  # (L, S)
    return base64.b64encode(q.contiguous().cpu().numpy().tobytes()).decode("ascii")


def _float32(x: torch.Tensor) -> str:
    """A tensor as base64 of its little-endian float32 numbers, row-major."""
    array = x.detach().float().contiguous().cpu().numpy().astype("<f4")
    return base64.b64encode(array.tobytes()).decode("ascii")


def _layer_vectors(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   mask: torch.Tensor | None) -> dict:
    """One layer's vectors for the neuron view: per head ``q``/``k`` ``(L, d_k)`` and ``v``
    ``(L, d_v)``, and the mask as additive float32 ``(L, L)`` per ``1|H`` (0 = seen,
    ``-inf`` = blocked), or ``None`` where every key was seen."""
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))  # (1|H, L, L)
    d_k = int(q.shape[-1])
    return {"d_k": d_k, "d_v": int(v.shape[-1]), "scale": 1 / math.sqrt(d_k),
            "q": [_float32(x) for x in q], "k": [_float32(x) for x in k],
            "v": [_float32(x) for x in v],
            "mask": None if mask is None else [_float32(m) for m in mask]}


def _vectors(a: Attended, max_tokens: int) -> tuple[list[dict] | None, str | None]:
    """The sentence's per-layer vectors, or ``None`` and why they are left out."""
    if a.queries is None:
        return None, "this page was made without the query, key and value vectors"
    if len(a.tokens) > max_tokens:
        return None, (f"the sentence has {len(a.tokens)} tokens; vectors are kept only for "
                      f"sentences of up to {max_tokens} tokens, to keep the page small")
    return [_layer_vectors(*parts) for parts in
            zip(a.queries, a.keys, a.values, a.masks, strict=True)], None


def attention_payload(model_name: str, attended: Sequence[Attended],
                      labels: Sequence[str] | None = None, *,
                      max_vector_tokens: int = MAX_VECTOR_TOKENS,
                      mattered: Sequence[dict | None] | None = None,
                      faithfulness: dict | None = None,
                      notes: Sequence[str] | None = None) -> dict:
    """The JSON-ready data the page draws (see ``view.js``, ``neuron.js`` and ``mattered.js``
    for its layout); the model is shown by its name (:func:`model_name`), not its path.

    Sentences attended with ``vectors=True`` of up to ``max_vector_tokens`` tokens carry their
    queries, keys and values (``"vectors"``); the others say why not (``"vectors_note"``).
    ``mattered``: per sentence, its "what mattered" row
    (:func:`~attnlab.inspect.mattered.mattered_block`) or ``None``; ``faithfulness``: the run's
    faithfulness figures (:func:`~attnlab.inspect.mattered.read_faithfulness`) or ``None``;
    ``notes``: per sentence, what the page says in place of a prediction (a language model's
    likeliest next tokens) or ``None``.
    """
    for name, rows in (("'what mattered' rows", mattered), ("notes", notes)):
        if rows is not None and len(rows) != len(attended):
            raise ValueError(f"{len(rows)} {name} for {len(attended)} sentences")
    sentences = []
    for n, a in enumerate(attended):
        vectors, note = _vectors(a, max_vector_tokens)
        prediction = None
        if a.prediction is not None:
            names = list(labels) if labels is not None else [str(i) for i in
                                                             range(len(a.prediction.probs))]
            prediction = {"label": a.prediction.label, "index": a.prediction.index,
                          "labels": names, "probs": [round(p, 6) for p in a.prediction.probs]}
        sentences.append({
            "text": a.text,
            "tokens": a.tokens,
            "special": a.special,
            "layer_names": a.layer_names,
            "heads": [int(w.shape[0]) for w in a.weights],
            "attention": [[quantize(w[h]) for h in range(w.shape[0])] for w in a.weights],
            "rollout": [round(float(r), 6) for r in a.relevance],
            "prediction": prediction,
            "truncated": a.truncated,
            "vectors": vectors,
            "vectors_note": note,
            "mattered": None if mattered is None else mattered[n],
            "note": None if notes is None else notes[n],
        })
    return {"model": _shown_name(model_name), "sentences": sentences,
            "faithfulness": faithfulness}


class AttentionView:
    """A rendered attention explorer page.

    ``save(path)`` writes the single HTML file; in Jupyter the object displays itself inline
    (an ``<iframe srcdoc>``, so the page's script runs isolated from the notebook).
    """

    def __init__(self, html: str, height: int = 900) -> None:
        self.html = html
        self.height = height

    def with_data(self, **extra: object) -> AttentionView:
        """The same page whose embedded data also hold ``extra`` (JSON-ready values; e.g.
        ``roles``: the Roles tab, :func:`~attnlab.inspect.roles_view.with_roles`)."""
        blocks = list(_DATA_BLOCK.finditer(self.html))
        if len(blocks) != 1:
            raise ValueError(f"the page must have one data block, found {len(blocks)}")
        block = blocks[0]
        data = {**json.loads(block.group(2)), **extra}
        html = (self.html[:block.start(2)] + embed_json(data) + self.html[block.end(2):])
        return AttentionView(html, self.height)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` (atomically) and return the path."""
        return write_text_atomic(path, self.html)

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html_lib.escape(self.html, quote=True)}" '
                f'style="width: 100%; height: {self.height}px; border: 0" '
                f'sandbox="allow-scripts"></iframe>')
