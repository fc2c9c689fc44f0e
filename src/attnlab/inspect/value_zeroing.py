"""Value zeroing (Mohebbi et al., 2023, "Quantifying Context Mixing in Transformers"): how much
each position's output of a layer owes to each token the layer attends to.

For a layer with input ``x`` and output ``y``, zero the value vector of token ``j`` in every head
of its attention, recompute the layer's output ``ỹ^¬j`` with the same input, and score
``C[i, j] = 1 − cos(ỹ_i^¬j, y_i)``: the cosine distance of position ``i``'s output from the
original. Rows are normalised to sum to 1 and the layers rolled out (the paper's aggregation:
rollout without an added residual, which the layer's own output already holds).

Here the ``K`` zeroings of one layer run as one batch of ``K`` replicas of its recorded input;
any module whose forward takes batch-first tensors works as a layer (an encoder layer, a
decoder layer with its memory).

Legend: ``Q`` query positions of a layer, ``K`` positions whose values are zeroed, ``D`` width.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LayerCall", "normalise_rows", "recording", "zeroing_distances"]


@dataclass
class LayerCall:
    """One recorded call of a layer: its arguments and its output (the first element of a
    tuple output)."""

    args: tuple
    kwargs: dict
    output: Tensor  # (1, Q, D)


@contextmanager
def recording(layers: Sequence[nn.Module]) -> Iterator[list[LayerCall | None]]:
    """Record the latest call of each layer made inside the block (``None`` until called)."""
    calls: list[LayerCall | None] = [None] * len(layers)
    handles = []

    def recorder(index: int):
        def hook(module, args, kwargs, output):
            calls[index] = LayerCall(args, kwargs, _first(output))
        return hook

    try:
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(recorder(i), with_kwargs=True))
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def zeroing_distances(layer: nn.Module, call: LayerCall, value_proj: nn.Module,
                      positions: int) -> Tensor:
    """``C (Q, K)``: ``C[i, j]`` = cosine distance of the layer's output at ``i`` when
    ``value_proj``'s output at position ``j`` (the values of every head) is zero, from the
    recorded output; the layer's input stays the recorded one.

    Args:
        layer: the module called in ``call`` (a batch of one).
        call: its recorded call (see :func:`recording`).
        value_proj: the value projection of one attention module inside ``layer``; its output
            ``(1, K, H·d_v)`` is what gets zeroed, one position per replica.
        positions: ``K``, the length of the sequence the values come from.
    """
    K = positions
    keep = ~torch.eye(K, dtype=torch.bool, device=call.output.device)  # (K, K): replica j

    def zero(module, args, output):  # (K, K, H·d_v): replica j loses position j's values
        return output * keep[:, :, None].to(output.dtype)

    handle = value_proj.register_forward_hook(zero)
    try:
        out = _first(layer(*_replicate(call.args, K), **_replicate(call.kwargs, K)))
    finally:
        handle.remove()
    similarity = F.cosine_similarity(out, call.output.expand_as(out), dim=-1)  # (K, Q)
    return (1 - similarity).clamp_min(0).T  # (Q, K)


def normalise_rows(scores: Tensor) -> Tensor:
    """Each row divided by its sum (rows of zeros stay zero)."""
    return scores / scores.sum(-1, keepdim=True).clamp_min(1e-12)


def _replicate(value, n: int):
    """``value`` with every tensor of batch size 1 repeated ``n`` times along the batch."""
    if isinstance(value, Tensor):
        return value.expand(n, *value.shape[1:]) if value.dim() and value.shape[0] == 1 else value
    if isinstance(value, tuple):
        return tuple(_replicate(v, n) for v in value)
    if isinstance(value, list):
        return [_replicate(v, n) for v in value]
    if isinstance(value, dict):
        return {k: _replicate(v, n) for k, v in value.items()}
    return value


def _first(output) -> Tensor:
    """A layer's hidden states: its output, or the first element of a tuple output."""
    return output[0] if isinstance(output, (tuple, list)) else output
