"""Where a run's checkpoints go: the loop asks for them by name and never sees a file format.

A task passes an object with these methods (:class:`attnlab.io.RunFolder` is the one the tasks
use: safetensors checkpoints in ``best/`` and ``last/``, ``metrics.jsonl``, ``result.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from torch import nn

__all__ = ["RunStore"]


class RunStore(Protocol):
    metrics_path: Path  # where the metrics log (JSON lines) is written

    def save(self, name: str, model: nn.Module, *, metrics: dict[str, Any] | None = None,
             state: dict[str, Any] | None = None) -> None:
        """Save ``model``'s weights as checkpoint ``name`` ("best", "last"), with the
        metrics of that moment and, for resuming, the loop's state."""

    def restore(self, name: str, model: nn.Module, train_config: dict[str, Any]
                ) -> dict[str, Any]:
        """Load checkpoint ``name``'s weights into ``model`` and return the saved state;
        refuse if the saved run was trained with another ``train_config``."""

    def write_result(self, result: dict[str, Any]) -> None:
        """Record the outcome of the fit (``result.json``)."""
