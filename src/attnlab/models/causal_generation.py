"""Greedy decoding and sampling for decoder-only language models (:mod:`attnlab.models.gpt2`,
:mod:`attnlab.models.llama`, :mod:`attnlab.models.language_model`), apart from the model.

Both follow Hugging Face's ``generate`` token for token: the prompt is continued by the most
likely token at each step (``do_sample=False``), or by a token drawn from the next-token
distribution after temperature, top-k and top-p filtering, in that order (``do_sample=True``).
They share one decoding loop and differ only in how a token is picked. Positions count from
each row's first real token (``attention_mask.cumsum(-1) - 1``), so a left-padded prompt is
continued as if unpadded;
a row that has produced ``eos_token_id`` gets ``pad_token_id`` (default: the EOS id) after it;
decoding stops when every row has ended or after ``max_new_tokens``.

With ``use_cache=True`` the prompt runs once and each later step feeds only the newest token,
the model's :class:`~attnlab.models.causal_lm.CausalCache` supplying the earlier keys and
values; with ``use_cache=False`` each step recomputes the whole sequence, the reference the
cache is tested against.

Legend: ``B`` rows, ``P`` prompt length, ``T`` tokens so far, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.models.causal_lm import positions_from_mask
from attnlab.models.generation import evaluating

__all__ = ["greedy_generate", "sample_generate", "warp_logits"]

# picks the next token of every row (B,) from the last position's logits (B, V)
Pick = Callable[[Tensor], Tensor]


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
    return _decode(model, input_ids, attention_mask, lambda logits: logits.argmax(dim=-1),
                   max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
                   pad_token_id=pad_token_id, use_cache=use_cache)


def sample_generate(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None,
                    *, max_new_tokens: int = 20, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None,
                    generator: torch.Generator | None = None, eos_token_id: int | None = -1,
                    pad_token_id: int | None = None, use_cache: bool = True) -> Tensor:
    """Continue each prompt with tokens drawn from the model's next-token distribution.

    Hugging Face's ``generate(do_sample=True, temperature=, top_k=, top_p=)``: at each step the
    last position's logits (in float32) pass :func:`warp_logits`, then one token per row is
    drawn with ``torch.multinomial(softmax, 1, generator=generator)`` (every row, ended or not,
    as Hugging Face does, so the same seed gives the same tokens).

    Args:
        model, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id,
        use_cache: as :func:`greedy_generate`.
        temperature: divides the logits (> 0; below 1 sharpens, above 1 flattens).
        top_k: keep the ``top_k`` most likely tokens (``None``: all).
        top_p: keep the smallest set of most likely tokens whose probability reaches ``top_p``
            (nucleus sampling, Holtzman et al., 2020; ``None`` or 1: all).
        generator: the random numbers; ``None``: torch's global generator (``torch.manual_seed``).

    Returns:
        ``(B, P + n)`` ids: the prompts followed by the ``n <= max_new_tokens`` new tokens.
    """
    check_sampling(temperature, top_k, top_p)

    def pick(logits: Tensor) -> Tensor:
        probs = warp_logits(logits, temperature, top_k, top_p).softmax(dim=-1)  # (B, V)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)

    return _decode(model, input_ids, attention_mask, pick, max_new_tokens=max_new_tokens,
                   eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=use_cache)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Refuse sampling settings that define no distribution, naming the argument."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise InputError(f"temperature must be a finite number > 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or top_k < 1):
        raise InputError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0 < top_p <= 1):
        raise InputError(f"top_p must be a number in (0, 1] or None, got {top_p!r}")


def warp_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None) -> Tensor:
    """Next-token logits ``(B, V)`` divided by ``temperature``, then all but the ``top_k``
    largest set to ``-inf``, then all outside the nucleus of probability ``top_p`` (at least
    one token kept), as Hugging Face's ``Temperature``/``TopK``/``TopPLogitsWarper``."""
    check_sampling(temperature, top_k, top_p)
    if temperature != 1.0:
        logits = logits / temperature  # (B, V)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)  # ties with the k-th are kept
    if top_p is not None and top_p < 1.0:
        ascending, order = torch.sort(logits, descending=False)  # (B, V) each
        below = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p  # (B, V): the tail
        below[..., -1:] = False  # the most likely token always stays
        logits = logits.masked_fill(below.scatter(-1, order, below), -math.inf)  # (B, V)
    return logits


def _decode(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, pick: Pick, *,
            max_new_tokens: int, eos_token_id: int | None, pad_token_id: int | None,
            use_cache: bool) -> Tensor:
    """The decoding loop greedy search and sampling share; ``pick`` chooses each token."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
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
                           position_ids=positions[:, -seen.shape[1]:], cache=cache,
                           logits_to_keep=1)  # (B, 1, V)
            token = pick(logits[:, -1].float())  # (B,)
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
