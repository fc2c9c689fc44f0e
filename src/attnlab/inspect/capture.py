"""Capture attention weights from any module built from :class:`MultiHeadAttention`.

``with capture(model) as cap: model(x)`` opens an observer (:meth:`HookPoint.observe`) on every
selected ``attn.hook_pattern`` and stores the weights, detached, under the dotted name of their
:class:`MultiHeadAttention` (from ``named_modules``). Only observed modules leave the fused
kernel, and when only some heads are asked for, only those heads are computed explicitly. Every
observer is released in ``finally``; nested captures compose: the point computes the union of
the heads its observers want, and each capture picks its own from it.

With ``vectors=True`` it also keeps the per-head queries, keys and values of the selected
modules (``hook_query``/``hook_key``/``hook_value``) and the mask their scores got: what a
step-by-step explanation of one head needs. They are computed anyway, so keeping them costs
only the copy. With grouped-query attention the keys and values are kept as the module's shared
key/value heads, not repeated per query head: :attr:`AttentionCapture.kv_heads` says which
key/value head each row is, :meth:`AttentionCapture.kv_row` which row a query head reads.

Legend: ``B`` batch, ``H`` heads of a module, ``h`` selected heads, ``G`` key/value heads of a
module (``H`` unless grouped-query), ``g`` the key/value heads of the selected heads, ``L``
query length, ``S`` key length, ``d_k``/``d_v`` query-key and value size per head.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from attnlab.attention import MultiHeadAttention
from attnlab.attention.hooks import HookPoint, Observer, name_hook_points

__all__ = ["AttentionCapture", "attention_modules", "capture"]


def attention_modules(model: nn.Module) -> dict[str, MultiHeadAttention]:
    """Every :class:`MultiHeadAttention` in ``model`` by dotted name, in registration order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}


