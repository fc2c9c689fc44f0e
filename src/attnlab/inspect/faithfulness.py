"""How faithful is an attribution? The decision, measured as its top tokens are taken away.

Everything here is pure given one input's attribution scores and its ``probability`` function
(:meth:`~attnlab.inspect.attribution.Decisions.probability`): ``probability(keep, rows)`` is
decision ``rows[n]``'s target probability with only the tokens of ``keep[n]`` left in the
sequence. The others are **deleted** (not masked, not replaced by ``[PAD]``), the same for every
method; special tokens, and what is not removable (a translation's target prefix), always stay.

A method's **ordering** of an input: its removable tokens by decreasing score (signed: the
tokens that speak most *for* the target first), ties in position order. With ``n`` removable
tokens, the top ``k`` % are the first ``ceil(k·n/100)`` (integer arithmetic; at least 1 token
for ``k > 0``, ``n > 0``).

* **Comprehensiveness** (DeYoung et al. 2020, ERASER): ``m(x) − m(x without its top k %)``;
  **sufficiency**: ``m(x) − m(only its top k %)``, ``m`` the target probability (or its log,
  ``measure="log_probability"``, floored at :data:`LOG_FLOOR`). Each as AOPC over
  :data:`BINS`: the **mean over the |B| = 5 bins**, as ERASER's released scorer
  (``rationale_benchmark/metrics.py``) and ferret compute it; the paper's formula writes
  ``1/(|B|+1) Σ_{k=0}^{|B|}``, with an empty bin 0 that adds nothing to comprehensiveness but
  ``m(x) − m(specials only)`` to sufficiency, so that version would mix in a term no ordering
  changes. Comprehensiveness: higher is more faithful; sufficiency: lower.
* **Deletion / insertion curves**: the target probability with the top ``c`` % deleted
  (deletion) or only the top ``c`` % present (insertion), ``c`` in :data:`CURVE`.
* **Normalised AOPC** (Edin et al. 2024): ``(AOPC − lo) / (hi − lo)`` per input and decision,
  ``lo``/``hi`` the lowest and highest AOPC any ordering reaches. The exact bounds need every
  ordering; :mod:`~attnlab.inspect.faithfulness_bounds` approximates them by beam search (greedy
  at ``beam=1``) and widens them to every ordering measured for the input, so the value lies in
  [0, 1] and the bounds are shared by all methods. Undefined (left out, and counted) where
  ``hi = lo``: an input with one removable token.
* **Kendall τ-b** of each method's scores against a reference method's (leave-one-out) over the
  removable tokens, ties counted as in τ-b; undefined where either is constant.

Per input, a figure is the mean over its decisions (one for a classifier, one per target token
for a translation); over a data set, the mean over inputs.

Legend: ``D`` decisions, ``L`` tokens, ``n`` removable tokens, ``C`` token counts probed, ``N``
rows of one batched call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attnlab.errors import InputError
from attnlab.inspect.faithfulness_bounds import (
    LOG_FLOOR,
    MEASURES,
    Prober,
    aopc_bounds,
    measured,
    tokens_in,
)

__all__ = ["BINS", "CURVE", "LOG_FLOOR", "MEASURES", "InputFaithfulness", "MethodFaithfulness",
           "Prober", "kendall_tau_b", "measure_input", "ordering", "random_floor", "summarise",
           "tokens_in"]

BINS: tuple[int, ...] = (1, 5, 10, 20, 50)  # ERASER's AOPC bins, % of the removable tokens
CURVE: tuple[int, ...] = tuple(range(0, 101, 10))  # deletion/insertion curve steps, %
Probability = Callable[[Tensor, Tensor], Tensor]  # (keep (N, L) bool, rows (N,)) -> (N,)


def ordering(scores: Tensor, removable: Tensor) -> Tensor:
    """``(n,)`` long: the removable positions by decreasing score, ties in position order.

    Raises:
        ValueError: a removable token's score is NaN or infinite (a bug of the method).
    """
    positions = removable.nonzero().squeeze(1)  # (n,)
    values = scores[positions].double()
    if not torch.isfinite(values).all():
        raise ValueError(f"attribution scores must be finite, got {values.tolist()}")
    return positions[torch.sort(values, descending=True, stable=True).indices]


def kendall_tau_b(x: Tensor, y: Tensor) -> float | None:
    """Kendall's τ-b of two score vectors ``(n,)``: ``(n_c − n_d) / sqrt((n0 − n_x)(n0 −
    n_y))``, ``n_x``/``n_y`` the pairs tied in ``x``/``y``; ``None`` when fewer than two values
    or either vector is constant."""
    if x.numel() < 2:
        return None
    sx = torch.sign(x.double()[:, None] - x.double()[None, :])  # (n, n)
    sy = torch.sign(y.double()[:, None] - y.double()[None, :])  # (n, n)
    pairs = torch.triu(torch.ones_like(sx, dtype=torch.bool), diagonal=1)
    untied_x, untied_y = sx[pairs].abs().sum(), sy[pairs].abs().sum()
    if untied_x == 0 or untied_y == 0:
        return None
    return float((sx * sy)[pairs].sum() / torch.sqrt(untied_x * untied_y))


@dataclass(frozen=True)
class InputFaithfulness:
    """One method on one input: each figure the mean over the input's decisions."""

    comprehensiveness: float  # AOPC over BINS, higher = more faithful
    sufficiency: float  # AOPC over BINS, lower = more faithful
    naopc_comprehensiveness: float | None  # in [0, 1]; None where hi = lo for every decision
    naopc_sufficiency: float | None
    kendall_tau: float | None  # against the reference method; None where undefined
    deletion: list[float]  # target probability, top CURVE[i] % deleted
    insertion: list[float]  # target probability, only the top CURVE[i] % present


