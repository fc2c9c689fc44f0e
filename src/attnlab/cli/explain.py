"""``attnlab explain``: attention step by step, on small matrices typed on the command line
(``--q --k --v``) or on one head of a model for one token of a sentence (``RUN TEXT --layer
--head --token``).

Only parsing and printing live here; the computation is
:func:`attnlab.attention.explain_attention` (float64), for a model through
:func:`attnlab.inspect.neuron.explain_head`.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from torch import Tensor

from attnlab.attention import AttentionSteps, explain_attention
from attnlab.errors import UsageError
from attnlab.inspect.neuron import HeadChoiceError, HeadExplanation, explain_head
from attnlab.tasks.registry import open_subject
from attnlab.tasks.task import Command
from attnlab.text.files import check_utf8

__all__ = ["COMMAND", "add_arguments", "format_head_json", "format_head_text", "format_json",
           "format_text", "parse_matrix", "run"]

_EXAMPLE = "'[[1,0,1]]'"


_LEGEND = ("q: what this token looks for; k: what each token offers; q·k: how well they match; "
           "divided by √d_k to keep scores in a range where softmax is not too peaked; softmax "
           "turns scores into weights summing to 1; output = Σ weight·v")
_MATRIX_OPTIONS = ("q", "k", "v", "mask", "scale", "causal")
_KIND_NAMES = {"self": "self-attention", "decoder": "decoder self-attention (causal)",
               "cross": "cross-attention"}  # how each kind of attention is named
_HEAD_OPTIONS = ("layer", "head", "token", "attention")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab explain``: a model's head (RUN TEXT) or typed matrices."""
    parser.add_argument("run", nargs="?", metavar="RUN",
                        help="a run folder (classification or translation) or a pretrained "
                             "name (all-MiniLM-L6-v2); omit it to type matrices with --q/--k/--v")
    parser.add_argument("text", nargs="?", metavar="TEXT",
                        help="the sentence (for a translation run, the source sentence)")
    parser.add_argument("--layer", type=int, help="with RUN: layer, counted within the stack "
                                                  "--attention names (0 = first)")
    parser.add_argument("--head", type=int, help="with RUN: head within the layer (0 = first)")
    parser.add_argument("--token", help="with RUN: the query token, as printed (film, ##ing) "
                                        "or its position (0 = first)")
    parser.add_argument("--attention", metavar="KIND",
                        help="with RUN: the kind of attention, among the model's: self "
                             "(encoder, the default), or for a translation run decoder (causal "
                             "self-attention over the translation) or cross (translation → "
                             "source)")
    parser.add_argument("--q", metavar="JSON",
                        help=f"queries, a JSON matrix L × d_k, e.g. {_EXAMPLE}")
    parser.add_argument("--k", metavar="JSON", help="keys, a JSON matrix S × d_k")
    parser.add_argument("--v", metavar="JSON", help="values, a JSON matrix S × d_v")
    parser.add_argument("--mask", metavar="JSON",
                        help="a JSON 0/1 matrix L × S: 1 = the query may attend to the key")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiplies the scores; default 1/sqrt(d_k); --scale 1 for none")
    parser.add_argument("--causal", action="store_true",
                        help="query i attends only to keys j <= i")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--decimals", type=int, default=None,
                        help="decimals shown (default 4; with RUN --json: full precision)")


def run(args: argparse.Namespace) -> int:
    """Attention step by step: one head of a model on a sentence, or small typed matrices.

    Show each step of softmax(Q Kᵀ · scale + mask) V: for one head of a model (RUN TEXT --layer
    --head --token), a row per key token with q·k, the scaled score, the mask and the weight,
    then the output; or on matrices given as JSON (--q --k --v).

    Examples: attnlab explain all-MiniLM-L6-v2 "a gripping , funny film" --layer 1 --head 2
    --token film; attnlab explain runs/de-en "Ein Hund rennt." --attention cross --layer 0
    --head 1 --token dog; attnlab explain --q '[[1,0,1]]' --k '[[1,0,1],[0,1,0],[1,1,0]]' --v
    '[[1,2],[3,4],[5,6]]'
    """
    if args.decimals is not None and args.decimals < 0:
        raise UsageError(f"--decimals must be >= 0, got {args.decimals}")
    if args.run is not None:
        return run_head(args)
    given = [f"--{name}" for name in _HEAD_OPTIONS if getattr(args, name) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} explain a model's head: give RUN and TEXT first "
                         f"(attnlab explain RUN TEXT --layer N --head N --token T)")
    missing = [f"--{name}" for name in ("q", "k", "v") if getattr(args, name) is None]
    if missing:
        raise UsageError(f"give RUN TEXT --layer N --head N --token T to explain a model's "
                         f"head, or --q, --k and --v to explain typed matrices (missing: "
                         f"{', '.join(missing)})")
    return run_matrices(args)