@dataclass
class AttentionCapture:
    """What a :func:`capture` block saw.

    Attributes:
        names: dotted names of the observed :class:`MultiHeadAttention` modules, in model order.
        heads: the head indices captured per module (``None`` = all of them).
        weights: name → detached weights ``(B, H, L, S)`` (or ``(B, h, L, S)`` for selected
            heads) of the latest forward; a module called several times keeps its last call.
        tokens: optional tokens per sequence, ``list[list[str]]``, as given to :func:`capture`.
        hook_names: dotted names of the observed hook points, aligned with ``names``
            (``layers.0.attn.hook_pattern``).
        queries, keys, values: with ``vectors=True``, name → detached per-head queries
            ``(B, H|h, L, d_k)``, keys ``(B, G|g, S, d_k)`` and values ``(B, G|g, S, d_v)``:
            the key/value heads the captured query heads read, each once (``G = H``, ``g = h``
            without grouped-query attention).
        kv_heads: with ``vectors=True``, name → the module's key/value head index of each row
            of ``keys``/``values`` (all ``G`` in order, or those of the selected heads in order
            of first use).
        groups: with ``vectors=True``, name → query heads per key/value head, ``H/G``.
        masks: with ``vectors=True``, name → the mask the scores got, ``(B, 1|H|h, L, S)``
            (boolean ``True`` = may attend, or additive), or ``None`` when every key was seen.
    """

    names: list[str]
    heads: Sequence[int] | None
    weights: dict[str, Tensor] = field(default_factory=dict)
    tokens: list[list[str]] | None = None
    hook_names: list[str] = field(default_factory=list)
    queries: dict[str, Tensor] = field(default_factory=dict)
    keys: dict[str, Tensor] = field(default_factory=dict)
    values: dict[str, Tensor] = field(default_factory=dict)
    masks: dict[str, Tensor | None] = field(default_factory=dict)
    kv_heads: dict[str, list[int]] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, key: int | str) -> Tensor:
        """Weights by layer position among the observed modules, or by dotted name."""
        name = self.names[key] if isinstance(key, int) else key
        if name not in self.weights:
            raise KeyError(f"no weights captured for {name!r}; captured: {list(self.weights)}")
        return self.weights[name]

    def kv_row(self, name: str, head: int) -> int:
        """Row of ``keys[name]``/``values[name]`` that query head ``head`` (the module's
        numbering) reads: that of its key/value head ``head // (H/G)``."""
        return self.kv_heads[name].index(head // self.groups[name])

    def per_query_head(self, vectors: dict[str, Tensor], name: str) -> Tensor:
        """``keys`` or ``values`` of ``name`` with one row per captured query head
        ``(B, H|h, S, d)``, each key/value head repeated for the query heads that share it."""
        heads = range(self.queries[name].shape[1]) if self.heads is None else self.heads
        return vectors[name][:, [self.kv_row(name, h) for h in heads]]  # (B, H|h, S, d)

    def __len__(self) -> int:
        return len(self.weights)

    def stack(self) -> Tensor:
        """All captured layers as one tensor ``(n_layers, B, H, L, S)``; shapes must agree."""
        missing = [n for n in self.names if n not in self.weights]
        if missing:
            raise ValueError(f"no weights captured for {missing}: did the forward pass run?")
        shapes = {tuple(self.weights[n].shape) for n in self.names}
        if len(shapes) != 1:
            raise ValueError(f"layers have different weight shapes {sorted(shapes)}; index them")
        return torch.stack([self.weights[n] for n in self.names])  # (n_layers, B, H, L, S)


@contextmanager
def capture(
    model: nn.Module,
    layers: Iterable[int | str] | None = None,
    heads: Iterable[int] | None = None,
    *,
    tokens: object = None,
    vectors: bool = False,
) -> Iterator[AttentionCapture]:
    """Record the attention weights of ``model``'s :class:`MultiHeadAttention` modules.

    Args:
        model: any module containing :class:`MultiHeadAttention` modules.
        layers: which modules to observe: positions in model order (``0`` is the first
            attention module; negative counts from the end) or dotted names. ``None`` = all.
        heads: head indices to capture in each observed module; ``None`` = all heads. Heads not
            listed stay on the fused kernel.
        tokens: optional tokens carried on the result: a ``list[list[str]]``, a list of
            ``tokenizers.Encoding``, or one ``Encoding``.
        vectors: also keep the selected heads' queries, keys, values and masks
            (:attr:`AttentionCapture.queries` and the others).

    Returns:
        A context manager yielding an :class:`AttentionCapture`, filled by forward passes run
        inside the block.

    Example::

        >>> with capture(model, layers=[0], heads=[3]) as cap:
        ...     model(x)
        >>> cap[0].shape  # (B, 1, L, S)
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"model {type(model).__name__} contains no MultiHeadAttention module")
    names = _select_layers(list(modules), layers)
    head_list = None if heads is None else _check_heads(heads, [modules[n] for n in names])
    points = name_hook_points(model)
    hook_names = [_join(name, "hook_pattern") for name in names]
    cap = AttentionCapture(names=names, heads=head_list, tokens=_tokens(tokens),
                           hook_names=hook_names)
    observers: list[Observer] = []
    try:
        for name, hook_name in zip(names, hook_names, strict=True):
            observers.append(points[hook_name].observe(head_list, _recorder(cap, name, head_list)))
            if vectors:
                observers += _observe_vectors(cap, points, name, head_list, modules[name])
        yield cap
    finally:
        for observer in observers:
            observer.release()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _recorder(cap: AttentionCapture, name: str, wanted: list[int] | None):
    def hook(point: HookPoint, inputs: tuple[Tensor, ...], _output) -> None:
        observed = inputs[0].detach()  # (B, H|h', L, S), h' = union of the open requests
        union = point.heads
        if wanted is not None and union is not None:
            observed = observed[:, [union.index(h) for h in wanted]]  # (B, h, L, S)
        elif wanted is not None:
            observed = observed[:, wanted]  # (B, h, L, S)
        cap.weights[name] = observed

    return hook


def _observe_vectors(cap: AttentionCapture, points: dict[str, HookPoint], name: str,
                     wanted: list[int] | None, module: MultiHeadAttention) -> list[Observer]:
    """Observers that keep ``name``'s queries, keys, values and mask in ``cap``."""
    kv = list(range(module.n_kv_heads)) if wanted is None else list(
        dict.fromkeys(module.kv_head(h) for h in wanted))  # key/value heads read, in order
    cap.kv_heads[name], cap.groups[name] = kv, module.n_heads // module.n_kv_heads

    def keeper(store: dict[str, Tensor], rows: list[int] | None, with_mask: bool):
        def hook(_point: HookPoint, inputs: tuple[Tensor, ...], context: dict, _output) -> None:
            vectors = inputs[0].detach()  # (B, H|G, L|S, d)
            store[name] = vectors if rows is None else vectors[:, rows]  # (B, H|h|G|g, L|S, d)
            if with_mask:
                cap.masks[name] = _head_mask(context["mask"], vectors, wanted)
        return hook

    kv_rows = None if wanted is None else kv
    return [points[_join(name, point)].observe(heads, keeper(store, heads, point == "hook_query"),
                                               with_kwargs=True)
            for point, store, heads in (("hook_query", cap.queries, wanted),
                                        ("hook_key", cap.keys, kv_rows),
                                        ("hook_value", cap.values, kv_rows))]


def _head_mask(mask: Tensor | None, queries: Tensor, wanted: list[int] | None) -> Tensor | None:
    """``mask`` broadcast to ``(B, 1|H|h, L, S)`` for the wanted heads of ``queries``."""
    if mask is None:
        return None
    mask = mask.detach()
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)  # (L, S) -> (1, 1, L, S)
    B, H, L, _ = queries.shape
    per_head = mask.shape[1] == H and H > 1
    mask = mask.expand(B, H if per_head else 1, L, mask.shape[-1])  # (B, 1|H, L, S)
    return mask[:, wanted] if per_head and wanted is not None else mask


