"""Greedy decoding for decoder-only language models (:mod:`attnlab.models.gpt2`,
:mod:`attnlab.models.llama`), apart from the model.

It follows Hugging Face's ``generate(do_sample=False)`` token for token: the prompt is
continued by the most likely token at each step; positions count from each row's first real
token (``attention_mask.cumsum(-1) - 1``), so a left-padded prompt is continued as if unpadded;
a row that has produced ``eos_token_id`` gets ``pad_token_id`` (default: the EOS id) after it;
decoding stops when every row has ended or after ``max_new_tokens``.

With ``use_cache=True`` the prompt runs once and each later step feeds only the newest token,
the model's :class:`~attnlab.models.causal_lm.CausalCache` supplying the earlier keys and
values; with ``use_cache=False`` each step recomputes the whole sequence, the reference the
cache is tested against.

Legend: ``B`` rows, ``P`` prompt length, ``T`` tokens so far, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.models.causal_lm import positions_from_mask
from attnlab.models.generation import evaluating

__all__ = ["greedy_generate"]


def greedy_generate(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None,
                    *, max_new_tokens: int = 20, eos_token_id: int | None = -1,
                    pad_token_id: int | None = None, use_cache: bool = True) -> Tensor:
    """Continue each prompt with its most likely tokens.

    Args:
        model: a decoder-only model (``model(ids, mask, position_ids=, cache=) -> logits``,
            ``model.new_cache()``), run in eval mode without gradients.
        input_ids: prompts ``(B, P)``, padded on the left (as Hugging Face advises for
            decoder-only generation) or the right; attention_mask ``(B, P)``: 1 = token,
            0 = padding, or ``None`` (no padding).
        max_new_tokens: most tokens added per row.
        eos_token_id: the id that ends a row; default the model's ``config.eos_token_id``;
            ``None``: never stop early.
        pad_token_id: what an ended row gets; default ``eos_token_id``.
        use_cache: feed one token per step with the key/value cache (fast), or recompute.

    Returns:
        ``(B, P + n)`` ids: the prompts followed by the ``n <= max_new_tokens`` new tokens.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if eos_token_id == -1:
        eos_token_id = model.config.eos_token_id
    pad_token_id = eos_token_id if pad_token_id is None else pad_token_id
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    tokens, mask = input_ids, attention_mask.to(input_ids.dtype)  # (B, P) each
    positions = positions_from_mask(mask)  # (B, P)
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # (B,)
    cache = model.new_cache() if use_cache else None
    new = tokens  # the tokens the model has not seen yet
    unpadded = bool(mask.all())  # generated positions are never padding: decided once
    with torch.no_grad(), evaluating(model):
        for _ in range(max_new_tokens):
            seen = new if use_cache else tokens
            logits = model(seen, None if unpadded else mask,
                           position_ids=positions[:, -seen.shape[1]:], cache=cache)  # (B, t, V)
            token = logits[:, -1].argmax(dim=-1)  # (B,)
            if eos_token_id is not None:
                token = token.masked_fill(done, pad_token_id)
                done |= token == eos_token_id
            new = token[:, None]  # (B, 1)
            tokens = torch.cat([tokens, new], dim=1)  # (B, T + 1)
            mask = torch.cat([mask, torch.ones_like(new)], dim=1)  # (B, T + 1)
            positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)  # (B, T + 1)
            if bool(done.all()):
                break
    return tokens