def measure_input(scores: Mapping[str, Tensor], removable: Sequence[bool],
                  probability: Probability | Prober, *, bins: Sequence[int] = BINS,
                  curve: Sequence[int] = CURVE, measure: str = "probability",
                  reference: str | None = "leave_one_out", beam: int = 1
                  ) -> dict[str, InputFaithfulness] | None:
    """Every method's faithfulness on one input.

    Args:
        scores: per method name, its ``(D, L)`` scores (row ``d`` explains decision ``d``).
        removable: ``(L,)`` what may be removed (never a special token).
        probability: the input's ``probability(keep, rows)``, or a :class:`Prober` around it.
        bins, curve: percentages of the removable tokens (see the module docstring).
        measure: ``"probability"`` or ``"log_probability"``: what AOPC measures the drop of.
        reference: the method whose scores Kendall τ compares with (``None``: no τ).
        beam: the beam of the NAOPC bound search; 0 leaves NAOPC out.

    Returns:
        per method, an :class:`InputFaithfulness`; ``None`` for an input with no removable
        token (nothing to take away).
    """
    _check_settings(bins, curve, measure, beam)
    keep_all = torch.as_tensor(list(removable), dtype=torch.bool)  # (L,)
    n = int(keep_all.sum())
    if n == 0:
        return None
    prober = probability if isinstance(probability, Prober) else Prober(probability)
    n_decisions = next(iter(scores.values())).shape[0]
    decisions = torch.arange(n_decisions)
    full = prober.ask(torch.ones(n_decisions, keep_all.numel(), dtype=torch.bool), decisions)
    orders = {name: torch.stack([ordering(row, keep_all) for row in s]) for name, s in
              scores.items()}  # (D, n) each
    counts = sorted({0, *(tokens_in(p, n) for p in (*bins, *curve))})
    probes = _probe(orders, keep_all, counts, prober)
    bin_at = [counts.index(tokens_in(p, n)) for p in bins]
    curve_at = [counts.index(tokens_in(p, n)) for p in curve]
    full_m = measured(full, measure)  # (D,)
    aopc = {name: ((full_m[:, None] - measured(gone[:, bin_at], measure)).mean(1),
                   (full_m[:, None] - measured(only[:, bin_at], measure)).mean(1))
            for name, (gone, only) in probes.items()}  # (D,) comprehensiveness, sufficiency
    bounds = (aopc_bounds(keep_all, full_m, prober, bins=bins, measure=measure, beam=beam)
              if beam > 0 else None)
    ranges = None if bounds is None else (  # (lo, hi) per figure, shared by every method
        _widened(bounds.comprehensiveness, [a[0] for a in aopc.values()]),
        _widened(bounds.sufficiency, [a[1] for a in aopc.values()]))
    result = {}
    for name, (gone, only) in probes.items():
        comp, suff = aopc[name]
        naopc = (None, None) if ranges is None else (
            _normalised(comp, *ranges[0]), _normalised(suff, *ranges[1]))
        tau = None if reference is None or reference not in scores else _mean_defined(
            [kendall_tau_b(scores[name][d][keep_all], scores[reference][d][keep_all])
             for d in range(n_decisions)])
        result[name] = InputFaithfulness(
            comprehensiveness=float(comp.mean()), sufficiency=float(suff.mean()),
            naopc_comprehensiveness=naopc[0], naopc_sufficiency=naopc[1], kendall_tau=tau,
            deletion=gone[:, curve_at].mean(0).tolist(),
            insertion=only[:, curve_at].mean(0).tolist())
    return result


