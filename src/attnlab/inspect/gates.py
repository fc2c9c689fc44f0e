"""Head gates: scale each attention head's output, in any model built from MultiHeadAttention.

Gates reach :class:`MultiHeadAttention` as its ``head_mask`` through a forward pre-hook, so the
model need not pass a head mask itself. Gates of ones that require grad give the head
importance of Michel et al. (2019); gates of zeros remove heads.

Legend: ``B`` batch, ``H`` heads of a module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from attnlab.attention import MultiHeadAttention
from attnlab.inspect.capture import attention_modules

__all__ = ["head_gates"]


@contextmanager
def head_gates(model: nn.Module, gates: dict[str, Tensor] | None = None) -> Iterator[dict]:
    """Multiply each head's output by a gate, in any model built from MultiHeadAttention.

    Injects ``head_mask`` into every :class:`MultiHeadAttention` call (multiplied with one the
    model passes itself), so the model need not forward a head mask.

    Args:
        model: any module containing :class:`MultiHeadAttention` modules.
        gates: dotted name → gate ``(H,)`` or ``(B, H)``. ``None`` creates, at each call, a leaf
            gate of ones ``(B, H)`` that requires grad (for head importance).

    Returns:
        A context manager yielding the dict of gates in use; created gates appear in it
        after the forward pass, one per module (the last call's).
    """
    modules = attention_modules(model)
    used: dict[str, Tensor] = {} if gates is None else dict(gates)
    for name, gate in used.items():
        if name not in modules:
            raise ValueError(f"gates: no MultiHeadAttention named {name!r}; have {list(modules)}")
        if not isinstance(gate, Tensor) or gate.shape[-1] != modules[name].n_heads:
            raise ValueError(f"gates[{name!r}] must end in H = {modules[name].n_heads}, got "
                             f"{getattr(gate, 'shape', type(gate).__name__)}")

    def make_hook(name: str):
        def hook(module: MultiHeadAttention, args, kwargs):
            if gates is None:
                query = args[0] if args else kwargs["query"]
                batch = query.shape[0] if query.dim() == 3 else 1
                used[name] = torch.ones(batch, module.n_heads, dtype=query.dtype,
                                        device=query.device, requires_grad=True)  # (B, H)
            elif name not in used:
                return None
            gate = used[name]
            given = kwargs.get("head_mask")
            kwargs["head_mask"] = gate if given is None else given * gate  # (B|1, H)
            return args, kwargs

        return hook

    handles = [m.register_forward_pre_hook(make_hook(n), with_kwargs=True)
               for n, m in modules.items()]
    try:
        yield used
    finally:
        for handle in handles:
            handle.remove()
