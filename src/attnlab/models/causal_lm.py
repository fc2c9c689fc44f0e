"""What the decoder-only language models (GPT-2, the Llama layout) share: their key/value cache,
their positions and the checks of their inputs.

A decoder-only model is called as ``model(input_ids, attention_mask, position_ids=...,
cache=...) -> logits (B, L, V)`` and offers ``new_cache()`` and ``max_positions``; that is all
:mod:`attnlab.models.causal_generation` asks of it.

Legend: ``B`` batch, ``L`` new positions, ``S`` key positions (cached + new).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnlab.attention.cache import KVCache

__all__ = ["CausalCache", "CausalLM", "check_causal_inputs", "default_positions",
           "positions_from_mask"]


@dataclass
class CausalCache:
    """The self-attention keys and values of every layer, kept between decoding steps (one
    growing :class:`~attnlab.attention.cache.KVCache` per layer; there is no cross-attention)."""

    layers: list[KVCache]

    @classmethod
    def empty(cls, n_layers: int) -> CausalCache:
        """A cache for ``n_layers`` layers with nothing decoded yet."""
        return cls([KVCache() for _ in range(n_layers)])

    @property
    def length(self) -> int:
        """Positions cached so far (padding included)."""
        return self.layers[0].length if self.layers else 0


def default_positions(input_ids: Tensor, past: int) -> Tensor:
    """``past .. past+L-1`` for every row ``(1, L)``: Hugging Face's forward without
    ``position_ids``."""
    L = input_ids.shape[1]
    return torch.arange(past, past + L, device=input_ids.device)[None]  # (1, L)


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted from each row's first real token ``(B, S)``, ``0`` at padding: what
    Hugging Face's ``generate`` passes, so a left-padded row starts at position 0."""
    positions = attention_mask.long().cumsum(-1) - 1  # (B, S)
    return positions.masked_fill(attention_mask == 0, 0)


def check_causal_inputs(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None,
                        position_ids: Tensor | None, cache: CausalCache | None) -> int:
    """Check a decoder-only model's inputs; return the number of cached positions."""
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids)
        raise ValueError(f"input_ids must be a (B, L) tensor, got {shape}")
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
    vocab = model.get_input_embeddings().num_embeddings
    if input_ids.numel() and not (0 <= int(input_ids.min()) and int(input_ids.max()) < vocab):
        raise ValueError(f"input_ids must be in [0, vocab_size={vocab}), got values in "
                         f"[{int(input_ids.min())}, {int(input_ids.max())}]")
    B, L = input_ids.shape
    past = 0 if cache is None else cache.length
    if cache is not None and len(cache.layers) != len(model.layers):
        raise ValueError(f"cache has {len(cache.layers)} layers, the model {len(model.layers)}; "
                         f"make it with model.new_cache()")
    if past + L > model.max_positions:
        raise ValueError(f"{past} cached + {L} new positions exceed the model's "
                         f"{model.max_positions} positions; truncate the input")
    if attention_mask is not None and tuple(attention_mask.shape) != (B, past + L):
        raise ValueError(f"attention_mask must have shape (B, cached + new) = {(B, past + L)}, "
                         f"got {tuple(attention_mask.shape)}")
    if position_ids is not None and tuple(position_ids.shape) not in ((B, L), (1, L)):
        raise ValueError(f"position_ids must have shape (B, L) = {(B, L)}, got "
                         f"{tuple(position_ids.shape)}")
    return past


class CausalLM(nn.Module):
    """The forward pass GPT-2 and the Llama layout share: checks, default positions, the layers
    with their caches, the final norm and the (tied or own) output projection.

    A family sets ``layers``, ``final_norm``, ``lm_head`` (``None``: tied to the input
    embedding) and ``max_positions``, and defines :meth:`get_input_embeddings` and
    :meth:`embed`; a family whose positions enter inside the layers sets :attr:`rotary`.
    """

    layers: nn.ModuleList
    final_norm: nn.Module
    lm_head: nn.Linear | None
    rotary: nn.Module | None  # rotary positions shared by every layer, or None (a submodule:
    #                           no class default, which would hide it from nn.Module's lookup)

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """The input vectors ``(B, L, D)`` of ``input_ids`` at ``position_ids``."""
        raise NotImplementedError

    @contextmanager
    def positions(self, position_ids: Tensor) -> Iterator[None]:
        """Make ``position_ids`` known to the layers for one pass: a model with a shared
        rotary embedding (:attr:`rotary`, a :class:`~attnlab.models.llama.LlamaRotary`) has its
        angles computed once, here, for every layer; otherwise nothing."""
        rotary = getattr(self, "rotary", None)
        if rotary is None:
            yield
            return
        rotary.cos_sin = rotary.angles(position_ids)  # once for every layer
        try:
            yield
        finally:
            rotary.cos_sin = None

    def new_cache(self) -> CausalCache:
        """An empty key/value cache, one per layer."""
        return CausalCache.empty(len(self.layers))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                position_ids: Tensor | None = None, cache: CausalCache | None = None,
                logits_to_keep: int = 0) -> Tensor:
        """Next-token logits ``(B, L, V)``; ``attention_mask`` ``(B, S)`` covers the cached and
        the new positions, ``position_ids`` default to ``past .. past+L-1``.
        ``logits_to_keep=k > 0``: only the last ``k`` positions' logits ``(B, k, V)`` (as
        Hugging Face's argument: a prompt's step in generation needs one row, not ``L``)."""
        past = check_causal_inputs(self, input_ids, attention_mask, position_ids, cache)
        if position_ids is None:
            position_ids = default_positions(input_ids, past)  # (1, L)
        x = self.embed(input_ids, position_ids)  # (B, L, D)
        with self.positions(position_ids):
            for i, layer in enumerate(self.layers):
                x = layer(x, attention_mask, None if cache is None else cache.layers[i])
        if logits_to_keep > 0:
            x = x[:, -logits_to_keep:]  # (B, k, D)
        x = self.final_norm(x)  # (B, L|k, D)
        head = self.get_input_embeddings() if self.lm_head is None else self.lm_head
        return x @ head.weight.T  # (B, L|k, D) x (D, V) -> (B, L|k, V)
