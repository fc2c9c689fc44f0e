"""Training a language model end to end: text -> character or byte-level BPE tokenizer ->
TransformerLM -> the training loop -> run folder (see :mod:`attnlab.io.run_folder`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from attnlab.errors import InputError
from attnlab.io.registry import LANGUAGE_MODEL
from attnlab.models.language_model import LMConfig, TransformerLM
from attnlab.tasks.lm.config import LM_DEFAULTS, LMDataConfig
from attnlab.tasks.lm.data import WindowBatches, encode_stream, load_lm_text, text_chunks
from attnlab.tasks.lm.metrics import units_per_token
from attnlab.tasks.lm.repeats import RepeatedSpans
from attnlab.tasks.lm.training import lm_trainer
from attnlab.tasks.runs import DEFAULT_CONTROL, RunControl, run_tokenizer
from attnlab.text import TextTokenizer
from attnlab.train import FitResult, TrainConfig, seed_everything
from attnlab.train.distributed import setup_distributed
from attnlab.train.sharding import ShardedBatches

__all__ = ["MODEL_FIXED", "TrainedLM", "train_lm"]

EVAL_BATCH = 32  # windows per evaluation batch
# LMConfig fields set by the tokenizer and the data: never options, not carried over on resume
MODEL_FIXED = ("vocab_size", "context", "eos_token_id")


@dataclass
class TrainedLM:
    """What :func:`train_lm` returns."""

    out_dir: Path  # the run folder
    result: FitResult  # history, best evaluation, steps, wall time
    model: nn.Module  # the model at the end of training
    n_parameters: int
    model_config: LMConfig
    train_tokens: int  # tokens of the training text
    about: str  # where the splits came from


def train_lm(out_dir: str | os.PathLike, data: LMDataConfig | None = None,
             model_options: dict[str, Any] | None = None, train: TrainConfig | None = None,
             control: RunControl = DEFAULT_CONTROL) -> TrainedLM:
    """Train a :class:`~attnlab.models.language_model.TransformerLM` on ``data`` into
    ``out_dir`` (created): a tokenizer of the training text, then the loop on random windows
    of ``data.context`` tokens, scored on the validation text's consecutive windows (loss,
    perplexity, bits per character or byte).

    With ``data.repeat_share``, that share of the training windows are random tokens with a
    span repeated (:class:`~attnlab.tasks.lm.repeats.RepeatedSpans`). ``data`` defaults to
    Tiny Shakespeare by characters, ``train`` to
    ``TrainConfig(**LM_DEFAULTS)``; ``model_options`` are
    :class:`~attnlab.models.language_model.LMConfig` fields besides those in
    :data:`MODEL_FIXED`; ``control`` says whether to resume, show progress, where the processes
    are, and the callbacks. Resume, the time limit, bf16 and data parallelism come from the
    Trainer.
    """
    resume, progress = control.resume, control.progress
    out_dir, data = Path(out_dir), data or LMDataConfig()
    train = train or TrainConfig(**LM_DEFAULTS)
    options = dict(model_options or {})
    fixed = sorted(set(options) & set(MODEL_FIXED))
    if fixed:
        raise InputError(f"model options {fixed} are set from the tokenizer and the data "
                         f"(context: the data option), not given")
    info = control.dist_info or setup_distributed(train.device)
    LMConfig(vocab_size=data.vocab_size, context=data.context, **options)  # judged first
    text = load_lm_text(data)
    tokenizer = run_tokenizer(out_dir, lambda: TextTokenizer.train(
        text_chunks(text.train), data.vocab_size, kind=data.tokenizer),
        resume=resume, is_main=info.is_main)
    train_ids, valid_ids = encode_stream(tokenizer, text.train), encode_stream(tokenizer,
                                                                               text.valid)
    if progress and info.is_main:
        print(f"{text.about}; {len(train_ids):,} training and {len(valid_ids):,} validation "
              f"tokens ({data.tokenizer}, {tokenizer.vocab_size} types)", file=sys.stderr)
    model_config = LMConfig(vocab_size=tokenizer.vocab_size, context=data.context, **options)
    seed_everything(train.seed)
    model = TransformerLM(model_config)
    n_parameters = model.num_parameters()
    run_config = {"model_type": LANGUAGE_MODEL, "model": model_config.to_dict(),
                  "data": data.to_dict(), "n_parameters": n_parameters}
    windows = len(train_ids) // data.context
    batch_size = train.planned_batch_size(windows, info.world_size)
    train_batches = WindowBatches(train_ids, data.context, batch_size, seed=train.seed)
    if data.repeat_share:  # some windows become random tokens with a span repeated
        train_batches = RepeatedSpans(train_batches, data.repeat_share,
                                      range(tokenizer.vocab_size), seed=train.seed)
    dev_batches = WindowBatches(valid_ids, data.context, EVAL_BATCH, shuffle=False)
    if info.distributed:  # each process takes its rows of every global batch
        train_batches = ShardedBatches(train_batches, info.world_size, info.rank)
        dev_batches = ShardedBatches(dev_batches, info.world_size, info.rank)
    trainer = lm_trainer(model, train, train_batches, dev_batches, tokenizer=tokenizer,
                         units=units_per_token(tokenizer, data.unit), unit=data.unit,
                         out_dir=out_dir, run_config=run_config, callbacks=control.callbacks,
                         progress=progress, dist_info=info)
    result = trainer.fit(resume=resume)
    return TrainedLM(out_dir, result, model, n_parameters, model_config, len(train_ids),
                     text.about)
