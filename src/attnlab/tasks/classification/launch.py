"""Start classification work from the options a user gave, as ``attnlab train`` and
``attnlab experiment`` do: choose training from scratch or fine-tuning, put the options given
on top of the defaults (or, when resuming, of the saved settings), refuse options that do not
fit together.

The options are dicts ``{field: value}`` of the config dataclasses (:class:`DataConfig`,
:class:`~attnlab.models.ClassifierConfig`, :class:`~attnlab.train.TrainConfig`,
:class:`FinetuneConfig`); a field left out means its default, or its saved value when resuming.
:data:`OPTION_NAMES` holds the option names that differ from the field names, so that errors
name the options the user typed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnlab.errors import UsageError
from attnlab.io.checkpoint import load_checkpoint_config
from attnlab.io.registry import checkpoint_dir
from attnlab.io.run_folder import check_resumable, claim_run_folder
from attnlab.tasks.classification.config import FINETUNE_DEFAULTS, DataConfig, FinetuneConfig
from attnlab.tasks.classification.experiment import ExperimentReport, run_experiment
from attnlab.tasks.classification.finetune import finetune_classifier, saved_finetune
from attnlab.tasks.classification.pipeline import TrainedRun, train_classifier
from attnlab.tasks.runs import RunControl, saved_configs
from attnlab.train.config import TrainConfig
from attnlab.train.distributed import cleanup_distributed, is_main_process

__all__ = [
    "MODEL_FIXED",
    "OPTION_NAMES",
    "data_source_of",
    "experiment_from_options",
    "option_flags",
    "train_from_options",
]

# Per options group: field -> option name (without dashes) where the two differ.
OPTION_NAMES: dict[str, dict[str, str]] = {
    "data": {"source": "data"},
    "model": {"n_heads": "heads", "n_layers": "layers"},
    "train": {},
    "finetune": {"pooling": "head_pooling"},
}
# ClassifierConfig fields set from the tokenizer and data, or fixed by its special tokens: never
# options, and not carried over from a saved run.
MODEL_FIXED = ("vocab_size", "n_classes", "pad_token_id", "unk_token_id", "n_special_tokens")


def train_from_options(
    out_dir: str | os.PathLike,
    *,
    data: dict[str, Any],
    model: dict[str, Any],
    train: dict[str, Any],
    finetune: dict[str, Any],
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainedRun:
    """Train a classifier from scratch, or fine-tune one when ``finetune`` names an ``init``
    encoder (or the run resumed was fine-tuned).

    From scratch, ``model`` holds ClassifierConfig fields and ``train`` falls back on the
    TrainConfig defaults; fine-tuning, ``train`` falls back on :data:`FINETUNE_DEFAULTS`. With
    ``resume``, the settings saved in ``out_dir/last`` replace the defaults (the library then
    refuses options that differ from them).

    Raises:
        UsageError: model options with fine-tuning, or fine-tuning options without ``init``;
            ``resume`` without ``out_dir/last``.
    """
    out_dir = Path(out_dir)
    if resume:
        check_resumable(out_dir)
    saved_init = saved_finetune(out_dir) if resume else None
    fine_tuning = "init" in finetune or saved_init is not None
    if fine_tuning and model:
        raise UsageError(f"{option_flags('model', model)} configure a classifier trained from "
                         f"scratch; with --init the model is the pretrained encoder (see the "
                         f"fine-tuning options)")
    if not fine_tuning and finetune:
        raise UsageError(f"{option_flags('finetune', finetune)} apply to fine-tuning only; "
                         f"add --init NAME_OR_DIR")
    claim = (claim_run_folder(out_dir, resume=resume, overwrite=overwrite)
             if is_main_process() else contextlib.nullcontext())
    try:
        with claim:
            if fine_tuning:
                configs = _finetune_configs(out_dir, data, train, finetune, saved_init)
                return finetune_classifier(out_dir, *configs, RunControl(resume, progress))
            data_config, model_options, train_config = _scratch_configs(out_dir, data, model,
                                                                        train, resume)
            return train_classifier(out_dir, data_config, model_options, train_config,
                                    RunControl(resume, progress))
    finally:
        cleanup_distributed()


def _scratch_configs(out_dir: Path, data: dict[str, Any], model: dict[str, Any],
                     train: dict[str, Any], resume: bool
                     ) -> tuple[DataConfig, dict[str, Any], TrainConfig]:
    """(DataConfig, model options, TrainConfig): the options given on top of the defaults, or
    of the saved settings when resuming."""
    if not resume:
        return DataConfig(**data), dict(model), TrainConfig(**train)
    saved_data, saved_model, saved_train = saved_configs(out_dir, DataConfig)
    saved_model = {k: v for k, v in saved_model.items() if k not in MODEL_FIXED}
    return (dataclasses.replace(saved_data, **data), {**saved_model, **model},
            saved_train.replace(**train))


def _finetune_configs(out_dir: Path, data: dict[str, Any], train: dict[str, Any],
                      finetune: dict[str, Any], saved_init: FinetuneConfig | None
                      ) -> tuple[FinetuneConfig, DataConfig, TrainConfig]:
    """(FinetuneConfig, DataConfig, TrainConfig) for fine-tuning: the options given on top of
    the fine-tuning defaults, or of the saved settings when ``saved_init`` is given."""
    if saved_init is None:
        return (FinetuneConfig(**finetune), DataConfig(**data),
                TrainConfig(**{**FINETUNE_DEFAULTS, **train}))
    saved_data, _, saved_train = saved_configs(out_dir, DataConfig)
    return (dataclasses.replace(saved_init, **finetune), dataclasses.replace(saved_data, **data),
            saved_train.replace(**train))


def experiment_from_options(
    kind: str,
    out_dir: str | os.PathLike,
    *,
    data: dict[str, Any],
    model: dict[str, Any],
    train: dict[str, Any],
    seeds: int = 3,
    first_seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ExperimentReport:
    """Run experiment ``kind`` (see :func:`~attnlab.tasks.classification.experiment.
    run_experiment`) with seeds ``first_seed .. first_seed + seeds - 1``; the options given
    are shared by every variant, the rest are the defaults.

    Raises:
        UsageError: ``train`` sets ``seed`` (the experiment sets it from ``first_seed``).
    """
    if "seed" in train:
        raise UsageError("an experiment seeds its runs first_seed, first_seed + 1, ...; give "
                         "first_seed instead of a training seed")
    return run_experiment(kind, out_dir, data=DataConfig(**data), model_options=dict(model),
                          train=TrainConfig(**train, seed=first_seed), seeds=seeds,
                          progress=progress, log=log)


def data_source_of(run: str | os.PathLike) -> str:
    """The data set a run (or checkpoint) folder was trained on, as its config.json records it.

    Raises:
        FileNotFoundError: no checkpoint in ``run``.
        UsageError: the checkpoint does not record its data set.
    """
    folder = checkpoint_dir(run)
    data = load_checkpoint_config(folder).get("data") or {}
    source = data.get("source") if isinstance(data, dict) else None
    if not isinstance(source, str) or not source:
        raise UsageError(f"{folder / 'config.json'} records no data set (its 'data' section "
                         f"holds no 'source'); pass --data")
    return source


def option_flags(group: str, options: dict[str, Any]) -> str:
    """The command-line flags of ``options`` of ``group``, e.g. ``"--d-model, --heads"``."""
    names = OPTION_NAMES.get(group, {})
    return ", ".join("--" + names.get(name, name).replace("_", "-") for name in options)
