"""Training a translator end to end: parallel text -> joint subword tokenizer ->
Seq2SeqTransformer -> the training loop -> run folder (see :mod:`attnlab.io.run_folder`)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from attnlab.errors import InputError
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.tasks.runs import DEFAULT_CONTROL, RunControl, run_tokenizer
from attnlab.tasks.translation.config import TRANSLATION_DEFAULTS, TranslationDataConfig
from attnlab.tasks.translation.data import (
    MAX_TRAIN_CHARS,
    PairBatches,
    encode_pairs,
    within_chars,
)
from attnlab.tasks.translation.training import translation_trainer
from attnlab.tasks.translation.translator import MODEL_TYPE
from attnlab.text import ParallelDataset, TextTokenizer, load_parallel_split
from attnlab.train import FitResult, TrainConfig, seed_everything
from attnlab.train.distributed import setup_distributed
from attnlab.train.sharding import ShardedBatches

__all__ = ["MODEL_TYPE", "TrainedTranslator", "load_pairs", "train_translator"]


EVAL_BATCH = 128  # pairs per evaluation batch


@dataclass
class TrainedTranslator:
    """What :func:`train_translator` returns."""

    out_dir: Path  # the run folder
    result: FitResult  # history, best evaluation, steps, wall time
    model: nn.Module  # the model at the end of training
    n_parameters: int
    model_config: Seq2SeqConfig
    dropped: int  # training pairs left out for their length (characters or tokens)


def load_pairs(data: TranslationDataConfig) -> tuple[ParallelDataset, ParallelDataset]:
    """The training split (cut to ``data.train_limit``) and the dev split."""
    langs = {"source_lang": data.source_lang, "target_lang": data.target_lang}
    train = load_parallel_split(data.source, "train", **langs)
    dev = load_parallel_split(data.source, data.dev_split, **langs)
    if data.train_limit is not None:
        train = dataclasses.replace(train, sources=train.sources[:data.train_limit],
                                    targets=train.targets[:data.train_limit])
    return train, dev


def _short_pairs(train: ParallelDataset, say: bool) -> tuple[ParallelDataset, int]:
    """``train`` without the pairs longer than :data:`MAX_TRAIN_CHARS` characters on a side
    (said on stderr when ``say``), and their count."""
    sources, targets, dropped = within_chars(train.sources, train.targets)
    if dropped and say:
        print(f"dropped {dropped} of {len(train.sources)} training pairs longer than "
              f"{MAX_TRAIN_CHARS:,} characters", file=sys.stderr)
    return dataclasses.replace(train, sources=sources, targets=targets), dropped


def train_translator(out_dir: str | os.PathLike, data: TranslationDataConfig | None = None,
                     model_options: dict[str, Any] | None = None,
                     train: TrainConfig | None = None, control: RunControl = DEFAULT_CONTROL
                     ) -> TrainedTranslator:
    """Train a :class:`~attnlab.models.seq2seq.Seq2SeqTransformer` on ``data`` into ``out_dir``
    (created): a joint tokenizer of both sides, then the loop, dev loss and BLEU. Training
    pairs with a side over :data:`~attnlab.tasks.translation.data.MAX_TRAIN_CHARS` characters
    are dropped before the tokenizer is trained, those over ``data.max_tokens`` tokens after;
    both counts are printed with ``progress``.

    ``data`` defaults to Multi30k de→en, ``train`` to ``TrainConfig(**TRANSLATION_DEFAULTS)``;
    ``model_options`` are :class:`~attnlab.models.seq2seq.Seq2SeqConfig` fields besides
    ``vocab_size`` (the tokenizer's); ``control`` says whether to resume, show progress, where
    the processes are, and the callbacks.
    """
    resume, progress = control.resume, control.progress
    out_dir, data = Path(out_dir), data or TranslationDataConfig()
    train = train or TrainConfig(**TRANSLATION_DEFAULTS)
    options = dict(model_options or {})
    if "vocab_size" in options:
        raise InputError("model option 'vocab_size' is set from the tokenizer, not given")
    info = control.dist_info or setup_distributed(train.device)
    if data.batch_tokens is not None and data.batch_tokens < info.world_size * data.max_tokens:
        raise InputError(f"batch_tokens must be at least world_size x max_tokens "
                         f"({info.world_size} x {data.max_tokens}) under torchrun, so that "
                         f"every process gets rows of every batch; got {data.batch_tokens}")
    Seq2SeqConfig(vocab_size=data.vocab_size, **options)  # judged before any file is written
    train_set, dev_set = load_pairs(data)
    train_set, too_long = _short_pairs(train_set, progress and info.is_main)
    tokenizer = run_tokenizer(out_dir, lambda: TextTokenizer.train(
        [*train_set.sources, *train_set.targets], data.vocab_size, kind=data.tokenizer),
        resume=resume, is_main=info.is_main)
    model_config = Seq2SeqConfig(  # the special ids are the tokenizer's, not two equal defaults
        vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **options)
    train_pairs = encode_pairs(tokenizer, train_set.sources, train_set.targets, data.max_tokens)
    dev_pairs = encode_pairs(tokenizer, dev_set.sources, dev_set.targets, model_config.max_len)
    if progress and info.is_main:
        for pairs, total, what, limit in (
                (train_pairs, len(train_set.sources), "training pairs", data.max_tokens),
                (dev_pairs, len(dev_set.sources), f"{data.dev_split} pairs (dev loss)",
                 model_config.max_len)):
            if pairs.dropped:
                print(f"dropped {pairs.dropped} of {total} {what} longer than {limit} tokens",
                      file=sys.stderr)
    seed_everything(train.seed)
    model = Seq2SeqTransformer(model_config)
    n_parameters = model.num_parameters()
    run_config = {"model_type": MODEL_TYPE, "model": model_config.to_dict(),
                  "data": data.to_dict(), "n_parameters": n_parameters,
                  "dropped_pairs": too_long + train_pairs.dropped}
    bleu_rows = range(min(data.dev_bleu_sentences, len(dev_set.sources)))
    batch_size = train.planned_batch_size(len(train_pairs.sources), info.world_size)
    train_batches = PairBatches(train_pairs, batch_size, seed=train.seed, drop_last=True,
                                max_tokens=data.batch_tokens)
    dev_batches = PairBatches(dev_pairs, EVAL_BATCH, shuffle=False)
    if info.distributed:  # each process takes its rows of every global batch (each side
        # trimmed of the columns its rows do not use)
        train_batches = ShardedBatches(train_batches, info.world_size, info.rank)
        dev_batches = ShardedBatches(dev_batches, info.world_size, info.rank)
    trainer = translation_trainer(
        model, train, train_batches, dev_batches, tokenizer=tokenizer,
        dev_sources=[dev_set.sources[i] for i in bleu_rows],
        dev_references=[dev_set.targets[i] for i in bleu_rows],
        out_dir=out_dir, run_config=run_config, callbacks=control.callbacks, progress=progress,
        dist_info=info)
    result = trainer.fit(resume=resume)
    return TrainedTranslator(out_dir, result, model, n_parameters, model_config,
                             too_long + train_pairs.dropped)
