"""The metrics log: ``metrics.jsonl``, one JSON object per line, flushed at once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog"]


class MetricsLog:
    """Append-only JSON-lines log: one object per line, flushed at once.

    Args:
        path: the file (``metrics.jsonl``); its folder is created.
        enabled: ``False`` makes every call a no-op (processes other than rank 0).
    """

    def __init__(self, path: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=False) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records with ``step`` greater than ``step`` (those a crashed run wrote past its
        last checkpoint), so a resumed run's log has each step once."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the crash
            if record.get("step", 0) <= step:
                kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict[str, Any]]:
        """All records of a metrics.jsonl file."""
        with Path(path).open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
