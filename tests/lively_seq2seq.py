"""A random tiny translation model whose outputs vary, and padded random sources: what the tests
of generation and of attention during generation decode."""

from __future__ import annotations

import torch

from attnlab.models import Seq2SeqConfig, Seq2SeqTransformer

V, PAD, BOS, EOS = 13, 0, 2, 3


def lively(positional="sinusoidal", seed=0, **overrides) -> Seq2SeqTransformer:
    """A random tiny model whose outputs vary and end at EOS now and then (a freshly initialised
    one mostly repeats a token): larger weights, and EOS's embedding scaled up."""
    torch.manual_seed(seed)
    options = dict(vocab_size=V, d_model=16, n_heads=2, n_encoder_layers=2, n_decoder_layers=2,
                   d_ff=32, dropout=0.0, max_len=32, positional=positional)
    model = Seq2SeqTransformer(Seq2SeqConfig(**{**options, **overrides})).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.5)
        model.embedding.weight[EOS] *= 2.0
    return model


def sources(lengths=(6, 4, 6, 2, 5, 6, 3, 6), S=6):
    """Random source ids ``(B, S)`` right-padded to ``lengths``, and their mask ``(B, S)``."""
    mask = (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, S)
    return torch.randint(4, V, (len(lengths), S)).masked_fill(mask == 0, PAD), mask
