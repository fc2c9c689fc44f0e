"""Windows of random tokens with a span repeated later: the data on which induction heads form.

A repeated span rewards the circuit of Elhage et al. (2021) and Olsson et al. (2022): a
previous-token head, then an induction head that attends to the token after an earlier copy of
the current one. Each repeated window is ``C + 1`` random tokens of ``pool`` in which a span of
``S`` tokens (``C/8 <= S < C/2``) is copied to a later, random place: the distance between the two
copies changes from window to window, so a head that copies from a fixed distance does not solve
it (with the copy always at the same offset a one-layer model learns to copy by position).

:class:`RepeatedSpans` replaces a stated share of the rows of any window batches with such
windows, deterministically given the seed, the epoch and the batch, so that resume stays exact.
The language-model task draws the random tokens from the whole vocabulary, as TransformerLens's
repeated tokens do. With the tokenizer's four special tokens never drawn (never a target), 6 of
6 two-layer runs stayed on the plateau for all of their 2,200 to 7,600 steps; with a vocabulary
of the drawn tokens only, or every token drawn, 6 of 7 grew an induction head by step 1,400
(docs/language_model.md).

Legend: ``B`` windows, ``C`` context.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from attnlab.errors import InputError

__all__ = ["RepeatedSpans", "repeated_window"]


def repeated_window(pool: Tensor, length: int, generator: torch.Generator) -> Tensor:
    """``length`` random tokens of ``pool`` ``(P,)`` with a span copied to a later place
    ``(length,)``; the span holds between ``length/8`` and ``length/2`` tokens."""
    window = pool[torch.randint(len(pool), (length,), generator=generator)]  # (length,)
    shortest = max(2, length // 8)
    span = int(torch.randint(shortest, max(shortest + 1, length // 2), (1,), generator=generator))
    source = int(torch.randint(0, length - 2 * span + 1, (1,), generator=generator))
    target = int(torch.randint(source + span, length - span + 1, (1,), generator=generator))
    window[target:target + span] = window[source:source + span]
    return window


class RepeatedSpans:
    """Window batches (``{"input_ids": (B, C), "labels": (B, C)}``) in which each row is replaced,
    with probability ``share``, by a :func:`repeated_window` of tokens drawn from ``pool``.

    ``len()`` and ``set_epoch`` are those of the batches it wraps."""

    def __init__(self, batches: Iterable[dict[str, Tensor]], share: float, pool: Sequence[int],
                 *, seed: int = 0) -> None:
        if isinstance(share, bool) or not isinstance(share, (int, float)) \
                or not 0.0 <= share <= 1.0:
            raise InputError(f"repeat share must be a number in [0, 1], got {share!r}")
        if len(pool) < 2:
            raise InputError(f"repeated spans need at least 2 ordinary tokens, got {len(pool)}")
        self.batches, self.share, self.seed, self.epoch = batches, float(share), seed, 0
        self.pool = torch.as_tensor(list(pool), dtype=torch.long)  # (P,)

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for index, batch in enumerate(self.batches):
            if self.share == 0.0:
                yield batch
                continue
            generator = torch.Generator().manual_seed(
                (self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)
            ids, labels = batch["input_ids"].clone(), batch["labels"].clone()  # (B, C) each
            chosen = torch.rand(len(ids), generator=generator) < self.share  # (B,)
            for row in torch.nonzero(chosen).flatten().tolist():
                window = repeated_window(self.pool, ids.shape[1] + 1, generator)  # (C + 1,)
                ids[row], labels[row] = window[:-1], window[1:]
            yield {**batch, "input_ids": ids, "labels": labels}