def _check_settings(bins: Sequence[int], curve: Sequence[int], measure: str, beam: int) -> None:
    """Refuse settings the metrics cannot use, naming the setting."""
    if not bins or any(not 0 < p <= 100 for p in bins):
        raise InputError(f"bins must be percentages in (0, 100], got {list(bins)}")
    if not curve or any(not 0 <= p <= 100 for p in curve) or list(curve) != sorted(curve):
        raise InputError(f"curve must be increasing percentages in [0, 100], got {list(curve)}")
    if measure not in MEASURES:
        raise InputError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if beam < 0:
        raise InputError(f"beam must be >= 0 (0: no normalised AOPC), got {beam}")


def _probe(orders: Mapping[str, Tensor], removable: Tensor, counts: Sequence[int],
           prober: Prober) -> dict[str, tuple[Tensor, Tensor]]:
    """Per method, the target probability with the top ``counts[c]`` tokens of its ordering
    deleted, and with only them present: two ``(D, C)`` tensors; every method in one batch."""
    L, C = removable.numel(), len(counts)
    keeps, rows = [], []
    for order in orders.values():
        D, n = order.shape
        rank = torch.full((D, L), L + 1)  # (D, L): place in the ordering; L + 1 = never removed
        rank.scatter_(1, order, torch.arange(n).expand(D, n))
        within = rank[:, None, :] < torch.tensor(counts)[None, :, None]  # (D, C, L): in the top
        keeps += [(~within).reshape(-1, L), (within | ~removable).reshape(-1, L)]  # (D·C, L)
        rows += [torch.arange(D).repeat_interleave(C)] * 2  # (D·C,) each
    p = prober.ask(torch.cat(keeps), torch.cat(rows)).split([len(r) for r in rows])
    return {name: (p[2 * i].view(-1, C), p[2 * i + 1].view(-1, C))  # (D, C) each
            for i, name in enumerate(orders)}


def _widened(search: tuple[Tensor, Tensor], measured_aopc: list[Tensor]
             ) -> tuple[Tensor, Tensor]:
    """The lowest and highest AOPC ``(D,)`` each: the search's, widened to every ordering
    measured."""
    lo = torch.stack([search[0], *measured_aopc]).min(0).values  # (D,)
    hi = torch.stack([search[1], *measured_aopc]).max(0).values  # (D,)
    return lo, hi


def _normalised(value: Tensor, lo: Tensor, hi: Tensor) -> float | None:
    """NAOPC of ``value`` (D,) between ``lo`` and ``hi``: the mean over the decisions where
    they differ, ``None`` where none does."""
    width = hi - lo
    defined = width > 1e-9 * torch.clamp(hi.abs(), min=1.0)
    if not defined.any():
        return None
    return float(((value - lo)[defined] / width[defined]).mean())


