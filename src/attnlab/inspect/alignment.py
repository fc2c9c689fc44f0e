"""Word alignments from a translator's cross-attention, and its attention merged into words.

A generated target word ``j`` is aligned to the source word ``i`` it attends to most (Garg et
al., 2019, "Jointly Learning to Align and Translate with Transformer Models", section 3: the
averaged heads of the penultimate decoder layer align best among the single layers; the default
here, and the only layer of a one-layer decoder). Words are the whitespace-separated words of
the source text and of the detokenized output. Subword pieces are merged into them: attention
to a source word is the sum over its pieces (it is a share of the attention), attention from a
target word the mean over its pieces (each piece is one distribution). ``[EOS]`` on either side
belongs to no word and is left out.

Pieces find their word through character spans, not through the piece strings: the source's
from the tokenizer's offsets, the output's from decoding growing prefixes of its ids. A piece
belongs to the word holding the first non-space character at or after its start (a bare ``▁``
piece marks the start of the next word).

Alignments print in the Pharaoh format of fast_align and awesome-align: ``i-j`` pairs, 0-based
source word ``i`` and target word ``j``, space separated, one pair per target word in target
order.

Legend: ``L`` decoder layers, ``H`` heads, ``T`` generated tokens (``[EOS]`` last when the output
ended), ``S`` source tokens (``[EOS]`` last), ``J`` target words, ``I`` source words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from torch import Tensor

from attnlab.text import TextTokenizer

__all__ = ["WordAttention", "align", "merge_pieces", "pharaoh", "piece_words",
           "source_piece_words", "target_piece_words", "word_alignment", "word_attention"]

_WORD = re.compile(r"\S+")


class WordAttention(NamedTuple):
    """Cross-attention between the words of a source text and of its translation."""

    weights: Tensor  # (L, H, J, I): target words down, source words across
    source_words: list[str]  # the I whitespace-separated words of the source text
    target_words: list[str]  # the J whitespace-separated words of the translation


def piece_words(spans: Sequence[tuple[int, int] | None], text: str) -> list[int | None]:
    """The word of ``text`` each piece belongs to, from its character span ``(start, end)``:
    the word holding the first non-space character at or after ``start``; ``None`` for a piece
    without a span, with an empty one, or with nothing but space after it."""
    ends = [m.end() for m in _WORD.finditer(text)]
    return [None if span is None or span[0] >= span[1]
            else next((w for w, end in enumerate(ends) if end > span[0]), None)
            for span in spans]


def source_piece_words(tokenizer: TextTokenizer, text: str, n_tokens: int) -> list[int | None]:
    """The source word of each of the ``n_tokens`` tokens the encoder saw (pieces, cut as
    :meth:`TextTokenizer.encode` cuts them, then ``[EOS]``), from the tokenizer's offsets."""
    encoding = tokenizer.tokenizer.encode(text)
    spans = [span if not special else None
             for span, special in zip(encoding.offsets, encoding.special_tokens_mask,
                                      strict=True)]
    pieces = spans[1:-1][:n_tokens - 1]  # without [BOS]/[EOS]; truncation keeps the first
    return piece_words(pieces, text) + [None] * (n_tokens - len(pieces))


def target_piece_words(tokenizer: TextTokenizer, ids: Sequence[int], n_tokens: int
                       ) -> tuple[list[int | None], str]:
    """The word of the decoded output each of the ``n_tokens`` generated tokens belongs to
    (``ids``, then ``[EOS]`` when it ended), and that output: piece ``k`` spans the characters
    that decoding ``ids[:k + 1]`` adds to decoding ``ids[:k]``."""
    ids = list(ids)
    prefixes = [""] + tokenizer.decode_batch([ids[:k + 1] for k in range(len(ids))])
    text = prefixes[-1]
    spans = [(len(a), len(b)) if text.startswith(b) and b.startswith(a) else None
             for a, b in zip(prefixes, prefixes[1:], strict=False)]
    return piece_words(spans, text) + [None] * (n_tokens - len(ids)), text