def run_head(args: argparse.Namespace) -> int:
    """``attnlab explain RUN TEXT --layer --head --token [--attention]``."""
    typed = [f"--{name}" for name in _MATRIX_OPTIONS
             if getattr(args, name) is not None and getattr(args, name) is not False]
    if typed:
        raise UsageError(f"{', '.join(typed)} type matrices by hand, RUN explains a model's "
                         f"head: give one or the other, not both (got RUN {args.run!r})")
    if args.text is None:
        raise UsageError("TEXT is missing: attnlab explain RUN TEXT --layer N --head N "
                         "--token T")
    missing = [f"--{name}" for name in ("layer", "head", "token") if getattr(args, name) is None]
    if missing:
        raise UsageError(f"explaining a head of RUN needs {', '.join(missing)} (e.g. --layer 1 "
                         f"--head 2 --token film)")
    check_utf8(args.text, "TEXT")
    subject = open_subject(args.run)
    try:
        found = explain_head(subject, args.text, layer=args.layer, head=args.head,
                             token=args.token, attention=args.attention or "self")
    except HeadChoiceError as err:
        raise UsageError(f"--{err}") from None
    print(format_head_json(found, args.decimals) if args.json
          else format_head_text(found, 4 if args.decimals is None else args.decimals))
    return 0


def run_matrices(args: argparse.Namespace) -> int:
    """Parse the matrices, explain the attention, print it."""
    q, k, v = (parse_matrix(getattr(args, n), f"--{n}") for n in ("q", "k", "v"))
    if k.shape[1] != q.shape[1]:
        raise UsageError(f"--k rows must have as many numbers as --q rows (d_k): --q is "
                         f"{_dims(q)}, --k is {_dims(k)}")
    if v.shape[0] != k.shape[0]:
        raise UsageError(f"--v must have as many rows as --k (one value per key): --k is "
                         f"{_dims(k)}, --v is {_dims(v)}")
    mask = None
    if args.mask is not None:
        mask = parse_matrix(args.mask, "--mask")
        if mask.shape != (q.shape[0], k.shape[0]):
            raise UsageError(f"--mask must be L × S = {q.shape[0]} × {k.shape[0]} (queries × "
                             f"keys), got {_dims(mask)}")
        if not ((mask == 0) | (mask == 1)).all():
            raise UsageError("--mask entries must be 0 (blocked) or 1 (attend)")
        mask = mask.bool()
    if args.scale is not None and not math.isfinite(args.scale):
        raise UsageError(f"--scale must be a finite number, got {args.scale}")
    decimals = 4 if args.decimals is None else args.decimals
    steps = explain_attention(q, k, v, mask, args.scale, is_causal=args.causal)
    text = format_json(steps, q, k, v, decimals) if args.json else format_text(
        steps, q, k, v, decimals)
    print(text)
    return 0


