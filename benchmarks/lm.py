"""Training throughput of the language model (:class:`TransformerLM`) against the peer's model
(``../shared/baselines/lm_char_transformer.py``: ``torch.nn.TransformerEncoderLayer`` with a
causal mask, pre-norm, GELU, learned positions, tied embeddings, dropout 0.1), at the peer's
size, measured in one run.

One training step = forward, cross-entropy over every position, backward, gradient clipping and
an AdamW step, on a batch of ``B`` windows of ``T`` characters (the peer's 32 × 128). Rows
(``ratio = peer time / our time``; > 1 means we are faster; goal ``>= 1.0x``):

* ours with the peer's architecture (learned positions, dropout 0.1, feed-forward 4·D);
* ours with the default recipe's positions and dropout (rotary, 0), at the same size.

Run: ``python benchmarks/lm.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import device_name, time_pair  # noqa: E402

from attnlab.models.language_model import LMConfig, TransformerLM  # noqa: E402

VOCAB = 65  # Tiny Shakespeare's characters


class PeerLM(nn.Module):
    """The peer's model, as its script builds it."""

    def __init__(self, vocab: int, d_model: int, heads: int, layers: int, context: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(context, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.1,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(T, device=ids.device))  # (B, T, D)
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=ids.device)
        x = self.blocks(x, mask=causal, is_causal=True)  # (B, T, D)
        return self.norm(x) @ self.tok.weight.T  # (B, T, D) x (D, V) -> (B, T, V)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> callable:
    """One optimizer step of ``model`` on the batch ``x`` -> ``y``, as a closure."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1,
                                  betas=(0.9, 0.95))
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, a smaller batch")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    B, T, D, H, N = (8 if args.quick else 32), 128, 128, 4, 4
    torch.manual_seed(0)
    x = torch.randint(VOCAB, (B, T))
    y = torch.randint(VOCAB, (B, T))
    peer = PeerLM(VOCAB, D, H, N, T)
    rows = {
        "peer architecture (learned, dropout 0.1)": dict(positions="learned", dropout=0.1),
        "default recipe (rotary, dropout 0)": dict(positions="rotary", dropout=0.0),
    }
    rounds = 3 if args.quick else 7
    print(f"# training tokens/s, batch {B} x {T}, d_model {D}, {H} heads, {N} layers; "
          f"{device_name('cpu')}")
    print("| ours | ours tok/s | peer tok/s | ratio |")
    print("|---|---|---|---|")
    for name, options in rows.items():
        ours = TransformerLM(LMConfig(vocab_size=VOCAB, d_model=D, n_heads=H, n_layers=N,
                                      context=T, **options))
        if options["positions"] == "learned":
            n_ours, n_peer = ours.num_parameters(), sum(p.numel() for p in peer.parameters())
            assert n_ours == n_peer, (n_ours, n_peer)
        t_ours, t_peer = time_pair(train_step(ours, x, y), train_step(peer, x, y),
                                   rounds=rounds, min_time=0.2)
        print(f"| {name} | {B * T / t_ours:,.0f} | {B * T / t_peer:,.0f} | "
              f"{t_peer / t_ours:.2f}x |")


if __name__ == "__main__":
    main()
