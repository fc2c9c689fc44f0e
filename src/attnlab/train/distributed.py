"""Data-parallel plumbing: detect ``torchrun`` from the environment, pick the device, reduce.

Under ``torchrun --nproc_per_node W`` every process has ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in
its environment; without them the run is a single process and every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DistInfo", "all_reduce_max", "all_reduce_sum", "barrier", "cleanup_distributed",
           "global_share", "is_main_process", "setup_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> DistInfo:
    """Read ``RANK``/``WORLD_SIZE`` and, if several processes, join the process group.

    The backend is NCCL when each process has a GPU, gloo on CPU. ``device="auto"`` picks
    ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE={world_size}), got {rank}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for but CUDA is not available")
        dev = torch.device(f"cuda:{local_rank}") if device == "cuda" else torch.device(device)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job, or a single process (read from the environment)."""
    return int(os.environ.get("RANK", "0")) == 0


def cleanup_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all processes in place (identity for a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: Tensor) -> Tensor:
    """The elementwise maximum of ``tensor`` over all processes, in place (identity for one)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def global_share(count: Tensor | int, world_size: int, device: torch.device) -> Tensor:
    """``count * world_size / (count summed over processes)``: the factor that turns this
    process's mean over its ``count`` items into its part of the global mean, once
    ``DistributedDataParallel`` has averaged the gradients over ``world_size`` processes.

    One all-reduce of a scalar; 1 for a single process. Float64 on ``device``, never read back.
    """
    local = torch.as_tensor(count, device=device).double()
    total = all_reduce_sum(local.clone())
    return local * world_size / total.clamp(min=1)


def barrier() -> None:
    """Wait for every process (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
