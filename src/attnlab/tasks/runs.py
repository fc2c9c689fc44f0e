"""What every task's training pipeline shares: how a run is carried out (:class:`RunControl`),
the run's tokenizer trained once and read back by every process, and the settings a run saved.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlab.io.atomic import write_text_atomic
from attnlab.io.checkpoint import load_checkpoint
from attnlab.text import TextTokenizer
from attnlab.train import Callback, FitResult, TrainConfig
from attnlab.train.distributed import DistInfo, barrier

__all__ = ["DEFAULT_CONTROL", "RunControl", "add_run_folder_arguments", "print_trained",
           "run_tokenizer", "saved_configs"]


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


def add_run_folder_arguments(parser: argparse.ArgumentParser, resume_help: str = "") -> None:
    """The options of ``attnlab train`` every task has: ``--out``, ``--resume``,
    ``--overwrite``, ``--quiet``."""
    parser.add_argument("--out", required=True, type=Path,
                        help="run folder: best/, last/, metrics.jsonl, result.json")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --out from its last/ checkpoint"
                             + resume_help)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (its best/, last/, logs); without "
                             "it, or --resume, an existing run is never touched")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")


def print_trained(out: str | os.PathLike, n_parameters: int, result: FitResult,
                  detail: str = "") -> None:
    """What ``attnlab train`` prints at the end (main process only): parameters, steps, time
    (``detail`` after it), the best evaluation and where the checkpoints are."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    r = result
    print(f"trained {n_parameters:,} parameters for {r.global_step} steps in "
          f"{r.wall_time:.0f}s{' (stopped early)' if r.stopped_early else ''}"
          f"{' (time limit reached)' if r.out_of_time else ''}{detail}")
    if r.best_val is not None:
        print(f"best step {r.best_step}: val {r.best_val.describe()}")
    print(f"saved to {out}/best and {out}/last")
