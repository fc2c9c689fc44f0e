"""Hook points: named identity modules where an activation can be observed on demand.

As in TransformerLens, a module places a :class:`HookPoint` at an interesting activation
(:class:`~attnlab.attention.MultiHeadAttention` has ``hook_pattern`` at its attention weights and
``hook_head_output`` at its per-head outputs). Observers register ordinary forward hooks on it,
most simply through :meth:`HookPoint.observe`, which also records which heads they want. The
module computing the activation checks :attr:`HookPoint.active` first: a point nobody observes
is never called, and the fused attention path stays fused.

Each point keeps its own observers; there is no global registry. :func:`name_hook_points`
gives the points of a model their dotted names (``layers.0.attn.hook_pattern``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["HookPoint", "Observer", "name_hook_points"]


class Observer:
    """One observer's request on a :class:`HookPoint`; returned by :meth:`HookPoint.observe`.

    Release it with :meth:`release` (or by leaving its ``with`` block); releasing twice is a
    no-op.

    Attributes:
        point: the hook point observed.
        heads: the head indices wanted, sorted and unique; ``None`` = every head.
    """

    def __init__(self, point: HookPoint, heads: Sequence[int] | None,
                 handle: RemovableHandle | None) -> None:
        self.point = point
        self.heads: tuple[int, ...] | None = None if heads is None else tuple(sorted(set(heads)))
        self._handle = handle

    def release(self) -> None:
        """Remove this observer's hook and request from its point."""
        self.point.release(self)

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Observer(point={self.point.name!r}, heads={self.heads})"


class HookPoint(nn.Module):
    """Identity module that observers hook into.

    :attr:`heads` narrows what an attention module must compute for the observers: ``None``
    means every head; a list of head indices means only those (the rest may stay fused).

    Attributes:
        name: dotted name in the model, set by :func:`name_hook_points`; ``None`` until then.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self._observers: list[Observer] = []

    def observe(
        self,
        heads: Sequence[int] | None = None,
        hook: Callable[..., Tensor | None] | None = None,
        *,
        with_kwargs: bool = False,
    ) -> Observer:
        """Record what one observer wants and optionally register its forward hook.

        Args:
            heads: head indices the observer needs; ``None`` = every head.
            hook: ``hook(point, inputs, output)``, an ordinary forward hook; one that returns a
                tensor replaces the activation.
            with_kwargs: call ``hook(point, inputs, context, output)`` with the keyword context
                the calling module passes (see :meth:`forward`).

        Returns:
            An :class:`Observer`; :meth:`release` it (or use it as a context manager), in
            ``finally``, to restore the point exactly as it was.
        """
        handle = None if hook is None else self.register_forward_hook(hook,
                                                                        with_kwargs=with_kwargs)
        observer = Observer(self, heads, handle)
        self._observers.append(observer)
        return observer

    def release(self, observer: Observer) -> None:
        """Remove ``observer``'s hook and request; a no-op if it was released already."""
        if observer._handle is not None:
            observer._handle.remove()
            observer._handle = None
        self._observers = [o for o in self._observers if o is not observer]

    @property
    def observers(self) -> tuple[Observer, ...]:
        """The open requests, oldest first."""
        return tuple(self._observers)

    @property
    def heads(self) -> list[int] | None:
        """Heads the open requests need: ``None`` if one wants every head (or none is open),
        else the sorted union of theirs."""
        wanted = [o.heads for o in self._observers]
        if not wanted or any(w is None for w in wanted):
            return None
        return sorted({h for w in wanted for h in w})

    @property
    def active(self) -> bool:
        """Whether any hook is registered, i.e. whether the point must be called at all."""
        return bool(self._forward_hooks or self._forward_pre_hooks)

    def forward(self, x: Tensor, **context) -> Tensor:
        """Return ``x``; ``context`` (keyword tensors from the calling module) is for hooks
        registered with ``with_kwargs=True``."""
        return x

    def extra_repr(self) -> str:
        return "" if self.name is None else f"name={self.name!r}"


def name_hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every :class:`HookPoint` in ``model`` by dotted name, in registration order.

    A point still unnamed gets its dotted name here as :attr:`HookPoint.name`; a named one
    keeps its name, so names are assigned once.
    """
    points = {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}
    for name, point in points.items():
        if point.name is None:
            point.name = name
    return points
