"""Head gates: scale each attention head's output, in any model built from MultiHeadAttention.

Gates are forward hooks on each module's ``hook_head_output`` (the per-head outputs before
concatenation) that return the gated outputs, the same mechanism :func:`capture` uses to
observe, so the model need not pass a head mask itself. Gates of ones that require grad give
the head importance of Michel et al. (2019); gates of zeros remove heads.

Legend: ``B`` batch, ``H`` heads of a module, ``L`` query length, ``d_v`` value dim per head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from attnlab.attention.hooks import HookPoint, Observer, name_hook_points
from attnlab.inspect.capture import attention_modules

__all__ = ["head_gates"]


@contextmanager
def head_gates(model: nn.Module, gates: dict[str, Tensor] | None = None) -> Iterator[dict]:
    """Multiply each head's output by a gate, in any model built from MultiHeadAttention.

    The gate multiplies the per-head outputs after any ``head_mask`` the model passes itself,
    so both apply. Modules without a gate are left alone (and stay on the fused path).

    Args:
        model: any module containing :class:`MultiHeadAttention` modules.
        gates: dotted name → gate ``(H,)`` or ``(B, H)``. ``None`` creates, at each call, a leaf
            gate of ones ``(B, H)`` in the query's dtype that requires grad (head importance).

    Returns:
        A context manager yielding the dict of gates in use; created gates appear in it
        after the forward pass, one per module (the last call's).
    """
    modules = attention_modules(model)
    used: dict[str, Tensor] = {} if gates is None else dict(gates)
    for name, gate in used.items():
        if name not in modules:
            raise ValueError(f"gates: no MultiHeadAttention named {name!r}; have {list(modules)}")
        if (not isinstance(gate, Tensor) or gate.dim() not in (1, 2)
                or gate.shape[-1] != modules[name].n_heads):
            raise ValueError(f"gates[{name!r}] must end in H = {modules[name].n_heads}, got "
                             f"{getattr(gate, 'shape', type(gate).__name__)}")
    points = name_hook_points(model)
    gated = list(modules) if gates is None else list(used)
    observers: list[Observer] = []
    try:
        for name in gated:
            point = points[f"{name}.hook_head_output" if name else "hook_head_output"]
            observers.append(point.observe(hook=_gate(used, name, create=gates is None),
                                           with_kwargs=True))
        yield used
    finally:
        for observer in observers:
            observer.release()


def _gate(used: dict[str, Tensor], name: str, *, create: bool):
    def hook(point: HookPoint, inputs: tuple[Tensor, ...], context: dict, heads: Tensor) -> Tensor:
        B, H = heads.shape[:2]  # heads (B, H, L, d_v)
        if create:
            query = context["query"]
            used[name] = torch.ones(B, H, dtype=query.dtype, device=query.device,
                                    requires_grad=True)  # (B, H)
        gate = used[name]
        if gate.dim() == 2 and gate.shape[0] != B:
            raise ValueError(f"gates[{name!r}] must have shape (H,) = ({H},) or (B, H) = "
                             f"({B}, {H}), got {tuple(gate.shape)}")
        return heads * gate.to(heads.dtype).view(-1, H, 1, 1)  # (B, H, L, d_v)

    return hook
