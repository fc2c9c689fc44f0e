"""What training prints: a progress bar on stderr (redrawn in place on a terminal, plain lines
otherwise) and one line per epoch."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar", "epoch_line", "thousands"]


class ProgressBar:
    """``[epoch 1/3]  412/1053  39%  loss 0.512  acc 0.74  18.2k tok/s  0:21<0:33``.

    Args:
        total: steps expected (``None`` if unknown).
        desc: prefix, e.g. ``"epoch 1/3"``.
        enabled: ``False`` prints nothing (other ranks, ``--quiet``).
        stream: where to write (default ``sys.stderr``).
        line_every: when ``stream`` is not a terminal, print one line per this many steps
            instead of redrawing (so logs stay readable).
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        line_every: int = 50,
    ) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.line_every = max(1, line_every)
        self.n = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._stats: dict[str, str] = {}

    def update(self, n: int = 1, **stats: float | str) -> None:
        """Advance by ``n`` steps and show ``stats`` (floats printed with 3 decimals)."""
        self.n += n
        if stats:
            self.set_stats(**stats)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= 0.1 or self.n == self.total:
                self._draw("\r", "")
                self._last_draw = now
        elif self.n % self.line_every == 0:
            self._draw("", "\n")

    def set_stats(self, **stats: float | str) -> None:
        """Show ``stats`` from the next redraw on (floats printed with 3 decimals)."""
        self._stats = {k: f"{v:.3f}" if isinstance(v, float) else str(v) for k, v in stats.items()}

    def close(self) -> None:
        """Finish the line (terminal) or print the final state (log)."""
        if not self.enabled:
            return
        if self.tty:
            self._draw("\r", "\n")
        elif self.n % self.line_every != 0:
            self._draw("", "\n")

    def _draw(self, head: str, tail: str) -> None:
        elapsed = time.perf_counter() - self.start
        parts = [f"[{self.desc}]" if self.desc else ""]
        if self.total:
            pct = 100 * self.n / self.total
            rate = self.n / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.n) / rate if rate > 0 else 0.0
            parts.append(f"{self.n}/{self.total} {pct:3.0f}%")
            timing = f"{_clock(elapsed)}<{_clock(eta)}"
        else:
            parts.append(f"{self.n}")
            timing = _clock(elapsed)
        parts += [f"{k} {v}" for k, v in self._stats.items()]
        parts.append(timing)
        self.stream.write(head + "  ".join(p for p in parts if p) + tail)
        self.stream.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# Short names of training statistics in the epoch line.
_SHORT = {"accuracy": "acc"}


def epoch_line(record: Any, improved: bool) -> str:
    """``epoch 1: train loss 0.4512 acc 0.7901 | val loss ... * | 27.0s`` for an EpochRecord."""
    line = f"epoch {record.epoch}: train loss {record.train_loss:.4f}"
    line += "".join(f" {_SHORT.get(k, k)} {v:.4f}" for k, v in record.train_stats.items())
    if record.val is not None:
        line += f" | val {record.val.describe()}{' *' if improved else ''}"
    return line + f" | {record.seconds:.1f}s"


def thousands(x: float) -> str:
    """A rate as the progress bar shows it: ``23.7k`` from a thousand on, else whole."""
    return f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"
