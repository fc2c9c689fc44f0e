"""``attnlab explain``: attention on small matrices typed on the command line, step by step.

Only parsing and printing live here; the computation is
:func:`attnlab.attention.explain_attention` (float64).
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from torch import Tensor

from attnlab.attention import AttentionSteps, explain_attention
from attnlab.errors import UsageError

__all__ = ["add_arguments", "format_json", "format_text", "parse_matrix", "run"]

_EXAMPLE = "'[[1,0,1]]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab explain``."""
    parser.add_argument("--q", required=True, metavar="JSON",
                        help=f"queries, a JSON matrix L × d_k, e.g. {_EXAMPLE}")
    parser.add_argument("--k", required=True, metavar="JSON", help="keys, a JSON matrix S × d_k")
    parser.add_argument("--v", required=True, metavar="JSON",
                        help="values, a JSON matrix S × d_v")
    parser.add_argument("--mask", metavar="JSON",
                        help="a JSON 0/1 matrix L × S: 1 = the query may attend to the key")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiplies the scores; default 1/sqrt(d_k); --scale 1 for none")
    parser.add_argument("--causal", action="store_true",
                        help="query i attends only to keys j <= i")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--decimals", type=int, default=4, help="decimals shown (default 4)")


def run(args: argparse.Namespace) -> int:
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
    if args.decimals < 0:
        raise UsageError(f"--decimals must be >= 0, got {args.decimals}")
    steps = explain_attention(q, k, v, mask, args.scale, is_causal=args.causal)
    text = format_json(steps, q, k, v, args.decimals) if args.json else format_text(
        steps, q, k, v, args.decimals)
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
