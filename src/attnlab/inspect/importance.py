"""Head importance (Michel, Levy & Neubig, 2019, "Are Sixteen Heads Really Better than One?").

Each head ``h`` gets a gate ``ξ_h = 1`` on its output; its importance is the expected absolute
gradient of the loss with respect to that gate, ``I_h = E_x |∂L(x)/∂ξ_h|``. The gates here are
``(B, H)`` per module, one per example, so a single backward pass of the summed loss gives every
example's own gradient: the absolute value is taken per example, as in the definition.

Legend: ``B`` batch, ``H`` heads of a module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnlab.inspect.gates import head_gates

__all__ = ["HeadImportance", "head_importance"]


@dataclass(frozen=True)
class HeadImportance:
    """Importance per head of every attention module, in model order."""

    names: list[str]  # dotted names of the MultiHeadAttention modules
    scores: list[Tensor]  # per module (H,): E_x |dL/d gate|
    examples: int  # number of examples averaged over

    def matrix(self) -> Tensor:
        """Scores as ``(n_layers, H)``; all modules must have the same head count."""
        if len({s.numel() for s in self.scores}) != 1:
            raise ValueError(f"modules have different head counts "
                             f"{[s.numel() for s in self.scores]}; use .scores")
        return torch.stack(self.scores)  # (n_layers, H)

    def ranking(self) -> list[tuple[int, int]]:
        """``(layer, head)`` pairs from least to most important."""
        pairs = [(float(s), layer, h) for layer, row in enumerate(self.scores)
                 for h, s in enumerate(row)]
        return [(layer, h) for _, layer, h in sorted(pairs)]


def head_importance(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[nn.Module, object], Tensor],
    *,
    normalize: bool = False,
) -> HeadImportance:
    """Expected absolute gradient of the loss w.r.t. each head's gate, over ``batches``.

    Args:
        model: any module built from :class:`MultiHeadAttention`; run in eval mode here (its
            mode is restored) and its parameters' ``.grad`` are left untouched.
        batches: an iterable of batches, each handed to ``loss_fn``.
        loss_fn: ``loss_fn(model, batch)`` runs the model and returns the per-example losses
            ``(B,)`` (e.g. cross-entropy against the gold labels, ``reduction="none"``).
        normalize: divide each layer's scores by their L2 norm (as in the paper's experiments).

    Returns:
        :class:`HeadImportance`.
    """
    was_training = model.training
    model.eval()
    totals: dict[str, Tensor] = {}
    examples = 0
    try:
        for batch in batches:
            with head_gates(model) as gates:
                losses = loss_fn(model, batch)
            if not isinstance(losses, Tensor) or losses.dim() != 1:
                raise ValueError(f"loss_fn must return per-example losses (B,), got "
                                 f"{getattr(losses, 'shape', type(losses).__name__)}")
            if not torch.isfinite(losses).all():
                raise ValueError("loss_fn returned a non-finite loss")
            names = list(gates)
            grads = torch.autograd.grad(losses.sum(), [gates[n] for n in names],
                                        allow_unused=True)
            for name, grad in zip(names, grads, strict=True):
                if grad is None:
                    grad = torch.zeros_like(gates[name])
                if grad.shape[0] != losses.shape[0]:
                    raise ValueError(f"{name} saw batch {grad.shape[0]} but loss_fn returned "
                                     f"{losses.shape[0]} losses")
                part = grad.detach().abs().sum(0).double()  # (H,): Σ_b |dL_b/dξ_bh|
                totals[name] = part if name not in totals else totals[name] + part
            examples += losses.shape[0]
    finally:
        model.train(was_training)
    if examples == 0:
        raise ValueError("batches is empty")
    names = list(totals)
    scores = [(totals[n] / examples).float() for n in names]
    if normalize:
        scores = [s / s.norm().clamp_min(1e-20) for s in scores]
    return HeadImportance(names, scores, examples)
