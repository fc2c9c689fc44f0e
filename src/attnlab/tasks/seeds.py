"""Figures over the seeds of an experiment, shared by the tasks' reports."""

from __future__ import annotations

import math
import statistics

__all__ = ["mean_by_step", "mean_std"]


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
