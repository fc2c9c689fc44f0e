"""A run folder: what training writes and what evaluation, prediction and inspection read.

    runs/h4/
        best/            checkpoint of the best evaluation (weights evaluated, config, tokenizer)
        last/            checkpoint to resume from (raw weights, trainer state)
        metrics.jsonl    one JSON object per logged step, evaluation and epoch
        result.json      the outcome of the fit

:class:`RunFolder` is the store the training loop saves through
(:class:`attnlab.train.store.RunStore`); the config it writes into every checkpoint is the
task's (``model_type``, ``model``, ``train``, ``labels``, ``data``, ...).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from attnlab.errors import InputError, UsageError
from attnlab.io.atomic import write_text_atomic
from attnlab.io.checkpoint import load_checkpoint, load_weights, save_checkpoint

__all__ = ["RUN_FILES", "RunFolder", "claim_run_folder", "config_differences"]

# What a training run writes into its folder (a new run into a folder holding any of them must
# say --resume or --overwrite).
RUN_FILES = ("best", "last", "metrics.jsonl", "result.json", "tokenizer.json")
LOCK_FILE = ".lock"  # held (flock) by the process training into the folder; holds its pid

# Sections of config.json that hold settings (the rest are labels, counts and names).
SETTINGS = ("data", "model", "init", "train")


def config_differences(saved: Mapping[str, Any], now: Mapping[str, Any],
                       ignore: Collection[str] = ()) -> list[str]:
    """How the settings ``now`` differ from a saved config.json, as ``"train.lr (saved 0.005,
    now 0.001)"`` strings, section by section. A key absent from the saved section did not
    exist when the run was saved and is not compared; ``ignore`` names keys
    (``"train.log_every"``) that may differ."""
    differ = []
    for section in SETTINGS:
        if section not in now:
            continue
        if section not in saved:
            differ.append(f"{section} (saved none, now {now[section]!r})")
            continue
        old = saved[section] or {}
        for key, value in (now[section] or {}).items():
            name = f"{section}.{key}"
            if key in old and old[key] != value and name not in ignore:
                differ.append(f"{name} (saved {old[key]!r}, now {value!r})")
    return differ


class RunFolder:
    """The checkpoints and logs of one training run.

    Args:
        path: the run folder (created on the first save).
        config: what every checkpoint's config.json holds besides the format keys.
        tokenizer: a ``tokenizers.Tokenizer`` or a path to a tokenizer.json, saved into every
            checkpoint, or ``None``.
    """

    def __init__(self, path: str | os.PathLike, config: dict[str, Any],
                 tokenizer: Any = None) -> None:
        self.path = Path(path)
        self.config = config
        self.tokenizer = tokenizer

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def save(self, name: str, model: nn.Module, *, metrics: dict[str, Any] | None = None,
             state: dict[str, Any] | None = None) -> None:
        save_checkpoint(self.path / name, model, self.config, tokenizer=self.tokenizer,
                        metrics=metrics, trainer_state=state)

    def restore(self, name: str, model: nn.Module, may_differ: Collection[str] = ()
                ) -> dict[str, Any]:
        """Load checkpoint ``name`` into ``model``; its trainer state. Refuses a run saved
        with other settings than this folder's config (but for ``may_differ``)."""
        checkpoint = load_checkpoint(self.path / name, with_state=True)
        differ = config_differences(checkpoint.config, self.config, may_differ)
        if differ:
            raise InputError("cannot resume with different settings: " + ", ".join(differ))
        load_weights(model, checkpoint)
        return checkpoint.trainer_state

    def write_result(self, result: dict[str, Any]) -> None:
        write_text_atomic(self.path / "result.json", json.dumps(result, indent=2))


@contextmanager
def claim_run_folder(path: str | os.PathLike, *, resume: bool = False,
                     overwrite: bool = False) -> Iterator[Path]:
    """Hold the run folder ``path`` for this process while it trains into it.

    The folder is locked (a second process training into it gets a clear error, instead of
    two runs mixing their checkpoints and logs). A folder that already holds a run must be
    resumed (``resume``) or replaced (``overwrite``: its run files are deleted first); never is
    a finished run overwritten by accident.

    Raises:
        UsageError: ``path`` is a file; another process trains into it; it holds a run and
            neither ``resume`` nor ``overwrite`` is given.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"the run folder {path} is a file; give a folder (--out)")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK_FILE, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise UsageError(f"{path} is in use by another training process (pid {holder}); "
                             f"wait for it to finish or choose another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            _clear_for_a_new_run(path, resume=resume, overwrite=overwrite)
            yield path
        finally:
            (path / LOCK_FILE).unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)
            if created and not any(path.iterdir()):  # failed before writing anything
                path.rmdir()


def _clear_for_a_new_run(path: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, or with ``overwrite`` delete, the files of an earlier run (not when resuming)."""
    existing = [name for name in RUN_FILES if (path / name).exists()]
    if resume or not existing:
        return
    if not overwrite:
        raise UsageError(f"{path} already holds a run ({', '.join(existing)}); pass --resume "
                         f"to continue it or --overwrite to replace it")
    for name in existing:
        target = path / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    for stale in path.glob(".*.old"):  # a previous copy kept by an interrupted checkpoint swap
        shutil.rmtree(stale, ignore_errors=True)