def _select_layers(names: list[str], layers: Iterable[int | str] | None) -> list[str]:
    if layers is None:
        return names
    if isinstance(layers, (int, str)):
        layers = [layers]
    chosen = []
    for layer in layers:
        if isinstance(layer, str):
            if layer not in names:
                raise ValueError(f"layers: no MultiHeadAttention named {layer!r}; have {names}")
            chosen.append(layer)
        elif isinstance(layer, int) and not isinstance(layer, bool):
            if not -len(names) <= layer < len(names):
                raise ValueError(f"layers: index {layer} out of range for {len(names)} "
                                 f"attention modules")
            chosen.append(names[layer])
        else:
            raise TypeError(f"layers must hold ints or dotted names, got {type(layer).__name__}")
    return list(dict.fromkeys(chosen))


def _check_heads(heads: Iterable[int], modules: list[MultiHeadAttention]) -> list[int]:
    heads = [heads] if isinstance(heads, int) else list(heads)
    if not heads:
        raise ValueError("heads must not be empty; pass None for all heads")
    n = min(m.n_heads for m in modules)
    for h in heads:
        if not isinstance(h, int) or isinstance(h, bool) or not 0 <= h < n:
            raise ValueError(f"heads must be integers in [0, {n}), got {heads}")
    return list(dict.fromkeys(heads))


def _tokens(tokens: object) -> list[list[str]] | None:
    if tokens is None:
        return None
    if hasattr(tokens, "tokens") and not isinstance(tokens, (list, tuple)):
        return [list(tokens.tokens)]  # one tokenizers.Encoding
    rows = list(tokens)
    if rows and all(isinstance(t, str) for t in rows):
        return [rows]
    return [list(r.tokens) if hasattr(r, "tokens") else [str(t) for t in r] for r in rows]
