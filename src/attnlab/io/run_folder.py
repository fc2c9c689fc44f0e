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

__all__ = ["LEFTOVERS", "RUN_FILES", "RunFolder", "check_resumable", "claim_run_folder",
           "config_differences"]

# A run: checkpoints or an outcome (a new run into a folder holding any of them must say
# --resume or --overwrite).
RUN_FILES = ("best", "last", "result.json")
# What a start leaves before its first checkpoint: not a run, replaced by the next start.
LEFTOVERS = ("metrics.jsonl", "tokenizer.json")
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
    two runs mixing their checkpoints and logs). A folder that already holds a run
    (:data:`RUN_FILES`) must be resumed (``resume``, which needs ``last/``) or replaced
    (``overwrite``: its run files are deleted first); never is a finished run overwritten by
    accident. What a start that saved no checkpoint left behind (:data:`LEFTOVERS`) is not a
    run: a new run replaces it, and a claim that ends in an exception (Ctrl-C while the
    tokenizer trains, a bad option) before any checkpoint was saved deletes it, so the same
    command works again.

    Raises:
        UsageError: ``path`` is a file; another process trains into it; it holds a run and
            neither ``resume`` nor ``overwrite`` is given; ``resume`` without ``last/``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"the run folder {path} is a file; give a folder (--out)")
    if resume:
        check_resumable(path)
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
            if not resume:
                _clear_for_a_new_run(path, overwrite=overwrite)
            yield path
        except BaseException:
            if not _run_files(path):  # nothing to resume: leave no half-started run behind
                _delete(path, LEFTOVERS)
            raise
        finally:
            (path / LOCK_FILE).unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)
            if created and not any(path.iterdir()):  # failed before writing anything
                path.rmdir()


def check_resumable(path: str | os.PathLike) -> None:
    """Refuse to resume a folder without ``last/``, naming the command that works instead.

    Raises:
        UsageError: ``path`` holds no ``last/`` checkpoint.
    """
    path = Path(path)
    if (path / "last").is_dir():
        return
    if not path.is_dir():
        raise UsageError(f"cannot resume: {path} does not exist; start the run without "
                         f"--resume")
    done = _run_files(path)
    if done:
        raise UsageError(f"cannot resume: {path} holds {', '.join(done)} but no last/ "
                         f"checkpoint to continue from; pass --overwrite instead of --resume to "
                         f"train it again, or choose another --out")
    raise UsageError(f"cannot resume: {path} holds no checkpoint (training stopped before its "
                     f"first save); run the same command without --resume to start it again")


def _run_files(path: Path) -> list[str]:
    """The files of a run (:data:`RUN_FILES`) in ``path``."""
    return [name for name in RUN_FILES if (path / name).exists()]


def _clear_for_a_new_run(path: Path, *, overwrite: bool) -> None:
    """Refuse, or with ``overwrite`` delete, the files of an earlier run; delete what a start
    that saved no checkpoint left."""
    existing = _run_files(path)
    if existing and not overwrite:
        then = ("pass --resume to continue it or --overwrite to replace it"
                if (path / "last").is_dir() else
                "it has no last/ to resume from; pass --overwrite to replace it")
        raise UsageError(f"{path} already holds a run ({', '.join(existing)}); {then}, or "
                         f"choose another --out")
    _delete(path, (*existing, *LEFTOVERS))
    if existing:  # a previous copy kept by an interrupted checkpoint swap
        for stale in path.glob(".*.old"):
            shutil.rmtree(stale, ignore_errors=True)


def _delete(path: Path, names: Collection[str]) -> None:
    """Delete the files or folders ``names`` of ``path``, and any half-written checkpoint."""
    for name in names:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    for partial in path.glob(".*.tmp-*"):  # a save cut short (see io.checkpoint)
        shutil.rmtree(partial, ignore_errors=True)
