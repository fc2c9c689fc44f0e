"""Sentence pairs as model inputs: subword ids, length-grouped batches, the decoder's shift.

A pair ``(x, y)`` tokenized as ``[BOS] pieces [EOS]`` feeds the model as

* ``input_ids``: the source pieces and ``[EOS]`` (the encoder needs no ``[BOS]``);
* ``decoder_input_ids``: ``[BOS]`` and the target pieces (teacher forcing);
* ``labels``: the target pieces and ``[EOS]``: what each decoder position must predict.

Legend: ``B`` pairs, ``S`` longest source, ``T`` longest target.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torch import Tensor

from attnlab.errors import InputError
from attnlab.text import (
    LengthGroupedBatches,
    TextTokenizer,
    TokenBudgetBatches,
    pad_sequences,
)

__all__ = ["IGNORE_INDEX", "MAX_TRAIN_CHARS", "EncodedPairs", "PairBatches", "encode_pairs",
           "within_chars"]

IGNORE_INDEX = -100  # label of padded target positions (no loss there)
# Longest side of a training pair, in characters, that reaches the tokenizer. Training BPE on a
# line costs time growing with the square of its length (a 160 KB line took 14 s, a 1 MB line
# over 300 s, and Ctrl-C waits for the tokenizers library's Rust code to finish); the longest
# Multi30k sentence has 261 characters, and at ~5 characters a subword a pair this long would
# exceed max_tokens (100) and be dropped anyway.
MAX_TRAIN_CHARS = 1000


@dataclass
class EncodedPairs:
    """Tokenized pairs, each side ``[BOS] pieces [EOS]``, and what was left out."""

    sources: list[list[int]]
    targets: list[list[int]]
    kept: list[int]  # index of each pair in the data set it came from
    dropped: int  # pairs longer than the limit on either side


def encode_pairs(tokenizer: TextTokenizer, sources: Sequence[str], targets: Sequence[str],
                 max_tokens: int | None = None) -> EncodedPairs:
    """Tokenize both sides; drop the pairs with a side longer than ``max_tokens`` tokens
    (``[BOS]``/``[EOS]`` included), counting them, never silently."""
    if len(sources) != len(targets):
        raise InputError(f"sources and targets differ in length: {len(sources)} vs "
                         f"{len(targets)}")
    src = tokenizer.encode(sources)
    tgt = tokenizer.encode(targets)
    keep = [i for i in range(len(src))
            if max_tokens is None or max(len(src[i]), len(tgt[i])) <= max_tokens]
    return EncodedPairs([src[i] for i in keep], [tgt[i] for i in keep], keep,
                        len(src) - len(keep))


def within_chars(sources: Sequence[str], targets: Sequence[str],
                 max_chars: int = MAX_TRAIN_CHARS) -> tuple[list[str], list[str], int]:
    """The pairs whose sides both have at most ``max_chars`` characters, and how many were
    dropped (done before the tokenizer is trained, so that one huge line cannot stall it)."""
    keep = [i for i, (s, t) in enumerate(zip(sources, targets, strict=True))
            if len(s) <= max_chars and len(t) <= max_chars]
    return [sources[i] for i in keep], [targets[i] for i in keep], len(sources) - len(keep)


class PairBatches:
    """Iterable of padded pair batches grouped by length, deterministic given ``seed`` and the
    epoch: ``batch_size`` pairs each (:class:`~attnlab.text.LengthGroupedBatches` on the source
    length), or, with ``max_tokens``, as many pairs as keep ``pairs x longer side`` within it
    (:class:`~attnlab.text.TokenBudgetBatches`, sorted by source then target length).

    Yields ``{"input_ids" (B, S), "attention_mask" (B, S), "decoder_input_ids" (B, T),
    "decoder_attention_mask" (B, T), "labels" (B, T)}`` (labels ``-100`` at padding).
    """

    def __init__(self, pairs: EncodedPairs, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, pad_id: int = 0,
                 max_tokens: int | None = None) -> None:
        self.pairs, self.pad_id = pairs, pad_id
        if max_tokens is None:
            self.order = LengthGroupedBatches(pairs.sources, None, batch_size, shuffle=shuffle,
                                              seed=seed, drop_last=drop_last, pad_id=pad_id)
        else:  # a side as fed: the source without [BOS], the target shifted by one
            sides = [(len(s) - 1, len(t) - 1) for s, t in
                     zip(pairs.sources, pairs.targets, strict=True)]
            self.order = TokenBudgetBatches([max(side) for side in sides], max_tokens,
                                            sort_keys=sides, shuffle=shuffle, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for rows in self.order.batch_indices():
            yield self.batch(rows)

    def batch(self, rows: Sequence[int]) -> dict[str, Tensor]:
        """The batch of pairs ``rows``."""
        sources = [self.pairs.sources[i][1:] for i in rows]  # pieces + [EOS]
        targets = [self.pairs.targets[i] for i in rows]
        input_ids, attention_mask = pad_sequences(sources, self.pad_id)  # (B, S)
        decoder_input_ids, decoder_mask = pad_sequences([t[:-1] for t in targets],
                                                        self.pad_id)  # (B, T)
        labels, _ = pad_sequences([t[1:] for t in targets], IGNORE_INDEX)  # (B, T)
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "decoder_input_ids": decoder_input_ids, "decoder_attention_mask": decoder_mask,
                "labels": labels}
