"""Split every global batch across processes, so ``W`` processes step exactly like one.

Each process iterates the same global batches (same seed, same epoch) and keeps its slice of
rows ``rank``-th of ``W`` near-equal parts. With ``W`` equal parts, the mean of the per-process
mean gradients that ``DistributedDataParallel`` computes equals the global batch's mean
gradient, so the weights match a single-process run up to float rounding.

Legend: ``B`` global batch size, ``b`` this process's rows, ``T`` sequence length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

__all__ = ["ShardedBatches"]


class ShardedBatches:
    """Wrap an iterable of batch dicts; yield this process's rows of each batch.

    Args:
        batches: global batches (dicts of tensors with the batch on dim 0), with ``len()`` and
            optionally ``set_epoch``.
        world_size: number of processes ``W``.
        rank: this process, in ``[0, W)``.
        trim_padding: cut trailing columns where this slice's ``attention_mask`` is all 0
            (right padding only needed by other rows).

    A batch with fewer than ``W`` rows leaves some processes an empty slice, which is skipped;
    use it for evaluation, and give training batches of a multiple of ``W`` rows (``drop_last``).
    """

    def __init__(
        self, batches: Iterable[dict[str, Tensor]], world_size: int, rank: int,
        *, trim_padding: bool = True,
    ) -> None:
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank!r}")
        self.batches, self.world_size, self.rank = batches, world_size, rank
        self.trim_padding = trim_padding

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for batch in self.batches:
            part = {k: _rows(v, self.world_size, self.rank) for k, v in batch.items()}
            n = next(iter(part.values())).shape[0]
            if n == 0:
                continue
            mask = part.get("attention_mask")
            if self.trim_padding and mask is not None and mask.dim() == 2:
                T = mask.shape[1]
                used = int(torch.nonzero(mask.any(0)).max()) + 1 if bool(mask.any()) else T
                part = {k: v[:, :used] if v.dim() >= 2 and v.shape[1] == T else v
                        for k, v in part.items()}  # (b, T) -> (b, used)
            yield part


def _rows(t: Tensor, world_size: int, rank: int) -> Tensor:
    return torch.tensor_split(t, world_size, dim=0)[rank]  # (B, ...) -> (b, ...)
