"""Speed of a plain matrix product in bfloat16 and float16 against float32, measured in one run.

The other benchmarks' bf16 rows can only be as fast as the hardware's bf16 matrix products allow;
this one measures that ceiling directly, on the products of a MiniLM layer (hidden 384,
feed-forward 1536) for ``M`` token rows: ``(M, 384) @ (384, 384)``, ``(M, 384) @ (384, 1536)``
and ``(M, 1536) @ (1536, 384)``. Rows print GFLOP/s per dtype and ``ratio = float32 time /
dtype time`` (> 1: the low precision is faster). On CPUs, the header says whether the processor
reports AMX tiles (``amx_bf16``), the unit that makes bf16 products faster than float32 ones.

Run: ``python benchmarks/matmul_dtypes.py [--threads N] [--rows M ...] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import device_name, time_rounds  # noqa: E402

HIDDEN, FFN = 384, 1536
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def products(rows: int) -> dict[str, tuple[int, int, int]]:
    """Name -> (M, K, N) of one layer's matrix products."""
    return {
        f"({rows}, {HIDDEN}) @ ({HIDDEN}, {HIDDEN})": (rows, HIDDEN, HIDDEN),
        f"({rows}, {HIDDEN}) @ ({HIDDEN}, {FFN})": (rows, HIDDEN, FFN),
        f"({rows}, {FFN}) @ ({FFN}, {HIDDEN})": (rows, FFN, HIDDEN),
    }


def measure(m: int, k: int, n: int, device: str, rounds: int) -> dict[str, float]:
    """Median seconds of ``a @ b`` per dtype, the dtypes timed in turn each round."""
    a32 = torch.randn(m, k, device=device)
    b32 = torch.randn(k, n, device=device)
    pairs = {name: (a32.to(dt), b32.to(dt)) for name, dt in DTYPES.items()}

    def product(a, b):
        def run():
            c = a @ b
            if c.is_cuda:
                torch.cuda.synchronize()
            return c
        return run

    return time_rounds({name: product(a, b) for name, (a, b) in pairs.items()}, rounds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--rows", type=int, nargs="+", default=[1024, 4096],
                        help="token rows M of the products")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    header = f"matrix products, {device_name(args.device)}"
    if not args.device.startswith("cuda"):
        flags = cpu_flags()
        header += (f"; avx512_bf16: {'yes' if 'avx512_bf16' in flags else 'no'}, "
                   f"amx_bf16: {'yes' if 'amx_bf16' in flags else 'no'}")
    print(header)
    print(f"{'product':<28} {'dtype':<9} {'GFLOP/s':>8} {'ratio':>6}")
    for rows in args.rows:
        for name, (m, k, n) in products(rows).items():
            seconds = measure(m, k, n, args.device, args.rounds)
            for dtype, t in seconds.items():
                gflops = 2 * m * k * n / t / 1e9
                print(f"{name:<28} {dtype:<9} {gflops:>8.0f} {seconds['float32'] / t:>5.2f}x")


if __name__ == "__main__":
    main()
