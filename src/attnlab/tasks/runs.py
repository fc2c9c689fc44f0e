"""What every task's training pipeline shares: how a run is carried out (:class:`RunControl`),
the run's tokenizer trained once and read back by every process, and the settings a run saved.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlab.io.atomic import write_text_atomic
from attnlab.io.checkpoint import load_checkpoint
from attnlab.text import TextTokenizer
from attnlab.train import Callback, TrainConfig
from attnlab.train.distributed import DistInfo, barrier

__all__ = ["DEFAULT_CONTROL", "RunControl", "run_tokenizer", "saved_configs"]


@dataclass(frozen=True)
class RunControl:
    """How a training run is carried out, whatever the task."""

    resume: bool = False  # continue from out_dir/last: same settings, the saved tokenizer
    progress: bool = True  # progress bar and per-epoch lines on stderr
    dist_info: DistInfo | None = None  # process placement; default from torchrun's environment
    callbacks: Sequence[Callback] = ()  # passed to the Trainer


DEFAULT_CONTROL = RunControl()  # a fresh run, with progress, placed by torchrun's environment


def run_tokenizer(out_dir: Path, train: Callable[[], TextTokenizer], *, resume: bool,
                  is_main: bool) -> TextTokenizer:
    """The run's tokenizer: the one saved in ``last/`` when resuming; else ``train()`` run by
    the main process, written to ``out_dir/tokenizer.json`` and read back by every process
    (under ``torchrun`` the others wait for it)."""
    if resume:
        return TextTokenizer.load(load_checkpoint(out_dir / "last").require_tokenizer())
    tok_file = out_dir / "tokenizer.json"
    if is_main:
        write_text_atomic(tok_file, train().to_str())
    barrier()
    return TextTokenizer.load(tok_file)


def saved_configs(out_dir: str | os.PathLike, data_config: type
                  ) -> tuple[Any, dict[str, Any], TrainConfig]:
    """The data (as ``data_config``), model and training settings stored in ``out_dir/last``
    (to resume a run)."""
    config = load_checkpoint(Path(out_dir) / "last").config
    return (data_config.from_dict(config["data"]), dict(config["model"]),
            TrainConfig.from_dict(config["train"]))
