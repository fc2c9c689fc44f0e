"""Benchmark of grouped-query attention (``MultiHeadAttention(..., n_kv_heads=G)``), in one run.

Prints the forward time of a grouped-query module (``H=8``, ``G=2``, ``B=8``, ``L=128``,
``d_model=256``) and, as ratios (``reference time / GQA time``; > 1 means GQA is faster):

* the same module with ``G = H`` (multi-head attention);
* ``torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)`` on already
  projected heads (the module's cost beyond the kernel: its four projections);
* the kernel on keys/values repeated per query head (``repeat_kv``), against ``enable_gqa``:
  why the fused path passes ``enable_gqa`` on instead of repeating.

Run: ``python benchmarks/gqa.py [--threads N] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import time_rounds  # noqa: E402

from attnlab import MultiHeadAttention  # noqa: E402
from attnlab.attention.functional import repeat_kv  # noqa: E402

B, L, D, H, G = 8, 128, 256, 8, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = args.device
    gqa = MultiHeadAttention(D, H, n_kv_heads=G).to(device).eval()
    mha = MultiHeadAttention(D, H).to(device).eval()
    x = torch.randn(B, L, D, device=device)
    d_k = D // H
    q = torch.randn(B, H, L, d_k, device=device)  # (B, H, L, d_k)
    k, v = (torch.randn(B, G, L, d_k, device=device) for _ in range(2))  # (B, G, L, d_k)

    def sync(fn):
        def timed():
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        return timed

    fns = {
        "GQA module": lambda: gqa(x),
        "MHA module (G=H)": lambda: mha(x),
        "SDPA enable_gqa": lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
        "SDPA on repeat_kv": lambda: F.scaled_dot_product_attention(
            q, repeat_kv(k, H // G), repeat_kv(v, H // G)),
    }
    with torch.inference_mode():
        times = time_rounds({name: sync(fn) for name, fn in fns.items()}, args.rounds)
    print(f"GQA forward, H={H} G={G} B={B} L={L} d_model={D}, {device}, "
          f"{args.threads} thread(s), median of {args.rounds} rounds")
    print(f"{'':34}{'time':>10}{'ratio':>10}")
    base = times["GQA module"]
    for name in ("GQA module", "MHA module (G=H)", "SDPA enable_gqa"):
        print(f"{name:34}{times[name] * 1e3:>8.3f}ms{times[name] / base:>9.2f}x")
    kernel = times["SDPA on repeat_kv"] / times["SDPA enable_gqa"]
    print(f"{'SDPA on repeat_kv vs enable_gqa':34}{times['SDPA on repeat_kv'] * 1e3:>8.3f}ms"
          f"{kernel:>9.2f}x")


if __name__ == "__main__":
    main()
