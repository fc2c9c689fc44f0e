"""Batches of similar length, so that padding stays small.

Each epoch, :class:`LengthGroupedBatches` shuffles the examples, cuts them into pools of
``pool_batches`` batches, sorts each pool by length, cuts it into batches and shuffles the batches
("bucket sort, then shuffle the buckets"). The order depends only on ``seed`` and the epoch set
with :meth:`~LengthGroupedBatches.set_epoch`, so every process of a distributed run computes the
same batches (:class:`attnlab.train.sharding.ShardedBatches` then gives each its rows).
:class:`TokenBudgetBatches` sizes batches by tokens instead (fairseq's ``--max-tokens``).
:func:`by_length` is the same grouping without shuffling, for evaluation and inference.

Legend: ``B`` batch size, ``T`` longest sequence in the batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["LengthGroupedBatches", "TokenBudgetBatches", "by_length", "pad_sequences"]


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into ``(input_ids (B, T) long, attention_mask (B, T) long)``."""
    if len(sequences) == 0:
        raise ValueError("sequences is empty")
    lengths = [len(s) for s in sequences]
    if min(lengths) == 0:
        raise ValueError(f"sequence {lengths.index(0)} is empty")
    input_ids = torch.full((len(sequences), max(lengths)), pad_id, dtype=torch.long)  # (B, T)
    for i, seq in enumerate(sequences):
        input_ids[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    positions = torch.arange(input_ids.shape[1])  # (T,)
    attention_mask = (positions < torch.tensor(lengths)[:, None]).long()  # (B, T)
    return input_ids, attention_mask


def by_length(lengths: Sequence[int], batch_size: int, *, longest_first: bool = False
              ) -> list[list[int]]:
    """Indices sorted by length (equal lengths keep their order) and cut into batches of
    ``batch_size``, so that each batch pads little."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=longest_first)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class LengthGroupedBatches:
    """Iterable of padded batches grouped by length, deterministic given ``seed`` and epoch.

    Args:
        input_ids: token ids per example (unpadded).
        labels: class per example, or ``None`` (no ``labels`` key in the batches).
        batch_size: examples per batch (the last batch of an epoch may be smaller unless
            ``drop_last``).
        shuffle: shuffle within and across pools each epoch; ``False`` keeps a fixed order
            sorted by length (for evaluation).
        seed: base seed; the epoch's generator is seeded with ``seed + epoch``.
        pool_batches: batches per sorting pool; larger pools pad less and shuffle less.
        drop_last: drop the last incomplete batch.
        pad_id: padding id (``[PAD]`` = 0).

    Yields:
        ``{"input_ids": (B, T) long, "attention_mask": (B, T) long (1 = token),
        "labels": (B,) long}``.
    """

    def __init__(
        self,
        input_ids: Sequence[Sequence[int]],
        labels: Sequence[int] | None,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        pool_batches: int = 50,
        drop_last: bool = False,
        pad_id: int = 0,
    ) -> None:
        if labels is not None and len(labels) != len(input_ids):
            raise ValueError(f"input_ids and labels differ in length: {len(input_ids)} vs "
                             f"{len(labels)}")
        if len(input_ids) == 0:
            raise ValueError("input_ids is empty")
        for name, value in (("batch_size", batch_size), ("pool_batches", pool_batches)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if drop_last and len(input_ids) < batch_size:
            raise ValueError(f"drop_last with {len(input_ids)} examples < batch_size "
                             f"{batch_size} leaves no batch")
        self.input_ids = [list(s) for s in input_ids]
        self.labels = None if labels is None else list(labels)
        self.lengths = torch.tensor([len(s) for s in self.input_ids])  # (N,)
        if int(self.lengths.min()) == 0:
            raise ValueError(f"example {int(self.lengths.argmin())} has no tokens")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.pool_batches = pool_batches
        self.drop_last, self.pad_id = drop_last, pad_id
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration follows (call before each epoch)."""
        self.epoch = int(epoch)

    def batch_indices(self) -> list[list[int]]:
        """The current epoch's batches, as lists of example indices."""
        N, size = len(self.input_ids), self.batch_size
        if not self.shuffle:
            batches = by_length(self.lengths.tolist(), size)
        else:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(N, generator=g, device="cpu")  # (N,)
            pool = size * self.pool_batches
            pools = [order[i:i + pool] for i in range(0, N, pool)]
            # Stable sort of an already random order keeps equal lengths randomly ordered.
            order = torch.cat([p[torch.sort(self.lengths[p], stable=True).indices] for p in pools])
            batches = [order[i:i + size].tolist() for i in range(0, N, size)]
        if self.drop_last and len(batches[-1]) < size:
            batches.pop()
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=g, device="cpu").tolist()
            batches = [batches[i] for i in perm]
        return batches

    def __len__(self) -> int:
        N, size = len(self.input_ids), self.batch_size
        return N // size if self.drop_last else -(-N // size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for indices in self.batch_indices():
            input_ids, attention_mask = pad_sequences(
                [self.input_ids[i] for i in indices], self.pad_id)
            batch = {"input_ids": input_ids, "attention_mask": attention_mask}
            if self.labels is not None:
                batch["labels"] = torch.tensor([self.labels[i] for i in indices])  # (B,)
            yield batch

    def padding_fraction(self) -> float:
        """Share of padding positions among all ``B·T`` positions of this epoch's batches."""
        total = real = 0
        for indices in self.batch_indices():
            lengths = self.lengths[indices]
            total += len(indices) * int(lengths.max())
            real += int(lengths.sum())
        return 1.0 - real / total


