"""Text as language-model inputs: the splits of a text, the text as one stream of token ids,
and windows of that stream as batches.

A window of ``C + 1`` consecutive tokens ``t_0 .. t_C`` feeds the model as

* ``input_ids``: ``t_0 .. t_{C-1}``;
* ``labels``: ``t_1 .. t_C``: what each position must predict (the next token).

Legend: ``B`` windows, ``C`` context (tokens per window).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from attnlab.errors import InputError
from attnlab.tasks.lm.config import LMDataConfig
from attnlab.text.files import read_text
from attnlab.text.reading import candidate_dirs
from attnlab.text.tokenizer import TextTokenizer

__all__ = ["LMText", "WindowBatches", "encode_stream", "load_lm_text", "text_chunks"]

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class LMText:
    """The splits of a language-model text and where they came from."""

    train: str
    valid: str
    test: str | None  # only a folder with test.txt has one
    about: str  # where each split came from, in words


def load_lm_text(data: LMDataConfig) -> LMText:
    """The training, validation (and test) text of ``data.source``.

    A folder with ``train.txt`` uses it with ``valid.txt`` (and ``test.txt``); one ``.txt``
    file, or a folder holding exactly one, is split by position as nanoGPT and char-rnn do: the
    first ``1 - valid_share`` of its characters train, the rest validate.
    """
    path = _source_path(data.source)
    if path.is_dir():
        found = {split: path / f"{split}.txt" for split in SPLITS}
        if not found["valid"].is_file():
            raise InputError(f"data {data.source!r}: {path} has train.txt but no valid.txt")
        test = read_text(found["test"]) if found["test"].is_file() else None
        return LMText(read_text(found["train"]), read_text(found["valid"]), test,
                      f"{path}: train.txt, valid.txt" + (", test.txt" if test else ""))
    text = read_text(path)
    cut = round(len(text) * (1.0 - data.valid_share))
    if cut < 1 or cut >= len(text):
        raise InputError(f"data {data.source!r}: {path} has {len(text)} characters, too few to "
                         f"keep a share of {data.valid_share} for validation")
    return LMText(text[:cut], text[cut:], None,
                  f"{path}: the first {cut:,} characters train, the last {len(text) - cut:,} "
                  f"({data.valid_share:.0%}) validate")


def _source_path(source: str | os.PathLike) -> Path:
    """A folder with train.txt, or one text file, for ``source`` (a path or a data name)."""
    looked = candidate_dirs(source)
    for place in looked:
        if place.is_file():
            return place
        if (place / "train.txt").is_file():
            return place
        if place.is_dir():
            texts = sorted(place.glob("*.txt"))
            if len(texts) == 1:
                return texts[0]
            raise InputError(f"data {source!r}: {place} holds {len(texts)} .txt files; expected "
                             f"train.txt and valid.txt, or exactly one text file")
    raise InputError(f"data {source!r} not found; looked for a .txt file or a folder at "
                     f"{', '.join(map(str, looked))}")


def text_chunks(text: str) -> list[str]:
    """``text`` as lines with their ends, whose concatenation is ``text``: the pieces a
    tokenizer is trained on and encodes (a line at a time keeps both fast and predictable)."""
    return text.splitlines(keepends=True)


def encode_stream(tokenizer: TextTokenizer, text: str) -> Tensor:
    """``text`` as one stream of token ids ``(N,)``, no special token added, never truncated
    (whatever the tokenizer's ``max_length``)."""
    rows = tokenizer.tokenizer.encode_batch(text_chunks(text), add_special_tokens=False)
    return torch.tensor([i for row in rows for i in row.ids], dtype=torch.long)


class WindowBatches:
    """Batches of windows of ``context + 1`` tokens of ``ids``, deterministic given ``seed``
    and the epoch (:meth:`set_epoch`), for an exact resume.

    Training (``shuffle=True``): each epoch starts its windows at a random offset in
    ``[0, context)``, one window every ``context`` tokens, shuffled, ``batch_size`` a batch, the
    last partial batch dropped; every epoch has as many batches. Scoring (``shuffle=False``):
    consecutive non-overlapping windows from the first token (starts ``0, C, 2C, ...`` below
    ``N - C - 1``, as the peer scores), the last batch possibly smaller.

    Yields ``{"input_ids": (B, C), "labels": (B, C)}``.
    """

    def __init__(self, ids: Tensor, context: int, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0) -> None:
        if ids.dim() != 1:
            raise InputError(f"ids must be one stream (N,), got shape {tuple(ids.shape)}")
        if len(ids) < context + 2:
            raise InputError(f"the text has {len(ids)} tokens, fewer than context + 2 = "
                             f"{context + 2}; give more text or a smaller context")
        self.ids, self.context, self.batch_size = ids, context, batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        # starts at the largest offset: the fewest windows any epoch has
        self.windows = len(range(context - 1 if shuffle else 0, len(ids) - context - 1, context))
        if shuffle and self.windows < batch_size:
            raise InputError(f"the training text makes {self.windows} windows of {context} "
                             f"tokens, fewer than batch_size={batch_size}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.shuffle:
            return self.windows // self.batch_size
        return -(-self.windows // self.batch_size)

    def starts(self) -> Tensor:
        """The first token of each window of this epoch, in the order batched ``(W,)``."""
        if not self.shuffle:
            return torch.arange(self.windows) * self.context
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        offset = int(torch.randint(self.context, (1,), generator=generator))
        starts = offset + torch.arange(self.windows) * self.context
        return starts[torch.randperm(self.windows, generator=generator)]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        starts, B = self.starts(), self.batch_size
        for first in range(0, len(self) * B, B):
            rows = starts[first:first + B, None] + torch.arange(self.context + 1)  # (B, C + 1)
            window = self.ids[rows]  # (B, C + 1)
            yield {"input_ids": window[:, :-1], "labels": window[:, 1:]}
