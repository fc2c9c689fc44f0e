"""What every task's training pipeline shares: how a run is carried out (:class:`RunControl`),
the run's tokenizer trained once and read back by every process, and the settings a run saved.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlab.io.atomic import write_text_atomic
from attnlab.io.checkpoint import load_checkpoint
from attnlab.io.run_folder import check_resumable, claim_run_folder
from attnlab.text import TextTokenizer
from attnlab.train import Callback, FitResult, TrainConfig
from attnlab.train.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    is_main_process,
)

__all__ = ["DEFAULT_CONTROL", "RunControl", "add_run_folder_arguments", "launch_run",
           "print_trained", "run_tokenizer", "saved_configs"]


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


Groups = dict[str, Any]  # one options group: field -> value


def launch_run(out_dir: str | os.PathLike, train_run: Callable[..., Any], *, data_config: type,
               merge: Callable[[Groups, Groups, Groups], tuple[Groups, Groups, Groups]],
               model_fixed: Sequence[str], data: Groups, model: Groups, train: Groups,
               resume: bool = False, overwrite: bool = False, progress: bool = True) -> Any:
    """Train (or resume) a run of a task with the options given, field -> value per group,
    holding the run folder (:func:`attnlab.io.run_folder.claim_run_folder`).

    A new run takes ``merge(data, model, train)``: the options on top of the task's recipe. A
    resumed run takes the settings saved in ``out_dir/last`` with the options given on top
    (the model fields in ``model_fixed`` come from the tokenizer, never from the saved run).
    ``train_run(out_dir, data, model_options, train, control)`` is the task's pipeline."""
    out_dir = Path(out_dir)
    if resume:
        check_resumable(out_dir)
        saved_data, saved_model, saved_train = saved_configs(out_dir, data_config)
        data_settings = dataclasses.replace(saved_data, **data)
        model = {**{k: v for k, v in saved_model.items() if k not in model_fixed}, **model}
        train_settings = saved_train.replace(**train)
    else:
        data, model, train = merge(data, model, train)
        data_settings, train_settings = data_config(**data), TrainConfig(**train)
    claim = (claim_run_folder(out_dir, resume=resume, overwrite=overwrite)
             if is_main_process() else contextlib.nullcontext())
    try:
        with claim:
            return train_run(out_dir, data_settings, model, train_settings,
                             RunControl(resume, progress))
    finally:
        cleanup_distributed()