def parse_matrix(text: str, option: str) -> Tensor:
    """A rectangular JSON matrix of numbers as a float64 tensor; errors (:class:`UsageError`)
    name ``option``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{option}: not valid JSON ({err.msg} at column {err.colno}): "
                         f"{text!r}") from None
    if not (isinstance(data, list) and data and all(isinstance(row, list) for row in data)):
        raise UsageError(f"{option}: expected a non-empty matrix, a JSON list of rows such as "
                         f"{_EXAMPLE}, got {text!r}")
    lengths = [len(row) for row in data]
    if len(set(lengths)) != 1:
        raise UsageError(f"{option}: ragged matrix, its rows have lengths {lengths}; every row "
                         f"must have the same length")
    if lengths[0] == 0:
        raise UsageError(f"{option}: the rows are empty")
    for row in data:
        for x in row:
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise UsageError(f"{option}: entries must be finite numbers, got {x!r}")
    return torch.tensor(data, dtype=torch.float64)


def format_text(steps: AttentionSteps, q: Tensor, k: Tensor, v: Tensor, decimals: int) -> str:
    """The steps as readable text, each matrix with its shape."""
    d_k = q.shape[-1]
    if steps.default_scale:
        scale = f"1/sqrt(d_k) = 1/sqrt({d_k}) = {steps.scale:.{decimals}f}"
    else:
        scale = f"{steps.scale:g} (given)"
    sums = ", ".join(f"{s:.{decimals}f}" for s in steps.row_sums.tolist())
    dead = bool((steps.row_sums == 0).any())
    lines = [
        "Attention: output = softmax(Q Kᵀ · scale + mask) V",
        "",
        f"Q  queries {_dims(q, 'L', 'd_k')}",
        *_matrix(q, None),
        f"K  keys {_dims(k, 'S', 'd_k')}",
        *_matrix(k, None),
        f"V  values {_dims(v, 'S', 'd_v')}",
        *_matrix(v, None),
    ]
    if steps.mask is not None:
        allowed = _allowed(steps.mask)
        lines += [f"mask (1 = attend, 0 = blocked)  {_dims(allowed)}", *_matrix(allowed, None)]
    lines += [
        "",
        f"1. scores = Q Kᵀ  {_dims(steps.scores)}",
        *_matrix(steps.scores, decimals),
        "",
        "2. scaled scores = scores · scale" + (" + mask" if steps.mask is not None else "")
        + f", scale = {scale}  {_dims(steps.scaled_scores)}",
        *_matrix(steps.scaled_scores, decimals),
        "",
        f"3. weights = softmax of each row of the scaled scores  {_dims(steps.weights)}",
        *_matrix(steps.weights, decimals),
        "   each row sums to 1" + (" (a row whose keys are all masked sums to 0)" if dead else "")
        + f": row sums = [{sums}]",
        "",
        f"4. output = weights V  {_dims(steps.output)}",
        *_matrix(steps.output, decimals),
    ]
    return "\n".join(lines)


def format_json(steps: AttentionSteps, q: Tensor, k: Tensor, v: Tensor, decimals: int) -> str:
    """The steps as one JSON object (numbers rounded; blocked scaled scores are ``null``)."""
    body = steps.to_dict()
    if body["mask"] is not None:
        body["mask"] = _allowed(steps.mask).int().tolist()
    obj = {
        "query": q.tolist(), "key": k.tolist(), "value": v.tolist(),
        "shapes": {name: list(t.shape) for name, t in (
            ("query", q), ("key", k), ("value", v), ("scores", steps.scores),
            ("weights", steps.weights), ("output", steps.output))},
        "scale_rule": "1/sqrt(d_k)" if steps.default_scale else "given",
        **body,
    }
    return json.dumps(_rounded(obj, decimals))


def format_head_text(e: HeadExplanation, decimals: int) -> str:
    """One head's steps for one query token: a row per key token, then the output."""
    kind = _KIND_NAMES.get(e.attention, f"{e.attention} attention")
    lines = [f"Attention of one head: {_shown(e.model)}, layer {e.layer}, head {e.head} "
             f"({kind}, {e.module})", f"text: {_shown(e.text)}"]
    if e.generated is not None:
        lines.append(f"generated first (greedy): {_shown(e.generated)}")
        if e.query_tokens != e.tokens:
            lines.append("queries: [BOS] + the generated tokens; keys: the source")
    lines += [
        f"query token: \"{_shown(e.query_token)}\" (position {e.query_index} of "
        f"{len(e.query_tokens)})   d_k = {e.d_k}, √d_k = {math.sqrt(e.d_k):.{decimals}f}",
        _LEGEND, "", *_key_rows(e, decimals), "",
        f"output = Σ weight·v  (d_v = {e.values.shape[-1]})",
        *_vector_rows(e.output, decimals),
        "most of the output comes from: " + _top_contributions(e, decimals),
    ]
    return "\n".join(lines)


