"""Fine-tuning a pretrained BERT encoder (e.g. all-MiniLM-L6-v2) for text classification.

:func:`finetune_classifier` puts a fresh head on the pretrained encoder
(:func:`~attnlab.io.load_pretrained_classifier`), keeps the pretrained
``tokenizer.json`` and trains with the same loop and run folder as
:func:`~attnlab.tasks.classification.pipeline.train_classifier`; ``evaluate_run``/``predict``
read it back through :mod:`attnlab.io.registry`. The training defaults for fine-tuning are
:data:`~attnlab.tasks.classification.config.FINETUNE_DEFAULTS`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from attnlab.errors import InputError
from attnlab.io.checkpoint import load_checkpoint
from attnlab.io.pretrained import load_pretrained_classifier, resolve_model_dir
from attnlab.io.registry import BERT_CLASSIFIER, build_model
from attnlab.tasks.classification.config import (
    FINETUNE_DEFAULTS,
    INIT_KEY,
    DataConfig,
    FinetuneConfig,
)
from attnlab.tasks.classification.pipeline import TrainedRun, fit_on_splits, load_splits
from attnlab.tasks.classification.training import RunArtifacts
from attnlab.tasks.runs import DEFAULT_CONTROL, RunControl
from attnlab.text import TextTokenizer
from attnlab.train import TrainConfig, seed_everything
from attnlab.train.distributed import setup_distributed

__all__ = ["finetune_classifier", "saved_finetune"]

def saved_finetune(out_dir: str | os.PathLike) -> FinetuneConfig | None:
    """The fine-tuning settings stored in ``out_dir/last``, or ``None`` for a run trained from
    scratch."""
    saved = load_checkpoint(Path(out_dir) / "last").config.get(INIT_KEY)
    return None if saved is None else FinetuneConfig.from_dict(saved)


def finetune_classifier(out_dir: str | os.PathLike, finetune: FinetuneConfig,
                        data: DataConfig | None = None, train: TrainConfig | None = None,
                        control: RunControl = DEFAULT_CONTROL) -> TrainedRun:
    """Fine-tune the pretrained encoder ``finetune.init`` with a new head on ``data``.

    Args:
        out_dir: the run folder (created): ``best/``, ``last/`` (weights, config.json, the
            pretrained tokenizer.json), ``metrics.jsonl``, ``result.json``.
        finetune: the encoder, head and input length.
        data: data settings (default SST-2); its tokenizer fields are unused.
        train: training settings; default ``TrainConfig(**FINETUNE_DEFAULTS)``.
        control: resume from ``out_dir/last`` (``finetune`` and ``data`` must equal the saved
            ones; the model is rebuilt from the checkpoint, the pretrained folder is not read),
            progress, process placement, callbacks.

    Raises:
        ValueError: ``finetune.init`` is neither a known name nor a folder.
        FileNotFoundError: the folder lacks config.json, model.safetensors or tokenizer.json.
    """
    out_dir = Path(out_dir)
    data = data or DataConfig()
    train = train or TrainConfig(**FINETUNE_DEFAULTS)
    info = control.dist_info or setup_distributed(train.device)
    if control.resume:
        if saved_finetune(out_dir) is None:
            raise InputError(f"{out_dir} was trained from scratch, not fine-tuned; resume it "
                             f"without --init")
        last = load_checkpoint(out_dir / "last")
        model = build_model(last.config).model
        tokenizer_path = last.tokenizer_path
    else:
        seed_everything(train.seed)  # the head's initial weights
        model = load_pretrained_classifier(
            finetune.init, num_labels=data.n_classes, pooling=finetune.pooling,
            dropout=finetune.head_dropout, max_length=finetune.max_length)
        tokenizer_path = resolve_model_dir(finetune.init) / "tokenizer.json"
    if finetune.freeze_word_embeddings:
        model.bert.embeddings.word.weight.requires_grad_(False)
    tokenizer = TextTokenizer.load(tokenizer_path)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_set, dev_set = load_splits(data)
    artifacts = RunArtifacts(
        model_config={**model.config_dict(), "max_length": finetune.max_length},
        model_type=BERT_CLASSIFIER, labels=data.label_names(),
        tokenizer=tokenizer_path,
        extra={"data": data.to_dict(), INIT_KEY: finetune.to_dict(),
               "n_parameters": n_trainable},
    )
    result = fit_on_splits(out_dir, model, tokenizer, finetune.max_length, train_set, dev_set,
                           train, artifacts, replace(control, dist_info=info))
    return TrainedRun(out_dir, result, model, n_trainable, artifacts.model_config)