def _mean_defined(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not ``None``; ``None`` if all are."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


# --- over a data set --------------------------------------------------------------------------

SCALARS = ("comprehensiveness", "sufficiency", "naopc_comprehensiveness", "naopc_sufficiency",
           "kendall_tau_loo", "deletion_auc", "insertion_auc")  # what the random floor spreads


@dataclass(frozen=True)
class MethodFaithfulness:
    """One method over a data set: means over the inputs (NAOPC and τ over those where they are
    defined, counted in ``n_naopc`` and ``n_kendall``)."""

    comprehensiveness: float
    sufficiency: float
    naopc_comprehensiveness: float | None
    naopc_sufficiency: float | None
    kendall_tau_loo: float | None
    curve: list[int]  # the curves' steps, % of the removable tokens
    deletion_curve: list[float]  # mean target probability per curve step
    insertion_curve: list[float]
    n: int  # inputs measured
    n_naopc: int  # inputs with a defined NAOPC
    n_kendall: int  # inputs with a defined τ
    comprehensiveness_sem: float | None  # standard error of the mean over inputs
    sufficiency_sem: float | None

    @property
    def deletion_auc(self) -> float:
        """Area under the mean deletion curve, shares on [0, 1] (lower = more faithful)."""
        return _area(self.curve, self.deletion_curve)

    @property
    def insertion_auc(self) -> float:
        """Area under the mean insertion curve (higher = more faithful)."""
        return _area(self.curve, self.insertion_curve)

    def to_dict(self) -> dict:
        """JSON-ready, the curves' areas included."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {**fields, "deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc}


def summarise(rows: Sequence[InputFaithfulness], curve: Sequence[int] = CURVE
              ) -> MethodFaithfulness:
    """One method's figures over the inputs ``rows`` (measured with these ``curve`` steps)."""
    if not rows:
        raise InputError("no input had a token to remove; nothing to measure")
    naopc = [(r.naopc_comprehensiveness, r.naopc_sufficiency) for r in rows
             if r.naopc_comprehensiveness is not None]
    taus = [r.kendall_tau for r in rows if r.kendall_tau is not None]
    comp = np.array([r.comprehensiveness for r in rows])
    suff = np.array([r.sufficiency for r in rows])
    return MethodFaithfulness(
        comprehensiveness=float(comp.mean()), sufficiency=float(suff.mean()),
        naopc_comprehensiveness=float(np.mean([a for a, _ in naopc])) if naopc else None,
        naopc_sufficiency=float(np.mean([b for _, b in naopc])) if naopc else None,
        kendall_tau_loo=float(np.mean(taus)) if taus else None,
        curve=list(curve), deletion_curve=np.mean([r.deletion for r in rows], axis=0).tolist(),
        insertion_curve=np.mean([r.insertion for r in rows], axis=0).tolist(),
        n=len(rows), n_naopc=len(naopc), n_kendall=len(taus),
        comprehensiveness_sem=_sem(comp), sufficiency_sem=_sem(suff))


def random_floor(per_seed: Sequence[MethodFaithfulness]) -> tuple[dict, dict]:
    """The random method over several seeds: the mean figures (as :meth:`MethodFaithfulness.
    to_dict` has them, curves averaged) and the spread, the sample standard deviation over
    seeds of each figure in :data:`SCALARS` (``None`` with one seed, or where undefined)."""
    dicts = [s.to_dict() for s in per_seed]
    mean, spread = dict(dicts[0]), {}
    for key in SCALARS:
        values = [d[key] for d in dicts]
        if any(v is None for v in values):
            mean[key], spread[key] = None, None
            continue
        mean[key] = float(np.mean(values))
        spread[key] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    for key in ("deletion_curve", "insertion_curve"):
        mean[key] = np.mean([d[key] for d in dicts], axis=0).tolist()
    for key in ("comprehensiveness_sem", "sufficiency_sem"):
        values = [d[key] for d in dicts]
        mean[key] = None if None in values else float(np.mean(values))
    return mean, spread


def _sem(values: np.ndarray) -> float | None:
    """Standard error of the mean (sample std / sqrt(n)); ``None`` for one value."""
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None


def _area(steps: Sequence[int], values: Sequence[float]) -> float:
    """Trapezoid area of ``values`` at ``steps`` % (as shares of 1)."""
    x = [s / 100 for s in steps]
    return float(sum((x[i + 1] - x[i]) * (values[i] + values[i + 1]) / 2
                     for i in range(len(x) - 1)))
