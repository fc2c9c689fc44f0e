"""Benchmark of attnlab's attention against PyTorch, all measured in one run.

Prints one table of ratios (``speed-up = reference time / our time``; > 1 means we are faster):

* fused path (``need_weights=False``) vs ``torch.nn.functional.scaled_dot_product_attention``;
* explicit path (``need_weights=True``) vs the plain formula (matmul, divide by sqrt(d_k),
  softmax, matmul) and vs ``torch.nn.MultiheadAttention(need_weights=True)``, and its cost
  relative to our fused path;
* ``MultiHeadAttention`` forward and forward+backward vs ``torch.nn.MultiheadAttention``.

Run: ``make bench`` or ``python benchmarks/attention.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import time_pair  # noqa: E402

from attnlab import MultiHeadAttention, scaled_dot_product_attention  # noqa: E402

B, H, D_K = 8, 8, 64


def plain_formula(q, k, v):
    """Attention as written in the paper, each step a full tensor."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def attention_rows(device: str, dtype: torch.dtype, T: int) -> list[tuple]:
    q, k, v = (torch.randn(B, H, T, D_K, device=device, dtype=dtype) for _ in range(3))
    rows = []
    with torch.inference_mode():
        fused = lambda: scaled_dot_product_attention(q, k, v)  # noqa: E731
        explicit = lambda: scaled_dot_product_attention(q, k, v, need_weights=True)  # noqa: E731
        ours, ref = time_pair(fused, lambda: F.scaled_dot_product_attention(q, k, v))
        rows.append(("fused vs F.scaled_dot_product_attention", ours, ref, ">= 0.95x"))
        ours, ref = time_pair(explicit, lambda: plain_formula(q, k, v))
        rows.append(("with weights vs plain formula", ours, ref, ">= 3x at T=512"))
        t_explicit, t_fused = time_pair(explicit, fused)
        rows.append(("with weights vs our fused (cost)", t_explicit, t_fused, ">= 0.4x"))

        d_model = H * D_K
        torch_mha = torch.nn.MultiheadAttention(d_model, H, batch_first=True)
        torch_mha = torch_mha.to(device, dtype).eval()
        our_mha = MultiHeadAttention.from_torch(torch_mha).eval()
        x = torch.randn(B, T, d_model, device=device, dtype=dtype)
        ours, ref = time_pair(
            lambda: our_mha(x, need_weights=True),
            lambda: torch_mha(x, x, x, need_weights=True, average_attn_weights=False),
        )
        rows.append(("MHA with weights vs nn.MultiheadAttention", ours, ref, ""))
    return rows


def mha_rows(device: str, dtype: torch.dtype, T: int, d_model: int = 512) -> list[tuple]:
    torch_mha = torch.nn.MultiheadAttention(d_model, H, batch_first=True).to(device, dtype)
    our_mha = MultiHeadAttention.from_torch(torch_mha)
    x = torch.randn(B, T, d_model, device=device, dtype=dtype)
    rows = []
    with torch.inference_mode():
        ours, ref = time_pair(
            lambda: our_mha.eval()(x), lambda: torch_mha.eval()(x, x, x, need_weights=False)
        )
    rows.append((f"MHA d={d_model} forward vs nn.MultiheadAttention", ours, ref, ">= 1.0x"))

    x_grad = x.clone().requires_grad_(True)

    def train_step(fn):
        def step():
            out = fn()
            out.float().sum().backward()
        return step

    our_mha.train(), torch_mha.train()
    ours, ref = time_pair(
        train_step(lambda: our_mha(x_grad).output),
        train_step(lambda: torch_mha(x_grad, x_grad, x_grad, need_weights=False)[0]),
    )
    name = f"MHA d={d_model} forward+backward vs nn.MultiheadAttention"
    rows.append((name, ours, ref, ">= 1.0x"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=128 only, float32 only")
    parser.add_argument("--threads", type=int,
                        help="torch threads (1 gives steadier ratios on a busy machine)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    dtypes = [torch.float32] if args.quick else [torch.float32, torch.bfloat16]
    lengths = [128] if args.quick else [128, 512]
    print(f"attention benchmark: B={B}, H={H}, d_k={D_K}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    print("speed-up = reference time / our time (> 1: ours faster)\n")
    header = f"| {'device':6} | {'dtype':8} | {'T':>4} | {'comparison':58} | {'ours ms':>8} | " \
             f"{'ref ms':>8} | {'speed-up':>8} | goal |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for device in devices:
        for dtype in dtypes:
            for T in lengths:
                for name, ours, ref, goal in attention_rows(device, dtype, T) + mha_rows(
                    device, dtype, T
                ):
                    print(f"| {device:6} | {str(dtype).removeprefix('torch.'):8} | {T:>4} | "
                          f"{name:58} | {ours * 1e3:8.2f} | {ref * 1e3:8.2f} | "
                          f"{ref / ours:7.2f}x | {goal} |", flush=True)


if __name__ == "__main__":
    main()
