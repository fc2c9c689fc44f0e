"""Ctrl-C during training stops at the next step boundary, never inside a step, an evaluation
or a save, so that ``last/`` always holds one consistent moment and ``--resume`` continues
exactly as if nothing had happened.

While :func:`deferred_interrupts` is active (the main thread only), SIGINT only sets a flag;
the loop looks at it between steps and raises :class:`TrainingInterrupted` after saving
``last/``. A second Ctrl-C stops at once (:class:`ForcedInterrupt`), leaving ``last/`` as it was.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ForcedInterrupt", "TrainingInterrupted", "deferred_interrupts"]


class ForcedInterrupt(KeyboardInterrupt):
    """The second Ctrl-C: raised wherever the program was (``last/`` is left as it was)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C at step ``step``; ``saved``: ``last/`` holds that step."""

    def __init__(self, step: int, saved: bool) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step, self.saved = step, saved


@contextmanager
def deferred_interrupts() -> Iterator[Callable[[], bool]]:
    """Within the block SIGINT sets a flag; yields a function telling whether it was hit."""
    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hit.is_set  # signals reach the main thread only
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame) -> None:
        if hit.is_set():  # the second Ctrl-C: stop now
            signal.signal(signal.SIGINT, previous)
            raise ForcedInterrupt
        hit.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield hit.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
