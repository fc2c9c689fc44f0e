"""Rebuild the model a checkpoint folder describes: its ``config.json`` names a ``model_type``,
the registry builds that model at full size, prunes it as recorded, and loads the weights.

Tasks (evaluate/predict a run) and inspection (look inside a run) both open run folders
through :func:`load_model`, so a model family is registered here once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from attnlab.attention.multihead import MultiHeadAttention
from attnlab.errors import InputError
from attnlab.io.checkpoint import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_checkpoint_config,
    load_weights,
    save_checkpoint,
)
from attnlab.models.bert import BertConfig, BertModel
from attnlab.models.bert_classifier import BertClassifierConfig, BertForSequenceClassification
from attnlab.models.classifier import ClassifierConfig, TextClassifier
from attnlab.models.language_model import LMConfig, TransformerLM
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.text.tokenizer import TextTokenizer

__all__ = [
    "KEPT_HEADS_KEY",
    "LANGUAGE_MODEL",
    "MODEL_TYPES",
    "BuiltModel",
    "LoadedModel",
    "build_model",
    "check_checkpoint",
    "load_bert_classifier",
    "save_bert_classifier",
    "checkpoint_dir",
    "load_model",
    "model_type_of",
    "restore_pruning",
]

BERT_CLASSIFIER = "bert-sequence-classifier"
SEQ2SEQ = "seq2seq"  # the translation model
LANGUAGE_MODEL = "transformer-lm"  # the decoder-only language model trained from scratch
MODEL_TYPES = ("classifier", BERT_CLASSIFIER, SEQ2SEQ, LANGUAGE_MODEL)
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
    (:class:`~attnlab.models.seq2seq.Seq2SeqTransformer`, config under ``"model"``) and
    ``"transformer-lm"`` (:class:`~attnlab.models.language_model.TransformerLM`, config under
    ``"model"``).
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
    if model_type == LANGUAGE_MODEL:
        c = LMConfig.from_dict(config["model"])
        return BuiltModel(TransformerLM(c), "mean", c.context, 0)
    raise InputError(f"unknown model_type {model_type!r} in config.json; known: "
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
            raise InputError(f"{KEPT_HEADS_KEY} names {name!r}, not a MultiHeadAttention of "
                             f"this model ({list(modules)})")
        n = modules[name].n_heads
        heads = [int(h) for h in heads]
        if not heads or any(not 0 <= h < n for h in heads) or len(set(heads)) != len(heads):
            raise InputError(f"{KEPT_HEADS_KEY}[{name!r}] must list distinct heads in [0, {n}), "
                             f"got {heads}")
        if heads != sorted(heads):
            raise InputError(f"{KEPT_HEADS_KEY}[{name!r}] must be in increasing order, got {heads}")
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
    check_checkpoint(ckpt)
    config_file = ckpt.path / CONFIG_FILE
    try:
        built = build_model(ckpt.config)
        restore_pruning(built.model, ckpt.config.get(KEPT_HEADS_KEY))
    except (ValueError, TypeError, KeyError) as err:
        if isinstance(err, CheckpointError):
            raise
        why = f"missing field {err.args[0]!r}" if isinstance(err, KeyError) else err
        raise CheckpointError(f"{config_file}: {why}") from err
    if built.max_length < 3:
        raise CheckpointError(f"{config_file}: the model's longest input is {built.max_length} "
                              f"tokens (field 'max_len'); a text needs at least 3 ([CLS], one "
                              f"token, [SEP])")
    load_weights(built.model, ckpt)
    tokenizer = None
    if ckpt.tokenizer_path is not None:
        tokenizer = _load_tokenizer(ckpt.tokenizer_path, built.max_length)
        _check_tokenizer(ckpt, tokenizer)
    labels = ckpt.config.get("labels") or [str(i) for i in range(built.n_classes)]
    if built.n_classes and len(labels) != built.n_classes:
        raise CheckpointError(f"{config_file}: field 'labels' names {len(labels)} classes, the "
                              f"model has {built.n_classes}")
    return LoadedModel(built.model.to(device).eval(), tokenizer, [str(x) for x in labels],
                       built.pooling, built.max_length, ckpt.config, ckpt.path,
                       ckpt.tokenizer_path)


# --- checks of a checkpoint before building its model -------------------------------------------

# Positions not stored as weights (rotary and sinusoidal tables) may take this many bytes, or as
# many as the weights, whichever is more.
TABLE_BYTES = 256 * 2**20


def check_checkpoint(ckpt: Checkpoint) -> None:
    """Check a checkpoint's config.json before a model is built from it: the fields the
    registry reads have the right types, and the sizes agree with the weights' shapes (so a
    tampered size such as ``d_ff=10**9`` is refused before anything is allocated).

    Raises:
        CheckpointError: naming config.json (or model.safetensors) and the field.
    """
    config_file = ckpt.path / CONFIG_FILE
    config = ckpt.config
    model_type = config.get("model_type", "classifier")
    if model_type in ("classifier", SEQ2SEQ, LANGUAGE_MODEL) \
            and not isinstance(config.get("model"), dict):
        found = "missing" if "model" not in config else f"a {type(config['model']).__name__}"
        raise CheckpointError(f"{config_file}: field 'model' (the model's config) must be a "
                              f"dict, got {found}")
    if model_type == BERT_CLASSIFIER:
        c = config if "bert" in config else config.get("model")
        for name in ("bert", "head"):
            found = c.get(name) if isinstance(c, dict) else None
            if not isinstance(found, dict):
                raise CheckpointError(
                    f"{config_file}: model_type {BERT_CLASSIFIER!r} needs field {name!r} (a "
                    f"dict, at the top level or under 'model'), got "
                    f"{'none' if found is None else type(found).__name__}")
    kept = config.get(KEPT_HEADS_KEY)
    if kept is not None and not (
            isinstance(kept, dict) and all(isinstance(k, str) and isinstance(v, list)
                                          and all(isinstance(h, int) and not isinstance(h, bool)
                                                  for h in v) for k, v in kept.items())):
        raise CheckpointError(f"{config_file}: field {KEPT_HEADS_KEY!r} must map module names "
                              f"to lists of head indices, got {kept!r:.80}")
    labels = config.get("labels")
    if labels is not None and not (isinstance(labels, list)
                                   and all(isinstance(x, (str, int)) for x in labels)):
        raise CheckpointError(f"{config_file}: field 'labels' must be a list of class names, "
                              f"got {labels!r:.80}")
    if model_type in ("classifier", SEQ2SEQ):
        shapes = {name: tuple(t.shape) for name, t in ckpt.weights.items()}
        nbytes = sum(t.numel() * t.element_size() for t in ckpt.weights.values())
        _check_sizes(model_type, config["model"], shapes, nbytes, config_file,
                     ckpt.path / WEIGHTS_FILE)
    if model_type == LANGUAGE_MODEL:
        _check_lm_sizes(config["model"], {n: tuple(t.shape) for n, t in ckpt.weights.items()},
                        config_file, ckpt.path / WEIGHTS_FILE)


def _check_lm_sizes(c: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
                    config_file: Path, weights_file: Path) -> None:
    """A language model's sizes must be the weights' (a tampered size is refused unbuilt)."""
    want = {"token_embedding.weight": ("vocab_size", "d_model")}
    if c.get("positions") == "learned":
        want["position_embedding.weight"] = ("context", "d_model")
    for tensor, dims in want.items():
        got = shapes.get(tensor)
        values = tuple(c.get(d) for d in dims)
        if got is not None and values != got:
            raise CheckpointError(f"{config_file}: fields {['model.' + d for d in dims]}="
                                  f"{list(values)} do not match {weights_file} ({tensor!r} has "
                                  f"shape {list(got)})")
    layers = {name.split(".")[1] for name in shapes if name.startswith("layers.")}
    if layers and c.get("n_layers") != len(layers):
        raise CheckpointError(f"{config_file}: field 'model.n_layers'={c.get('n_layers')!r} "
                              f"does not match {weights_file} ({len(layers)} layers)")
    context, width = c.get("context"), c.get("d_model")
    if c.get("positions") == "sinusoidal" and isinstance(context, int) \
            and isinstance(width, int) and 8 * context * width > TABLE_BYTES:
        raise CheckpointError(f"{config_file}: field 'model.context'={context} would need a "
                              f"{8 * context * width / 2**30:.1f} GiB position table")


def _check_sizes(model_type: str, c: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
                 nbytes: int, config_file: Path, weights_file: Path) -> None:
    """Compare the size fields of a classifier's or translator's config with the weights."""
    sizes = {}
    for name in ("vocab_size", "d_model", "d_ff", "max_len", "n_heads", "n_layers",
                 "n_encoder_layers", "n_decoder_layers", "n_classes"):
        value = c.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise CheckpointError(f"{config_file}: field 'model.{name}' must be an integer >= "
                                  f"1, got {value!r}")
        sizes[name] = value

    def expect(tensor: str, dims: tuple[str, ...]) -> None:
        want = tuple(sizes[d] for d in dims)
        if None in want:
            return  # a default the checkpoint does not record: the build checks it
        got = shapes.get(tensor)
        if got is None:
            raise CheckpointError(f"{config_file}: the model it describes has {tensor!r}, "
                                  f"{weights_file} does not")
        for dim, w, g in zip(dims, want, got, strict=False):
            if w != g:
                raise CheckpointError(f"{config_file}: field 'model.{dim}'={w} does not match "
                                      f"{weights_file} ({tensor!r} has shape {list(got)})")

    def layers(prefix: str, field: str) -> None:
        pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
        found = {int(m.group(1)) for name in shapes if (m := pattern.match(name))}
        n = sizes[field]
        if n is not None and n != len(found):
            raise CheckpointError(f"{config_file}: field 'model.{field}'={n} does not match "
                                  f"{weights_file} ({len(found)} layers under {prefix!r})")

    positional = c.get("positional")
    expect("embedding.weight", ("vocab_size", "d_model"))
    if model_type == SEQ2SEQ:
        layers("encoder.layers", "n_encoder_layers")
        layers("decoder.layers", "n_decoder_layers")
        expect("encoder.layers.0.ff.up.weight", ("d_ff", "d_model"))
        expect("decoder.layers.0.ff.up.weight", ("d_ff", "d_model"))
        if positional == "learned":
            expect("source_positions.embedding.weight", ("max_len", "d_model"))
    else:
        layers("encoder.layers", "n_layers")
        expect("encoder.layers.0.ff.up.weight", ("d_ff", "d_model"))
        expect("head.weight", ("n_classes", "d_model"))
        if positional == "learned":
            expect("positions.embedding.weight", ("max_len", "d_model"))
    if positional != "learned" and sizes["max_len"] and sizes["d_model"]:
        tables = 2 * 8 * sizes["max_len"] * sizes["d_model"]  # at most: two float64 tables
        if tables > max(TABLE_BYTES, nbytes):
            raise CheckpointError(
                f"{config_file}: field 'model.max_len'={sizes['max_len']} would need "
                f"{tables / 2**30:.1f} GiB of position tables, far more than the weights in "
                f"{weights_file} ({nbytes / 2**20:.1f} MiB)")


def _load_tokenizer(path: Path, max_length: int) -> TextTokenizer:
    try:
        return TextTokenizer.load(path, max_length=max_length)
    except InputError as err:  # unreadable, not UTF-8, [PAD] not 0: the file is named
        raise CheckpointError(str(err)) from err
    except Exception as err:  # tokenizers raises a bare Exception on a malformed file
        raise CheckpointError(f"{path}: not a valid tokenizer file ({err})") from err


def _check_tokenizer(ckpt: Checkpoint, tokenizer: TextTokenizer) -> None:
    """The tokenizer must fit the model: the same ``[PAD]`` id, no id beyond the embedding."""
    config = ckpt.config
    model_type = config.get("model_type", "classifier")
    if model_type == BERT_CLASSIFIER:
        c = config if "bert" in config else config["model"]
        model = c["bert"]
    else:
        model = config["model"]
    rows = model.get("vocab_size")
    pad = model.get("pad_token_id", 0)
    tok_file = ckpt.tokenizer_path or ckpt.path / TOKENIZER_FILE
    if isinstance(rows, int) and tokenizer.vocab_size > rows:
        raise CheckpointError(f"{tok_file}: its vocabulary has {tokenizer.vocab_size} tokens, "
                              f"more than the model's vocab_size={rows} embedding rows")
    pad_id = tokenizer.token_to_id("[PAD]")
    if pad_id is None:
        return  # a tokenizer without padding (pads with id 0)
    if pad_id != pad or tokenizer.tokenizer.id_to_token(pad) != "[PAD]":
        raise CheckpointError(f"{tok_file}: [PAD] has id {pad_id} (and id {pad} is "
                              f"{tokenizer.tokenizer.id_to_token(pad)!r}), the model's "
                              f"pad_token_id is {pad}")


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
