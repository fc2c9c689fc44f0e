"""Figures over the seeds of an experiment: mean ± spread, curves averaged by step, and the
paired difference of a variant from the baseline with the rule that reads a verdict from it.

The rule (:attr:`PairedDifference.standing`): with two or more seeds, a variant is ``"ahead"``
of the baseline (or ``"behind"``) when the mean of its per-seed differences is larger in size
than their sample standard deviation, and ``"unclear"`` otherwise; with one seed the spread is
not known (``"unknown"``). With a few seeds this is a rough screen (the mean at least one spread
from zero), not a significance test.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = ["PairedDifference", "mean_by_step", "mean_std"]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``nan`` for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def mean_by_step(points: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    """``(step, value)`` pairs from several runs -> steps in order and the mean value at each."""
    by_step: dict[int, list[float]] = {}
    for step, value in points:
        by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    return steps, [statistics.fmean(by_step[step]) for step in steps]


@dataclass(frozen=True)
class PairedDifference:
    """``variant`` minus ``baseline`` on ``metric``, seed by seed (same seed, same data order):
    what the seed changes cancels out, what the variant changes stays."""

    variant: str  # the variant's name
    baseline: str  # the baseline's name
    metric: str  # the metric's key
    per_seed: dict[int, float]  # seed -> variant's value minus the baseline's
    higher_is_better: bool  # whether a positive difference puts the variant ahead

    @property
    def mean(self) -> float:
        return mean_std(list(self.per_seed.values()))[0]

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (``nan`` for one seed)."""
        return mean_std(list(self.per_seed.values()))[1]

    @property
    def ahead_in(self) -> int:
        """Seeds in which the variant does better than the baseline."""
        sign = 1 if self.higher_is_better else -1
        return sum(sign * d > 0 for d in self.per_seed.values())

    @property
    def larger_than_spread(self) -> bool:
        return not math.isnan(self.std) and abs(self.mean) > self.std

    @property
    def standing(self) -> str:
        """``"ahead"``, ``"behind"``, ``"unclear"`` or, for one seed, ``"unknown"``: the rule of
        the module docstring."""
        if len(self.per_seed) < 2:
            return "unknown"
        if not self.larger_than_spread:
            return "unclear"
        return "ahead" if (self.mean > 0) == self.higher_is_better else "behind"
