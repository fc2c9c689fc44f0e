"""The lowest and highest AOPC any token ordering reaches on one input, approximately, for the
normalised AOPC (Edin et al. 2024); and the one way faithfulness asks for probabilities.

The exact bounds need every ordering of the removable tokens (``n!``). Only the sets at the bin
boundaries count (the top ``ceil(k·n/100)`` tokens for each bin ``k``), and they are nested, so a
search grows one set from boundary to boundary: **beam search** with ``beam`` states per
decision and search (greedy at ``beam=1``). From each state it measures every set one free token
larger (one batched round), ranks the free tokens by that drop, and grows to the next boundary
(``Δ`` tokens more) with the best ``Δ − 1`` of them and, for the ``j``-th candidate, the
``(Δ − 1 + j)``-th next; the ``beam`` candidates with the highest AOPC sum so far go on (for the
lowest bounds: the lowest). With one token per boundary (``Δ = 1``) this is plain beam search
over tokens. Four searches run in lockstep per decision — comprehensiveness up and down,
sufficiency up and down — and all decisions of the input in the same calls: one round asks
``probability`` for (decisions × 4 × beam × free tokens) rows, and there are as many rounds as
distinct bin sizes (at most 5). For an additive model (the target probability a sum of
per-token terms) greedy is exact; in general the bounds are inner approximations, which
:func:`~attnlab.inspect.faithfulness.measure_input` widens to every method's ordering.

Legend: ``D`` decisions, ``L`` tokens, ``Q`` search states, ``M`` candidate sets of one step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["LOG_FLOOR", "MEASURES", "Bounds", "Prober", "aopc_bounds", "measured", "tokens_in"]

MEASURES = ("probability", "log_probability")  # m, the figure whose drop AOPC measures
LOG_FLOOR = 1e-12  # log_probability: log(max(p, LOG_FLOOR)), so that p = 0 stays finite
SEARCHES = 4  # per decision: comprehensiveness max, min; sufficiency max, min



def tokens_in(percent: int, n: int) -> int:
    """How many of ``n`` removable tokens the top ``percent`` % holds: ``ceil(percent·n/100)``,
    computed on integers (no float rounding)."""
    return -(-percent * n // 100)

def measured(p: Tensor, measure: str) -> Tensor:
    """``m(p)``: the probability itself, or its log floored at :data:`LOG_FLOOR`."""
    return p if measure == "probability" else torch.log(torch.clamp(p, min=LOG_FLOOR))


class Prober:
    """An input's ``probability(keep, rows)``, asked once per distinct (decision, kept tokens)
    pair and in calls of at most ``batch`` rows: bins, curves and searches of every method
    often ask for the same set."""

    def __init__(self, probability: Callable[[Tensor, Tensor], Tensor], batch: int = 2048
                 ) -> None:
        self.probability, self.batch = probability, batch
        self._known: dict[bytes, float] = {}
        self.calls = 0  # calls made to probability
        self.rows = 0  # rows evaluated

    def ask(self, keep: Tensor, rows: Tensor) -> Tensor:
        """``(N,)`` float64: decision ``rows[n]``'s target probability with ``keep[n]``
        ``(N, L)``.

        Raises:
            ValueError: ``probability`` returned a value outside [0, 1], NaN included (a bug).
        """
        keep, rows = keep.bool(), rows.long()
        packed = np.packbits(keep.numpy(), axis=1)  # (N, ceil(L / 8))
        keys = [int(r).to_bytes(4, "little") + p.tobytes() for r, p in
                zip(rows.tolist(), packed, strict=True)]
        first = {}
        for i, key in enumerate(keys):
            if key not in self._known and key not in first:
                first[key] = i
        for chunk in self._chunks(keep, rows, torch.tensor(list(first.values()), dtype=torch.long)):
            with torch.no_grad():
                p = self.probability(keep[chunk], rows[chunk]).double()
            if p.shape != chunk.shape or not ((p >= 0) & (p <= 1)).all():
                raise ValueError(f"probability must return {tuple(chunk.shape)} values in "
                                 f"[0, 1], got shape {tuple(p.shape)}: {p.tolist()[:8]}")
            self.calls, self.rows = self.calls + 1, self.rows + len(chunk)
            self._known.update(zip((keys[i] for i in chunk.tolist()), p.tolist(), strict=True))
        return torch.tensor([self._known[k] for k in keys], dtype=torch.float64)

    def _chunks(self, keep: Tensor, rows: Tensor, missing: Tensor) -> list[Tensor]:
        """``missing`` (row indices) in calls of similar size: sorted by tokens kept plus the
        decision's index (a later decision of a sequence reads a longer prefix), a new call
        when one would pad its rows by more than a quarter, or holds ``batch`` rows. A batch
        runs as long as its longest row, so mixing one-token and whole inputs would double the
        work."""
        if not len(missing):
            return []
        size = keep[missing].sum(1) + rows[missing]  # (M,)
        order = torch.sort(size, stable=True)
        chunks, start = [], 0
        for i, width in enumerate(order.values.tolist()):
            first = int(order.values[start])
            if i - start == self.batch or (i - start >= 32 and width > 1.25 * first + 1):
                chunks.append(missing[order.indices[start:i]])
                start = i
        chunks.append(missing[order.indices[start:]])
        return chunks


class Bounds(NamedTuple):
    """Per decision ``(D,)``: the lowest and highest AOPC found."""

    comprehensiveness: tuple[Tensor, Tensor]  # (lo, hi)
    sufficiency: tuple[Tensor, Tensor]  # (lo, hi)


def aopc_bounds(removable: Tensor, full: Tensor, prober: Prober, *, bins: Sequence[int],
                measure: str = "probability", beam: int = 1) -> Bounds:
    """Beam search for the extreme AOPCs of one input (module docstring).

    Args:
        removable: ``(L,)`` bool, what may be removed (at least one token).
        full: ``(D,)`` ``m`` of each decision's target on the whole input.
        prober: the input's probabilities.
        bins: AOPC bins, % of the removable tokens.
        measure: ``"probability"`` or ``"log_probability"``.
        beam: states kept per decision and search (>= 1).
    """
    n = int(removable.sum())
    counts = [tokens_in(p, n) for p in bins]
    D, L = full.numel(), removable.numel()
    search = _Search(removable, full, prober, measure)
    groups = torch.arange(D * SEARCHES)  # group g: decision g // 4, search g % 4
    chosen = torch.zeros(D * SEARCHES, L, dtype=torch.bool)  # (Q, L) the sets grown
    acc = torch.zeros(D * SEARCHES, dtype=torch.float64)  # (Q,) drops summed at boundaries
    size = 0
    for boundary in sorted(set(counts)):
        sign = _sign(groups)
        free = removable & ~chosen  # (Q, L)
        drop = search.drops(chosen, groups)  # (Q, L): drop of each set with one token more
        signed = (sign[:, None] * drop).masked_fill(~free, -torch.inf)  # (Q, L)
        ranked = torch.sort(signed, dim=1, descending=True, stable=True)
        grown, parents = [], []
        for j in range(beam):  # the best boundary − size − 1 tokens, then the j-th next
            last = boundary - size - 1 + j
            if last >= L:
                break
            tokens = torch.cat([ranked.indices[:, :boundary - size - 1],
                                ranked.indices[:, last:last + 1]], 1)  # (Q, boundary − size)
            valid = torch.isfinite(ranked.values[:, last])  # a free token there
            grown.append(chosen.scatter(1, tokens, True)[valid])
            parents.append(torch.arange(len(chosen))[valid])
        grown, parents = torch.cat(grown), torch.cat(parents)  # (M, L), (M,)
        summed = acc[parents] + counts.count(boundary) * search.drop(grown, groups[parents])
        kept = _best_per_group(groups[parents], _sign(groups[parents]) * summed, grown, beam)
        chosen, acc, groups = grown[kept], summed[kept], groups[parents][kept]
        size = boundary
    best = torch.full((D * SEARCHES,), -torch.inf, dtype=torch.float64)
    best = best.scatter_reduce(0, groups, _sign(groups) * acc, reduce="amax")
    aopc = (best * _sign(torch.arange(D * SEARCHES)) / len(bins)).view(D, SEARCHES)
    # (D, 4): comprehensiveness max, min; sufficiency max, min
    return Bounds((aopc[:, 1], aopc[:, 0]), (aopc[:, 3], aopc[:, 2]))


def _sign(groups: Tensor) -> Tensor:
    """+1 for a search of the highest AOPC (even groups), −1 for the lowest."""
    return 1.0 - 2.0 * (groups % 2).double()


class _Search:
    """The drop of the target's ``m`` when a set is removed (comprehensiveness searches) or
    alone kept (sufficiency searches), per search group."""

    def __init__(self, removable: Tensor, full: Tensor, prober: Prober, measure: str) -> None:
        self.removable, self.full, self.prober, self.measure = removable, full, prober, measure

    def drop(self, sets: Tensor, groups: Tensor) -> Tensor:
        """``(M,)``: the drop for each set ``(M, L)`` of search group ``groups`` ``(M,)``."""
        decision = groups // SEARCHES
        comprehensive = (groups % SEARCHES < 2)[:, None]  # (M, 1): the set is deleted
        keep = torch.where(comprehensive, ~sets, sets | ~self.removable)  # (M, L)
        return self.full[decision] - measured(self.prober.ask(keep, decision), self.measure)

    def drops(self, chosen: Tensor, groups: Tensor) -> Tensor:
        """``(Q, L)``: the drop of each set ``chosen`` ``(Q, L)`` with one free token more;
        0 where the token is not free."""
        q, token = (self.removable & ~chosen).nonzero(as_tuple=True)  # (M,) each
        grown = chosen[q].clone()  # (M, L)
        grown[torch.arange(q.numel()), token] = True
        out = torch.zeros(chosen.shape, dtype=torch.float64)
        out[q, token] = self.drop(grown, groups[q])
        return out


def _best_per_group(group: Tensor, key: Tensor, sets: Tensor, beam: int) -> Tensor:
    """Indices of the ``beam`` highest keys of each group, one per distinct set."""
    by_key = torch.sort(key, descending=True, stable=True).indices
    order = by_key[torch.sort(group[by_key], stable=True).indices]  # group up, key down
    packed = np.packbits(sets[order].numpy(), axis=1)  # (M, ceil(L / 8))
    taken: dict[int, set[bytes]] = {}
    kept = []
    for i, g, bits in zip(order.tolist(), group[order].tolist(), packed, strict=True):
        seen = taken.setdefault(g, set())
        signature = bits.tobytes()
        if len(seen) < beam and signature not in seen:
            seen.add(signature)
            kept.append(i)
    return torch.tensor(kept)
