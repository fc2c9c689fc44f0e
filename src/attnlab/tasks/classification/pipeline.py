"""Training a text classifier end to end: data -> tokenizer -> TextClassifier -> the training
loop -> run folder (see :mod:`attnlab.io.run_folder`).

The run folder's checkpoints hold, in config.json, the model, training and data settings and the
label names; resuming checks them all against the settings given
(:func:`attnlab.io.config_differences`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from attnlab.errors import InputError, UsageError
from attnlab.io.checkpoint import load_checkpoint
from attnlab.io.run_folder import config_differences
from attnlab.models.classifier import ClassifierConfig, TextClassifier
from attnlab.tasks.classification.config import DataConfig
from attnlab.tasks.classification.training import RunArtifacts, classification_trainer
from attnlab.tasks.classification.use import EVAL_BATCH, encode_dataset
from attnlab.tasks.runs import DEFAULT_CONTROL, RunControl, run_tokenizer
from attnlab.text import (
    LengthGroupedBatches,
    TextDataset,
    TextTokenizer,
    load_split,
    resolve_source,
)
from attnlab.train import FitResult, TrainConfig, seed_everything
from attnlab.train.config import AUTO_BATCH_SIZES
from attnlab.train.distributed import setup_distributed
from attnlab.train.sharding import ShardedBatches

__all__ = [
    "TrainedRun",
    "differences_from_saved",
    "fit_on_splits",
    "load_splits",
    "train_classifier",
]


@dataclass
class TrainedRun:
    """What :func:`train_classifier` returns."""

    out_dir: Path  # the run folder
    result: FitResult  # history, best epoch, steps, wall time
    model: nn.Module  # the model at the end of training (not the best epoch's)
    n_parameters: int  # trainable parameters
    model_config: Any  # ClassifierConfig, or the fine-tuned model's config dict


def train_classifier(out_dir: str | os.PathLike, data: DataConfig | None = None,
                     model_options: dict[str, Any] | None = None,
                     train: TrainConfig | None = None, control: RunControl = DEFAULT_CONTROL
                     ) -> TrainedRun:
    """Train a :class:`~attnlab.models.TextClassifier` on ``data`` into ``out_dir`` (created).

    Args:
        out_dir: the run folder (created).
        data: data settings (default SST-2, word tokenizer).
        model_options: :class:`~attnlab.models.ClassifierConfig` fields besides
            ``vocab_size``/``n_classes`` (which come from the tokenizer and the data).
        train: training settings (default :class:`~attnlab.train.TrainConfig`).
        control: resume (the settings must equal the saved ones, the saved tokenizer is
            reused), progress, process placement, callbacks.

    Under ``torchrun`` every process reads the data; rank 0 trains the tokenizer and the others
    load it; each global batch is split across processes (see :mod:`attnlab.train.sharding`).
    """
    out_dir = Path(out_dir)
    data = data or DataConfig()
    train = train or TrainConfig()
    options = dict(model_options or {})
    for fixed in ("vocab_size", "n_classes"):
        if fixed in options:
            raise InputError(f"model option {fixed!r} is set from the tokenizer/data, not given")
    # the model options are judged before any data is read or file written
    ClassifierConfig(vocab_size=data.vocab_size, n_classes=data.n_classes, **options)
    info = control.dist_info or setup_distributed(train.device)
    train_set, dev_set = load_splits(data)
    tokenizer = run_tokenizer(out_dir, lambda: TextTokenizer.train(
        train_set.texts, data.vocab_size, kind=data.tokenizer, min_frequency=data.min_frequency),
        resume=control.resume, is_main=info.is_main)
    model_config = ClassifierConfig(vocab_size=tokenizer.vocab_size,
                                    n_classes=data.n_classes, **options)
    seed_everything(train.seed)
    model = TextClassifier(model_config)
    artifacts = RunArtifacts(
        model_config=model_config.to_dict(), model_type="classifier",
        labels=data.label_names(), tokenizer=tokenizer,
        extra={"data": data.to_dict(), "n_parameters": model.num_parameters()},
    )
    result = fit_on_splits(out_dir, model, tokenizer, model_config.max_len, train_set, dev_set,
                           train, artifacts, replace(control, dist_info=info))
    return TrainedRun(out_dir, result, model, model.num_parameters(), model_config)


def load_splits(data: DataConfig) -> tuple[TextDataset, TextDataset]:
    """The training split (cut to ``data.train_limit``) and the dev split of ``data``.

    Raises:
        UsageError: both splits would be the same file (``--data FILE``): the dev figures would
            be measured on the training data.
    """
    train_file = resolve_source(data.source, "train")
    if train_file is not None and train_file == resolve_source(data.source, data.dev_split):
        raise UsageError(
            f"--data {data.source} names one file, {train_file}, which would be both the "
            f"training and the dev split (dev accuracy measured on the training data); give a "
            f"folder holding train and {data.dev_split} files (train.tsv and "
            f"{data.dev_split}.tsv, or .csv/.jsonl; test.* for evaluate) instead")
    columns = {"text_column": data.text_column, "label_column": data.label_column}
    train_set = load_split(data.source, "train", n_classes=data.n_classes, **columns)
    dev_set = load_split(data.source, data.dev_split, n_classes=data.n_classes, **columns)
    if data.train_limit is not None:
        train_set = dataclasses.replace(train_set, texts=train_set.texts[: data.train_limit],
                                        labels=train_set.labels[: data.train_limit],
                                        lines=train_set.lines[: data.train_limit])
    return train_set, dev_set


def fit_on_splits(
    out_dir: Path, model: nn.Module, tokenizer: TextTokenizer, max_length: int,
    train_set: TextDataset, dev_set: TextDataset, train: TrainConfig, artifacts: RunArtifacts,
    control: RunControl,
) -> FitResult:
    """Tokenize both splits (to ``max_length`` ids), batch them by length (sharded under
    ``torchrun``) and run the training loop into ``out_dir``."""
    dist_info = control.dist_info
    train_ids = encode_dataset(tokenizer, train_set, max_length)
    dev_ids = encode_dataset(tokenizer, dev_set, max_length)
    batch_size = train.planned_batch_size(len(train_ids), dist_info.world_size)
    if train.batch_size is None and batch_size != AUTO_BATCH_SIZES[0] and control.progress \
            and dist_info.is_main:
        print(f"batches of {batch_size}: {len(train_ids):,} training examples would make fewer "
              f"than {train.min_epoch_steps} steps an epoch in batches of {AUTO_BATCH_SIZES[0]} "
              f"(--batch-size sets it)", file=sys.stderr)
    train_batches: Any = LengthGroupedBatches(train_ids, train_set.labels, batch_size,
                                              seed=train.seed, drop_last=True)
    dev_batches: Any = LengthGroupedBatches(dev_ids, dev_set.labels, EVAL_BATCH, shuffle=False)
    if dist_info.distributed:
        train_batches = ShardedBatches(train_batches, dist_info.world_size, dist_info.rank)
        dev_batches = ShardedBatches(dev_batches, dist_info.world_size, dist_info.rank)
    trainer = classification_trainer(model, train, train_batches, dev_batches, out_dir=out_dir,
                                     artifacts=artifacts, progress=control.progress,
                                     dist_info=dist_info, callbacks=control.callbacks)
    return trainer.fit(resume=control.resume)


def differences_from_saved(out_dir: str | os.PathLike, data: DataConfig,
                           model_options: dict[str, Any],
                           train: TrainConfig | None = None) -> list[str]:
    """How the run saved in ``out_dir/last`` differs from ``data``, the classifier that
    ``model_options`` give (an option left out means its default, not whatever was saved),
    and ``train`` if given, as ``"name (saved x, now y)"`` strings; empty if it does not."""
    saved = load_checkpoint(Path(out_dir) / "last").config
    model = ClassifierConfig(vocab_size=saved["model"]["vocab_size"],
                             n_classes=saved["model"]["n_classes"], **model_options)
    now = {"data": data.to_dict(), "model": model.to_dict()}
    if train is not None:
        now["train"] = train.to_dict()
    return config_differences(saved, now)