def merge_pieces(weights: Tensor, target_words: Sequence[int | None],
                 source_words: Sequence[int | None], n_target: int, n_source: int) -> Tensor:
    """Attention between pieces ``(..., T, S)`` as attention between words ``(..., J, I)``:
    the sum over a source word's pieces, the mean over a target word's pieces; pieces of no
    word (``None``) are left out."""
    T, S = weights.shape[-2:]
    if (len(target_words), len(source_words)) != (T, S):
        raise ValueError(f"target_words and source_words must give one word per token (T, S) "
                         f"= {(T, S)}, got {(len(target_words), len(source_words))}")
    to_source = weights.new_zeros(S, n_source)  # (S, I): 1 where piece s is in word i
    for s, word in enumerate(source_words):
        if word is not None:
            to_source[s, word] = 1.0
    from_target = weights.new_zeros(n_target, T)  # (J, T): 1/pieces where piece t is in word j
    for t, word in enumerate(target_words):
        if word is not None:
            from_target[word, t] = 1.0
    from_target = from_target / from_target.sum(dim=1, keepdim=True).clamp(min=1.0)
    return from_target @ (weights @ to_source)  # (J, T) x ((..., T, S) x (S, I)) -> (..., J, I)


def word_attention(tokenizer: TextTokenizer, text: str, ids: Sequence[int],
                   attention: Tensor) -> WordAttention:
    """The cross-attention ``(L, H, T, S)`` of translating ``text`` into ``ids`` (the generated
    ids, without ``[BOS]``/``[EOS]``), merged into words."""
    if attention.dim() != 4:
        raise ValueError(f"attention must have shape (L, H, T, S), got {tuple(attention.shape)}")
    T, S = attention.shape[-2:]
    if not len(ids) <= T <= len(ids) + 1:
        raise ValueError(f"attention has {T} target rows for {len(ids)} ids: expected "
                         f"{len(ids)} or {len(ids) + 1} (with [EOS])")
    source = source_piece_words(tokenizer, text, S)
    target, output = target_piece_words(tokenizer, ids, T)
    source_words, target_words = _WORD.findall(text), _WORD.findall(output)
    weights = merge_pieces(attention.float(), target, source, len(target_words),
                           len(source_words))  # (L, H, J, I)
    return WordAttention(weights, source_words, target_words)


def align(weights: Tensor, layer: int | str | None = None) -> list[tuple[int, int]]:
    """Pharaoh pairs ``(i, j)``: each target word ``j`` and the source word ``i`` of highest
    attention, averaged over the heads of ``layer``.

    Args:
        weights: word attention ``(L, H, J, I)`` (:func:`word_attention`).
        layer: a decoder layer (negative counts from the end), ``"mean"`` for every head of
            every layer, or ``None``: the penultimate layer (the only one of a one-layer model).

    Returns:
        One pair per target word, in target order; a word that got no attention at all (none
        of its pieces was generated) gets none.
    """
    if weights.dim() != 4:
        raise ValueError(f"weights must have shape (L, H, J, I), got {tuple(weights.shape)}")
    L, I = weights.shape[0], weights.shape[3]
    if layer is None:
        layer = max(L - 2, 0)
    if layer == "mean":
        chosen = weights.mean(dim=(0, 1))  # (J, I)
    elif isinstance(layer, int) and not isinstance(layer, bool) and -L <= layer < L:
        chosen = weights[layer].mean(dim=0)  # (J, I)
    else:
        raise ValueError(f"layer must be an integer in [{-L}, {L}) or 'mean', got {layer!r}")
    if I == 0:
        return []
    best = chosen.argmax(dim=1).tolist()  # (J,)
    attended = (chosen.sum(dim=1) > 0).tolist()  # (J,): False for a word of no piece
    return [(i, j) for j, (i, seen) in enumerate(zip(best, attended, strict=True)) if seen]


def word_alignment(tokenizer: TextTokenizer, text: str, ids: Sequence[int], attention: Tensor,
                   *, layer: int | str | None = None) -> list[tuple[int, int]]:
    """The Pharaoh pairs of translating ``text`` into ``ids`` with cross-attention
    ``attention`` ``(L, H, T, S)``: :func:`word_attention`, then :func:`align`."""
    return align(word_attention(tokenizer, text, ids, attention).weights, layer)


def pharaoh(pairs: Sequence[tuple[int, int]]) -> str:
    """``"0-0 2-1 1-2"``: the pairs as fast_align writes them."""
    return " ".join(f"{i}-{j}" for i, j in pairs)

