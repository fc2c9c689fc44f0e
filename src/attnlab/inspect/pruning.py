"""Head pruning for real: remove heads from a model so that it is smaller and faster.

:meth:`MultiHeadAttention.prune_heads` shrinks one module's projections; here the heads to
remove are given per module, and the heads that remain are recorded in their original numbering
(``{"layers.0.attn": [0, 2, 3], ...}``). A checkpoint stores that record in its config under
:data:`KEPT_HEADS_KEY`; :func:`attnlab.models.registry.load_model` builds the full-size model
from the config, calls :func:`restore_pruning` with the record, then loads the weights (both
live in the registry, which training and inspection share; they are re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import nn

from attnlab.inspect.capture import attention_modules
from attnlab.io.registry import KEPT_HEADS_KEY, restore_pruning

__all__ = ["KEPT_HEADS_KEY", "kept_heads", "prune_heads", "restore_pruning"]


def kept_heads(model: nn.Module, previous: Mapping[str, list[int]] | None = None
               ) -> dict[str, list[int]]:
    """The record of remaining heads: ``previous`` where given, else ``range(n_heads)``."""
    record = {}
    for name, module in attention_modules(model).items():
        heads = list(range(module.n_heads)) if previous is None or name not in previous else (
            [int(h) for h in previous[name]])
        if len(heads) != module.n_heads:
            raise ValueError(f"kept heads of {name} list {len(heads)} heads but the module has "
                             f"{module.n_heads}")
        record[name] = heads
    return record


def prune_heads(
    model: nn.Module,
    heads: Mapping[str | int, Iterable[int]] | Iterable[tuple[int, int]],
    *,
    previous: Mapping[str, list[int]] | None = None,
) -> dict[str, list[int]]:
    """Remove heads from the attention modules of ``model``, in place.

    Args:
        model: any module built from :class:`MultiHeadAttention`; a grouped-query module
            (``n_kv_heads < n_heads``) cannot be pruned (``ValueError``).
        heads: module (dotted name or position in model order) → head indices in the module's
            current numbering; or ``(layer position, head)`` pairs.
        previous: the record of a model pruned before (from its config), so that the returned
            record keeps the original numbering.

    Returns:
        The record ``{module name: remaining heads, original numbering}`` for every module,
        to store in the config under :data:`KEPT_HEADS_KEY`.
    """
    modules = attention_modules(model)
    names = list(modules)
    record = kept_heads(model, previous)
    if not isinstance(heads, Mapping):
        pairs, heads = list(heads), {}
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError(f"heads must be a mapping or (layer, head) pairs, got {pair!r}")
            heads.setdefault(pair[0], []).append(pair[1])
    plan: dict[str, list[int]] = {}
    for key, removed in heads.items():
        if isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(names):
                raise ValueError(f"heads: layer {key} out of range for {len(names)} modules")
            key = names[key]
        if key not in modules:
            raise ValueError(f"heads: no MultiHeadAttention named {key!r}; have {names}")
        plan.setdefault(key, []).extend(int(h) for h in removed)
    for name, removed in plan.items():  # check all before changing any
        n = modules[name].n_heads
        if removed and modules[name].grouped:  # query heads share key/value heads
            raise ValueError(f"cannot prune heads of {name}: it is grouped-query attention "
                             f"(n_kv_heads={modules[name].n_kv_heads} < n_heads={n}), whose "
                             f"key/value heads are shared; use head_mask to silence heads")
        if any(not 0 <= h < n for h in removed):
            raise ValueError(f"heads for {name} must be in [0, {n}), got {sorted(removed)}")
        if len(set(removed)) == n:
            raise ValueError(f"cannot prune all {n} heads of {name}; at least one must remain")
    for name, removed in plan.items():
        modules[name].prune_heads(removed)
        gone = set(removed)
        record[name] = [h for i, h in enumerate(record[name]) if i not in gone]
    return record
