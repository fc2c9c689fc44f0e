"""Rebuild the model a checkpoint folder describes: its ``config.json`` names a ``model_type``,
the registry builds that model at full size, prunes it as recorded, and loads the weights.

Tasks (evaluate/predict a run) and inspection (look inside a run) both open run folders
through :func:`load_model`, so a model family is registered here once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from attnlab.attention.multihead import MultiHeadAttention
from attnlab.io.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_checkpoint_config,
    load_weights,
    save_checkpoint,
)
from attnlab.models.bert import BertConfig, BertModel
from attnlab.models.bert_classifier import BertClassifierConfig, BertForSequenceClassification
from attnlab.models.classifier import ClassifierConfig, TextClassifier
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.text.tokenizer import TextTokenizer

__all__ = [
    "KEPT_HEADS_KEY",
    "MODEL_TYPES",
    "BuiltModel",
    "LoadedModel",
    "build_model",
    "load_bert_classifier",
    "save_bert_classifier",
    "checkpoint_dir",
    "load_model",
    "model_type_of",
    "restore_pruning",
]

BERT_CLASSIFIER = "bert-sequence-classifier"
SEQ2SEQ = "seq2seq"  # the translation model
MODEL_TYPES = ("classifier", BERT_CLASSIFIER, SEQ2SEQ)
KEPT_HEADS_KEY = "kept_heads"  # config.json key: {module name: remaining original head indices}


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The checkpoint folder for ``path``: itself, or its ``best/``, else ``last/``."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path}")
    for folder in (path, path / "best", path / "last"):
        if (folder / "config.json").is_file():
            return folder
    raise FileNotFoundError(f"{path} holds no checkpoint: looked for config.json in it and in "
                            f"its best/ and last/ folders")


def model_type_of(path: str | os.PathLike) -> str:
    """The ``model_type`` recorded in the checkpoint of a run or checkpoint folder."""
    return load_checkpoint_config(checkpoint_dir(path)).get("model_type", "classifier")


@dataclass(frozen=True)
class BuiltModel:
    """A fresh, full-size model from a checkpoint config, and how to read it."""

    model: nn.Module
    pooling: str  # "cls" or "mean": which rows the classification head reads (for rollout)
    max_length: int  # longest input in tokens
    n_classes: int  # outputs of the classification head (0: the model has none)


def build_model(config: Mapping[str, Any]) -> BuiltModel:
    """Build the model a checkpoint's ``config.json`` describes (weights not loaded).

    Known ``model_type``: ``"classifier"`` (:class:`~attnlab.models.TextClassifier`, config
    under ``"model"``) and ``"bert-sequence-classifier"`` (BERT with a classification head,
    ``"bert"``/``"head"`` at the top level or under ``"model"``) and ``"seq2seq"``
    (:class:`~attnlab.models.seq2seq.Seq2SeqTransformer`, config under ``"model"``).
    """
    model_type = config.get("model_type", "classifier")
    if model_type == "classifier":
        c = ClassifierConfig.from_dict(config["model"])
        # max and attention pooling read every real token, as the mean does
        rows = "cls" if c.pooling == "cls" else "mean"
        return BuiltModel(TextClassifier(c), rows, c.max_len, c.n_classes)
    if model_type == BERT_CLASSIFIER:
        c = config if "bert" in config else config["model"]
        bert_config = BertConfig.from_dict(c["bert"])
        head = BertClassifierConfig(**c["head"])
        model = BertForSequenceClassification(
            BertModel(bert_config, add_pooler=c.get("with_pooler", True)), head)
        return BuiltModel(model, "mean" if head.pooling == "mean" else "cls",
                          int(c.get("max_length") or bert_config.max_position_embeddings),
                          head.num_labels)
    if model_type == SEQ2SEQ:
        c = Seq2SeqConfig.from_dict(config["model"])
        return BuiltModel(Seq2SeqTransformer(c), "mean", c.max_len, 0)
    raise ValueError(f"unknown model_type {model_type!r} in config.json; known: "
                     f"{list(MODEL_TYPES)}")


def restore_pruning(model: nn.Module, kept: Mapping[str, list[int]] | None) -> None:
    """Prune a freshly built, full-size ``model`` to the heads recorded in ``kept``.

    ``None`` or an empty record does nothing, so loaders may call it for every checkpoint.
    """
    if not kept:
        return
    modules = {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    for name, heads in kept.items():
        if name not in modules:
            raise ValueError(f"{KEPT_HEADS_KEY} names {name!r}, not a MultiHeadAttention of "
                             f"this model ({list(modules)})")
        n = modules[name].n_heads
        heads = [int(h) for h in heads]
        if not heads or any(not 0 <= h < n for h in heads) or len(set(heads)) != len(heads):
            raise ValueError(f"{KEPT_HEADS_KEY}[{name!r}] must list distinct heads in [0, {n}), "
                             f"got {heads}")
        if heads != sorted(heads):
            raise ValueError(f"{KEPT_HEADS_KEY}[{name!r}] must be in increasing order, got {heads}")
        modules[name].prune_heads([h for h in range(n) if h not in heads])


@dataclass
class LoadedModel:
    """A trained model read back from its checkpoint folder, in eval mode.

    Attributes:
        model: the module, pruned as recorded, weights loaded.
        tokenizer: the checkpoint's tokenizer, truncating to ``max_length``, or ``None`` if it
            has none.
        labels: class names (``"0"``, ``"1"``, ... when the checkpoint records none).
        pooling: ``"cls"`` or ``"mean"``: what the classification head reads.
        max_length: longest input in tokens.
        config: the checkpoint's config.json.
        path: the checkpoint folder read.
        tokenizer_path: its tokenizer.json, or ``None``.
    """

    model: nn.Module
    tokenizer: TextTokenizer | None
    labels: list[str]
    pooling: str
    max_length: int
    config: dict[str, Any]
    path: Path
    tokenizer_path: Path | None


def load_model(path: str | os.PathLike, *, device: str = "cpu") -> LoadedModel:
    """Open a run folder (its ``best/``, else ``last/``) or a checkpoint folder.

    Raises:
        FileNotFoundError: no checkpoint in ``path``.
        ValueError: an unknown ``model_type`` or a bad pruning record.
    """
    ckpt = load_checkpoint(checkpoint_dir(path))
    built = build_model(ckpt.config)
    restore_pruning(built.model, ckpt.config.get(KEPT_HEADS_KEY))
    load_weights(built.model, ckpt)
    tokenizer = None
    if ckpt.tokenizer_path is not None:
        tokenizer = TextTokenizer.load(ckpt.tokenizer_path, max_length=built.max_length)
    labels = ckpt.config.get("labels") or [str(i) for i in range(built.n_classes)]
    return LoadedModel(built.model.to(device).eval(), tokenizer, [str(x) for x in labels],
                       built.pooling, built.max_length, ckpt.config, ckpt.path,
                       ckpt.tokenizer_path)


def save_bert_classifier(model: BertForSequenceClassification, path: str | os.PathLike) -> Path:
    """Write the weights, both configs and the tokenizer (if any) to the folder ``path``,
    atomically."""
    config = {"model_type": BERT_CLASSIFIER, **model.config_dict()}
    tokenizer = None if model.tokenizer is None else model.tokenizer.path
    return save_checkpoint(path, model, config, tokenizer=tokenizer)


def load_bert_classifier(path: str | os.PathLike) -> BertForSequenceClassification:
    """Read a folder written by :func:`save_bert_classifier` (or a checkpoint of a fine-tuning
    run, whose configs sit under ``"model"``), in evaluation mode, with its tokenizer."""
    checkpoint = load_checkpoint(path)
    config = checkpoint.config
    if config.get("model_type") != BERT_CLASSIFIER:
        raise CheckpointError(f"{checkpoint.path}: not a {BERT_CLASSIFIER} checkpoint "
                              f"(model_type={config.get('model_type')!r})")
    config = config if "bert" in config else config["model"]
    bert = BertModel(BertConfig.from_dict(config["bert"]), add_pooler=config["with_pooler"])
    tokenizer = None
    if checkpoint.tokenizer_path is not None and config.get("max_length"):
        tokenizer = TextTokenizer.load(checkpoint.tokenizer_path, max_length=config["max_length"])
    model = BertForSequenceClassification(bert, BertClassifierConfig(**config["head"]), tokenizer)
    load_weights(model, checkpoint)
    return model.eval()
