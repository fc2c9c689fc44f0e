"""Start translation work from the options a user gave (``attnlab train --task translation``):
the options on top of :data:`~attnlab.tasks.translation.config.DEFAULT_RECIPE`, or of the saved
settings when resuming."""

from __future__ import annotations

import os
from typing import Any

from attnlab.tasks.runs import launch_run
from attnlab.tasks.translation.config import (
    DEFAULT_RECIPE,
    TranslationDataConfig,
    recipe_options,
)
from attnlab.tasks.translation.pipeline import TrainedTranslator, train_translator

__all__ = ["MODEL_FIXED", "OPTION_NAMES", "train_from_options"]

# Per options group: field -> option name (without dashes) where the two differ.
OPTION_NAMES: dict[str, dict[str, str]] = {
    "data": {"source": "data", "source_lang": "source", "target_lang": "target"},
    "model": {"n_heads": "heads", "n_encoder_layers": "encoder_layers",
              "n_decoder_layers": "decoder_layers"},
    "train": {},
}
# Seq2SeqConfig fields set from the tokenizer: never options, not carried over from a saved run.
MODEL_FIXED = ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id")


def train_from_options(out_dir: str | os.PathLike, *, data: dict[str, Any],
                       model: dict[str, Any], train: dict[str, Any], resume: bool = False,
                       overwrite: bool = False, progress: bool = True) -> TrainedTranslator:
    """Train (or resume) a translator with the options given, field -> value, holding the
    run folder (see :func:`attnlab.io.run_folder.claim_run_folder`)."""
    return launch_run(out_dir, train_translator, data_config=TranslationDataConfig,
                      merge=lambda d, m, t: recipe_options(DEFAULT_RECIPE, d, m, t),
                      model_fixed=MODEL_FIXED, data=data, model=model, train=train,
                      resume=resume, overwrite=overwrite, progress=progress)