def format_head_json(e: HeadExplanation, decimals: int | None) -> str:
    """One JSON object (:meth:`HeadExplanation.to_dict`); numbers rounded to ``decimals`` if
    given; a blocked key's scaled score is ``null``."""
    obj = e.to_dict()
    return json.dumps(obj if decimals is None else _rounded(obj, decimals), allow_nan=False)


def _key_rows(e: HeadExplanation, decimals: int) -> list[str]:
    """The table: ``#``, key token, q·k, q·k/√d_k + mask, mask, weight, a bar; then the sum."""
    def num(x: float) -> str:
        return "-inf" if x == float("-inf") else f"{x + 0.0:.{decimals}f}"

    tokens = [_shown(t) for t in e.tokens]
    rows = [(str(j), tok, num(s), num(z), str(m), num(w), "█" * round(w * 20))
            for j, (tok, s, z, m, w) in enumerate(zip(
                tokens, e.scores.tolist(), e.scaled_scores.tolist(), e.mask.tolist(),
                e.weights.tolist(), strict=True))]
    head = ("#", "key token", "q·k", "q·k/√d_k + mask", "mask", "softmax weight", "")
    total = ("", "", "", "", "sum", f"{e.weights.sum().item():.{decimals}f}", "")
    width = [max(len(r[c]) for r in [head, *rows]) for c in range(6)]

    def line(cells: tuple[str, ...]) -> str:
        padded = [x.ljust(w) if c == 1 else x.rjust(w)
                  for c, (x, w) in enumerate(zip(cells, width, strict=False))]
        return "  ".join([*padded, cells[6]]).rstrip()

    return [line(r) for r in (head, *rows, total)]


def _vector_rows(t: Tensor, decimals: int, per_row: int = 8) -> list[str]:
    cells = [f"{x + 0.0:.{decimals}f}" for x in t.tolist()]
    width = max(len(c) for c in cells)
    return ["   [ " + "  ".join(c.rjust(width) for c in cells[i:i + per_row]) + " ]"
            for i in range(0, len(cells), per_row)]


def _top_contributions(e: HeadExplanation, decimals: int, top: int = 3) -> str:
    """The keys whose ``weight·v`` is largest, with their share of ``Σ ‖weight·v‖``."""
    share = e.contributions  # (S,)
    order = torch.argsort(share, descending=True)[:top].tolist()
    return ", ".join(f"\"{_shown(e.tokens[j])}\" (#{j}) {100 * share[j].item():.0f}% (weight "
                     f"{e.weights[j].item():.{decimals}f})" for j in order)


def _shown(text: str) -> str:
    """``text`` as typed, but with control characters escaped (no terminal escapes)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _allowed(mask: Tensor) -> Tensor:
    """Boolean ``True`` = may attend, from a boolean or an additive mask."""
    return ~torch.isneginf(mask) if mask.is_floating_point() else mask


def _rounded(x, decimals: int):
    if isinstance(x, dict):
        return {key: _rounded(val, decimals) for key, val in x.items()}
    if isinstance(x, list):
        return [_rounded(val, decimals) for val in x]
    if isinstance(x, float):
        return round(x, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return x


def _dims(t: Tensor, rows: str | None = None, cols: str | None = None) -> str:
    if rows is None:
        return f"({t.shape[0]} × {t.shape[1]})"
    return f"({rows}={t.shape[0]} × {cols}={t.shape[1]})"


def _matrix(t: Tensor, decimals: int | None) -> list[str]:
    """Rows of ``t`` with aligned columns; ``decimals=None`` prints numbers as given."""
    def cell(x) -> str:
        if isinstance(x, bool):
            return str(int(x))
        if x == float("-inf"):
            return "-inf"
        return f"{x:g}" if decimals is None else f"{x + 0.0:.{decimals}f}"

    cells = [[cell(x) for x in row] for row in t.tolist()]
    width = max(len(c) for row in cells for c in row)
    return ["   [ " + "  ".join(c.rjust(width) for c in row) + " ]" for row in cells]


COMMAND = Command.of(run, add_arguments)
