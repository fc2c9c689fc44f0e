"""The explicit attention kernel: the path that writes the weights out, with a hand-written
backward (:func:`~attnlab.attention.functional.scaled_dot_product_attention` runs it when the
caller asks for the weights).

A query row whose every key is masked gets output 0 and weights 0, never NaN (in forward and
backward).

Legend: ``...`` batch dims, ``L`` query length, ``S`` key length, ``E`` query/key dim,
``Ev`` value dim.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["ExplicitAttention", "safe_softmax"]


def safe_softmax(scores: Tensor) -> Tensor:
    """Softmax over the keys where a row of only ``-inf`` gives zeros instead of NaN."""
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    # Give dead rows finite scores first: softmax of a row of -inf has a NaN gradient.
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1)
    return weights.masked_fill(dead, 0.0)


class ExplicitAttention(torch.autograd.Function):
    """Attention that returns its weights, with a hand-written backward.

    Forward: ``W = softmax(Q Kᵀ·scale + mask)`` in three passes over one ``L × S`` buffer (the
    matmul writes it, mask and softmax work in place), then ``O = W V``; no other ``L × S``
    temporaries are made. Both outputs are differentiable. Backward uses the saved ``W``:
    ``dV = Wᵀ dO``, ``dS = W ⊙ (G − rowsum(G ⊙ W))`` with ``G = dO Vᵀ + dW`` (``dW`` the
    gradient reaching the returned weights, skipped when none does), ``dQ = dS K·scale``,
    ``dK = dSᵀ Q·scale``, ``dmask = dS`` summed to the mask's shape.
    """

    @staticmethod
    def forward(ctx, query, key, value, attn_mask, scale):
        # scale the queries (L·E work) rather than the scores (L·S work)
        weights = (query * scale) @ key.transpose(-2, -1)  # (..., L, E) x (..., E, S)
        dead = None
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                blocked = ~attn_mask
                weights.masked_fill_(blocked, float("-inf"))
                dead = blocked.all(dim=-1, keepdim=True)  # rows that see no key
            else:
                weights.add_(attn_mask)
                dead = torch.isneginf(attn_mask).all(dim=-1, keepdim=True)
        torch.softmax(weights, dim=-1, out=weights)
        if dead is not None and dead.any():
            weights.masked_fill_(dead, 0.0)  # softmax gave NaN there; no key means no attention
        output = weights @ value  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)

        ctx.scale = scale
        ctx.mask_shape = None if attn_mask is None else attn_mask.shape
        ctx.set_materialize_grads(False)  # an unused output gets None, not an L × S of zeros
        ctx.save_for_backward(query, key, value, weights, output)
        return output, weights

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, grad_weights):
        query, key, value, weights, output = ctx.saved_tensors
        scale = ctx.scale
        need_query, need_key, need_value, need_mask = ctx.needs_input_grad[:4]
        grad_query = grad_key = grad_value = grad_mask = None
        if grad_output is None and grad_weights is None:  # neither output reached the loss
            return grad_query, grad_key, grad_value, grad_mask, None
        if need_value and grad_output is not None:
            grad_value = weights.transpose(-2, -1) @ grad_output  # (..., S, L) x (..., L, Ev)
        if need_query or need_key or need_mask:
            grad_scores = _grad_scores(weights, value, output, grad_output, grad_weights)
            if need_query:
                grad_query = (grad_scores @ key).mul_(scale)  # (..., L, S) x (..., S, E)
            if need_key:  # (..., S, L) x (..., L, E) -> (..., S, E)
                grad_key = (grad_scores.transpose(-2, -1) @ query).mul_(scale)
            if need_mask:  # a learned additive bias, e.g. ALiBi with trained slopes
                grad_mask = grad_scores.sum_to_size(ctx.mask_shape)
        return grad_query, grad_key, grad_value, grad_mask, None


def _grad_scores(weights: Tensor, value: Tensor, output: Tensor, grad_output: Tensor | None,
                 grad_weights: Tensor | None) -> Tensor:
    """Softmax backward ``W ⊙ (G − rowsum(G ⊙ W))``, ``G = dO Vᵀ + dW``, in one new buffer.

    Rows of zero weights (every key masked) get zero gradient.
    """
    if grad_weights is None:  # only the output is used: rowsum(dO Vᵀ ⊙ W) = rowsum(dO ⊙ O)
        grad_scores = grad_output @ value.transpose(-2, -1)  # (..., L, Ev) x (..., Ev, S)
        row_dot = (grad_output * output).sum(dim=-1, keepdim=True)  # (..., L, 1)
        return grad_scores.sub_(row_dot).mul_(weights)  # (..., L, S)
    if grad_output is None:
        grad_scores = grad_weights * weights  # G ⊙ W, (..., L, S)
    else:
        grad_scores = grad_output @ value.transpose(-2, -1)  # (..., L, Ev) x (..., Ev, S)
        grad_scores.add_(grad_weights).mul_(weights)  # G ⊙ W, (..., L, S)
    row_dot = grad_scores.sum(dim=-1, keepdim=True)  # (..., L, 1)
    return grad_scores.addcmul_(weights, row_dot, value=-1.0)  # G ⊙ W − W · rowsum(G ⊙ W)
