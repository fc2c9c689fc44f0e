"""Start language-model work from the options a user gave (``attnlab train --task lm``): the
options on top of :data:`~attnlab.tasks.lm.config.DEFAULT_RECIPE`, or of the saved settings
when resuming."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from attnlab.io.run_folder import check_resumable, claim_run_folder
from attnlab.tasks.lm.config import DEFAULT_RECIPE, LMDataConfig, recipe_options
from attnlab.tasks.lm.pipeline import MODEL_FIXED, TrainedLM, train_lm
from attnlab.tasks.runs import RunControl, saved_configs
from attnlab.train.config import TrainConfig
from attnlab.train.distributed import cleanup_distributed, is_main_process

__all__ = ["MODEL_FIXED", "OPTION_NAMES", "train_from_options"]

# Per options group: field -> option name (without dashes) where the two differ.
OPTION_NAMES: dict[str, dict[str, str]] = {
    "data": {"source": "data"},
    "model": {"n_heads": "heads", "n_layers": "layers"},
    "train": {},
}


def train_from_options(out_dir: str | os.PathLike, *, data: dict[str, Any],
                       model: dict[str, Any], train: dict[str, Any], resume: bool = False,
                       overwrite: bool = False, progress: bool = True) -> TrainedLM:
    """Train (or resume) a language model with the options given, field -> value, holding the
    run folder (see :func:`attnlab.io.run_folder.claim_run_folder`)."""
    out_dir = Path(out_dir)
    if resume:
        check_resumable(out_dir)
        saved_data, saved_model, saved_train = saved_configs(out_dir, LMDataConfig)
        data_config = dataclasses.replace(saved_data, **data)
        model = {**{k: v for k, v in saved_model.items() if k not in MODEL_FIXED}, **model}
        train_config = saved_train.replace(**train)
    else:
        data, model, train = recipe_options(DEFAULT_RECIPE, data, model, train)
        data_config, train_config = LMDataConfig(**data), TrainConfig(**train)
    claim = (claim_run_folder(out_dir, resume=resume, overwrite=overwrite)
             if is_main_process() else contextlib.nullcontext())
    try:
        with claim:
            return train_lm(out_dir, data_config, model, train_config,
                            RunControl(resume, progress))
    finally:
        cleanup_distributed()
