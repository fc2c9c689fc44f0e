"""Timing shared by the benchmarks: interleaved rounds, median, so that drift in machine load
affects both sides of a ratio alike; and the name of the device timed, for the table header."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_pair(
    ours: Callable[[], object],
    ref: Callable[[], object],
    *,
    rounds: int = 7,
    min_time: float = 0.05,
) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and ``ref``, measured alternately."""
    for fn in (ours, ref):  # warm-up: allocator, kernels, caches
        fn()
        fn()
    reps = max(1, int(min_time / max(_once(ours), _once(ref), 1e-6)))
    t_ours, t_ref = [], []
    for _ in range(rounds):
        t_ours.append(_per_call(ours, reps))
        t_ref.append(_per_call(ref, reps))
    return statistics.median(t_ours), statistics.median(t_ref)


def time_rounds(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, calling them in turn every round."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _per_call(fn: Callable[[], object], reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def device_name(device: str) -> str:
    """The GPU's name for a CUDA device, else the CPU with its torch thread count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU, {torch.get_num_threads()} threads"
