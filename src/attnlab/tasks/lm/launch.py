"""Start language-model work from the options a user gave (``attnlab train --task lm``): the
options on top of :data:`~attnlab.tasks.lm.config.DEFAULT_RECIPE`, or of the saved settings
when resuming."""

from __future__ import annotations

import os
from typing import Any

from attnlab.tasks.lm.config import DEFAULT_RECIPE, LMDataConfig, recipe_options
from attnlab.tasks.lm.pipeline import MODEL_FIXED, TrainedLM, train_lm
from attnlab.tasks.runs import launch_run

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
    return launch_run(out_dir, train_lm, data_config=LMDataConfig,
                      merge=lambda d, m, t: recipe_options(DEFAULT_RECIPE, d, m, t),
                      model_fixed=MODEL_FIXED, data=data, model=model, train=train,
                      resume=resume, overwrite=overwrite, progress=progress)
