"""A tiny post-norm encoder classifier built from MultiHeadAttention, for the inspect tests.

Legend: ``B`` batch, ``L`` length, ``D`` model width, ``C`` classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.attention import MultiHeadAttention


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(),
                                nn.Linear(2 * d_model, d_model))
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, attention_mask: Tensor | None) -> Tensor:
        x = self.norm1(x + self.attn(x, attention_mask=attention_mask).output)  # (B, L, D)
        return self.norm2(x + self.ff(x))  # (B, L, D)


class TinyEncoder(nn.Module):
    """Embeddings, ``n_layers`` blocks, a linear head on position 0 ([CLS])."""

    def __init__(self, vocab: int = 50, d_model: int = 16, n_heads: int = 4, n_layers: int = 2,
                 n_classes: int = 2, max_len: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.layers = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.embed(input_ids) + self.pos(positions)  # (B, L, D)
        for layer in self.layers:
            x = layer(x, attention_mask)
        return self.head(x[:, 0])  # (B, C)


def tiny_batch(batch: int = 3, length: int = 7, vocab: int = 50, seed: int = 0):
    """Random ids and a padding mask with rows of decreasing length (the first is full)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=g)  # (B, L)
    lengths = torch.tensor([max(2, length - 2 * b) for b in range(batch)])
    mask = (torch.arange(length) < lengths[:, None]).long()  # (B, L)
    return ids, mask
