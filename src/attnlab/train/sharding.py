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
            (right padding only needed by other rows); in pair batches the decoder's side is
            cut by its ``decoder_attention_mask``.

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
            if self.trim_padding:
                part = _trimmed(part)
            yield part


def _trimmed(part: dict[str, Tensor]) -> dict[str, Tensor]:
    """``part`` without the trailing columns that its masks leave all 0. Pair batches trim
    each side by its own mask: ``decoder_attention_mask`` cuts the ``decoder_*`` tensors and
    ``labels``, ``attention_mask`` the rest, so two sides of the same width never mix."""
    decoder = "decoder_attention_mask" in part
    sides = {"attention_mask": [k for k in part if not (decoder and _decoder_side(k))]}
    if decoder:
        sides["decoder_attention_mask"] = [k for k in part if _decoder_side(k)]
    trimmed = dict(part)
    for mask_key, keys in sides.items():
        mask = part.get(mask_key)
        if mask is None or mask.dim() != 2:
            continue
        T = mask.shape[1]
        used = int(torch.nonzero(mask.any(0)).max()) + 1 if bool(mask.any()) else T
        for k in keys:
            v = part[k]
            if v.dim() >= 2 and v.shape[1] == T:
                trimmed[k] = v[:, :used]  # (b, T) -> (b, used)
    return trimmed


def _decoder_side(key: str) -> bool:
    return key.startswith("decoder_") or key == "labels"


def _rows(t: Tensor, world_size: int, rank: int) -> Tensor:
    return torch.tensor_split(t, world_size, dim=0)[rank]  # (B, ...) -> (b, ...)
