"""What the classification report adds to the common one (:mod:`attnlab.tasks.report`): the
target, dev loss below 0.40 and dev accuracy above 78 %, checked for each variant."""

from __future__ import annotations

import statistics
from typing import Any

from attnlab.tasks.report import RunRecord

__all__ = ["TARGET_ACCURACY", "TARGET_LOSS", "meets_target", "target_lines"]

TARGET_LOSS = 0.40  # the target: dev loss below this ...
TARGET_ACCURACY = 0.78  # ... and dev accuracy above this


def meets_target(metrics: dict[str, Any]) -> bool:
    """Whether figures with ``val_loss`` and ``val_accuracy`` meet the target."""
    return metrics["val_loss"] < TARGET_LOSS and metrics["val_accuracy"] > TARGET_ACCURACY


def target_lines(runs: dict[str, list[RunRecord]]) -> list[str]:
    """One line per variant: the target met or not on the mean over seeds, and by how many."""
    lines = []
    for name, rs in runs.items():
        mean = {key: statistics.fmean(r.metrics[key] for r in rs)
                for key in ("val_loss", "val_accuracy")}
        lines.append(
            f"Target (val loss < {TARGET_LOSS:.2f} and val acc > {TARGET_ACCURACY:.0%}) for "
            f"{name}: {'MET' if meets_target(mean) else 'NOT MET'} on the mean (val loss "
            f"{mean['val_loss']:.4f}, val acc {mean['val_accuracy']:.2%}); "
            f"{sum(meets_target(r.metrics) for r in rs)} of {len(rs)} seeds meet it.")
    return lines
