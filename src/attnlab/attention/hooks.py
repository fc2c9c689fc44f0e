"""Hook points: named identity modules where an activation can be observed on demand.

As in TransformerLens, a module places a :class:`HookPoint` at an interesting activation (the
attention pattern of :class:`~attnlab.attention.MultiHeadAttention` is ``attn.hook_pattern``).
Observers register ordinary forward hooks on it. A hook point with no hooks costs nothing, and
the module computing the activation may skip computing it (the fused attention path).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["HookPoint"]


class HookPoint(nn.Module):
    """Identity module that observers hook into.

    ``heads`` narrows what an attention module must compute for the observers: ``None`` means
    every head; a sequence of head indices means only those (the rest may stay fused).
    """

    def __init__(self) -> None:
        super().__init__()
        self.heads: Sequence[int] | None = None

    @property
    def active(self) -> bool:
        """Whether anyone is observing this point."""
        return bool(self._forward_hooks)

    def forward(self, x: Tensor) -> Tensor:
        return x