class TokenBudgetBatches:
    """Batch indices of at most ``max_tokens`` padded positions each: ``rows x longest`` of a
    batch stays within the budget (fairseq's ``--max-tokens``), so short examples come many to a
    batch and long ones few.

    Each epoch sorts all examples by their length key (ties in a random order from ``seed`` and
    the epoch), cuts the sorted list greedily and shuffles the batches. The cut depends only on
    the keys, so every epoch has the same number of batches and the same batch sizes.

    Args:
        lengths: per example, the length the budget counts (e.g. the longer side of a pair).
        max_tokens: budget of ``rows x max(lengths of the rows)`` per batch.
        sort_keys: per example, what to sort by (default ``lengths``), e.g. ``(source, target)``
            lengths so that both sides of a batch pad little.
        shuffle: shuffle ties and the batches each epoch; ``False`` keeps the sorted order.
        seed: base seed; the epoch's generator is seeded with ``seed + epoch``.
    """

    def __init__(self, lengths: Sequence[int], max_tokens: int, *,
                 sort_keys: Sequence[object] | None = None, shuffle: bool = True,
                 seed: int = 0) -> None:
        if len(lengths) == 0:
            raise ValueError("lengths is empty")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        longest = max(lengths)
        if longest > max_tokens:
            raise ValueError(f"max_tokens must be at least the longest example "
                             f"({longest} tokens), got {max_tokens}")
        if sort_keys is not None and len(sort_keys) != len(lengths):
            raise ValueError(f"sort_keys and lengths differ in length: {len(sort_keys)} vs "
                             f"{len(lengths)}")
        self.lengths = [int(n) for n in lengths]
        self.sort_keys = list(sort_keys) if sort_keys is not None else self.lengths
        self.max_tokens, self.shuffle, self.seed = max_tokens, shuffle, seed
        self.epoch = 0
        self._sizes = self._cut(sorted(range(len(self.lengths)), key=self.sort_keys.__getitem__))

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration follows (call before each epoch)."""
        self.epoch = int(epoch)

    def _cut(self, order: list[int]) -> list[int]:
        """Sizes of the greedy cut of ``order`` into batches within the budget."""
        sizes, rows, longest = [], 0, 0
        for i in order:
            grown = max(longest, self.lengths[i])
            if rows and grown * (rows + 1) > self.max_tokens:
                sizes.append(rows)
                rows, grown = 0, self.lengths[i]
            rows, longest = rows + 1, grown
        sizes.append(rows)
        return sizes

    def batch_indices(self) -> list[list[int]]:
        """The current epoch's batches, as lists of example indices."""
        n = len(self.lengths)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            ties = torch.randperm(n, generator=g, device="cpu").tolist()  # (N,)
        else:
            ties = list(range(n))
        # Sorting a random permutation stably by key keeps equal keys randomly ordered, and the
        # sequence of keys (hence the cut) is the same every epoch.
        order = sorted(ties, key=self.sort_keys.__getitem__)
        batches, start = [], 0
        for size in self._sizes:
            batches.append(order[start:start + size])
            start += size
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=g, device="cpu").tolist()
            batches = [batches[i] for i in perm]
        return batches

    def __len__(self) -> int:
        return len(self._sizes)
