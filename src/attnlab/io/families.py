"""Model families from a local folder in the Hugging Face layout, by their ``model_type``.

A folder holds ``config.json`` and ``model.safetensors`` (one file; sharded checkpoints are not
read). Its ``config.json`` names the family (``model_type``); each family appears once, in
:data:`FAMILIES`: how to read its config, the model class, and an explicit table from our
parameter names to the checkpoint's tensors (with the transposition or slice each needs).
Weights are read with ``safetensors`` only (nothing unpickled); nothing is downloaded.

Legend: ``D`` model width, ``F`` feed-forward size, ``V`` vocabulary.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.io.pretrained import bert_weight_names
from attnlab.models.bert import BertConfig, BertModel
from attnlab.models.gpt2 import GPT2Config, GPT2LMHeadModel
from attnlab.models.llama import LlamaConfig, LlamaForCausalLM
from attnlab.models.marian import MarianConfig, MarianMTModel

__all__ = ["FAMILIES", "Family", "Source", "load_family", "read_config"]

WEIGHTS_FILE = "model.safetensors"


def _same(tensor: Tensor) -> Tensor:
    return tensor


@dataclass(frozen=True)
class Source:
    """Where one of our parameters comes from: a checkpoint tensor and how to turn it into ours."""

    name: str  # the tensor's name in the checkpoint, its family prefix removed
    take: Callable[[Tensor], Tensor] = _same  # e.g. a Conv1D slice, transposed


@dataclass(frozen=True)
class Family:
    """One model family: its config, its model class and its weight-name table."""

    model_type: str  # config.json's "model_type"
    config_from_dict: Callable[[dict[str, Any]], Any]  # config.json -> our config dataclass
    model_class: Callable[[Any], nn.Module]  # our config -> a fresh model
    weights: Callable[[Any], dict[str, Source]]  # our config -> our name -> Source
    prefix: str  # stripped from checkpoint names (a task model nests the base model under it)
    ignored: str  # regex of checkpoint tensors that are not weights (buffers, tied copies)
    kind: str  # "encoder" (hidden states of every token), "decoder" (next-token logits) or
    # "encoder-decoder" (a translator: next-token logits after a source)


# --- GPT-2 -----------------------------------------------------------------------------------

def _conv1d(start: int | None = None, stop: int | None = None) -> Callable[[Tensor], Tensor]:
    """GPT-2's ``Conv1D`` stores ``(in, out)``: take output columns ``start:stop`` of a weight
    and transpose it to ``nn.Linear``'s ``(out, in)``, or slice a bias."""
    def take(tensor: Tensor) -> Tensor:
        if tensor.dim() == 1:
            return tensor[start:stop]  # (out,)
        return tensor[:, start:stop].T.contiguous()  # (in, out) -> (out, in)
    return take


def gpt2_weights(config: GPT2Config) -> dict[str, Source]:
    """Our name -> the GPT-2 checkpoint tensor (``c_attn`` holds q, k, v side by side)."""
    D = config.n_embd
    table = {"wte.weight": Source("wte.weight"), "wpe.weight": Source("wpe.weight"),
             "final_norm.weight": Source("ln_f.weight"), "final_norm.bias": Source("ln_f.bias")}
    for i in range(config.n_layer):
        ours, hf = f"layers.{i}.", f"h.{i}."
        for part in ("weight", "bias"):
            table[f"{ours}attn_norm.{part}"] = Source(f"{hf}ln_1.{part}")
            table[f"{ours}ffn_norm.{part}"] = Source(f"{hf}ln_2.{part}")
            for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                table[f"{ours}attn.{proj}.{part}"] = Source(f"{hf}attn.c_attn.{part}",
                                                            _conv1d(j * D, (j + 1) * D))
            table[f"{ours}attn.out_proj.{part}"] = Source(f"{hf}attn.c_proj.{part}", _conv1d())
            table[f"{ours}ffn_in.{part}"] = Source(f"{hf}mlp.c_fc.{part}", _conv1d())
            table[f"{ours}ffn_out.{part}"] = Source(f"{hf}mlp.c_proj.{part}", _conv1d())
    if not config.tie_word_embeddings:
        table["lm_head.weight"] = Source("lm_head.weight")
    return table


# --- the Llama layout (Llama, Qwen2-style without biases, SmolLM) ------------------------------

def llama_weights(config: LlamaConfig) -> dict[str, Source]:
    """Our name -> the Llama checkpoint tensor (the names match but for the prefix and norms)."""
    table = {"embed_tokens.weight": Source("embed_tokens.weight"),
             "final_norm.weight": Source("norm.weight")}
    for i in range(config.num_hidden_layers):
        ours, hf = f"layers.{i}.", f"layers.{i}."
        table[f"{ours}attn_norm.weight"] = Source(f"{hf}input_layernorm.weight")
        table[f"{ours}ffn_norm.weight"] = Source(f"{hf}post_attention_layernorm.weight")
        for proj, theirs in (("q_proj", "q_proj"), ("k_proj", "k_proj"), ("v_proj", "v_proj"),
                             ("out_proj", "o_proj")):
            table[f"{ours}attn.{proj}.weight"] = Source(f"{hf}self_attn.{theirs}.weight")
            if config.attention_bias:
                table[f"{ours}attn.{proj}.bias"] = Source(f"{hf}self_attn.{theirs}.bias")
        for proj in ("gate_proj", "up_proj", "down_proj"):
            table[f"{ours}mlp.{proj}.weight"] = Source(f"{hf}mlp.{proj}.weight")
            if config.mlp_bias:
                table[f"{ours}mlp.{proj}.bias"] = Source(f"{hf}mlp.{proj}.bias")
    if not config.tie_word_embeddings:
        table["lm_head.weight"] = Source("lm_head.weight")
    return table


# --- encoders on attnlab's BERT: RoBERTa, DistilBERT -------------------------------------------

def roberta_config(data: dict[str, Any]) -> BertConfig:
    """BERT's config.json fields, with RoBERTa's positions (after ``pad_token_id``)."""
    bert = {k: v for k, v in data.items() if k != "model_type"}  # BertConfig wants "bert"
    return BertConfig.from_dict({**bert, "positions_after_padding": True})


def roberta_weights(config: BertConfig) -> dict[str, Source]:
    """Our name -> the RoBERTa checkpoint tensor: BERT's names, without the pooler."""
    return {ours: Source(hf) for hf, ours in
            bert_weight_names(config, with_pooler=False).items()}


# DistilBERT's config.json names -> BertConfig's (LayerNorm eps is fixed at 1e-12 in both).
_DISTILBERT_FIELDS = {"vocab_size": "vocab_size", "dim": "hidden_size",
                      "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
                      "hidden_dim": "intermediate_size", "activation": "hidden_act",
                      "max_position_embeddings": "max_position_embeddings",
                      "dropout": "hidden_dropout_prob",
                      "attention_dropout": "attention_probs_dropout_prob",
                      "pad_token_id": "pad_token_id", "initializer_range": "initializer_range"}


def distilbert_config(data: dict[str, Any]) -> BertConfig:
    """A BERT without token types under DistilBERT's field names. Sinusoidal positions need
    nothing more: the checkpoint stores their table as the position embedding."""
    mapped = {ours: data[theirs] for theirs, ours in _DISTILBERT_FIELDS.items() if theirs in data}
    return BertConfig(**mapped, type_vocab_size=0, layer_norm_eps=1e-12)


def distilbert_weights(config: BertConfig) -> dict[str, Source]:
    """Our name -> the DistilBERT checkpoint tensor (``q_lin``, ``sa_layer_norm``, ``ffn.lin1``)."""
    table = {"embeddings.word.weight": Source("embeddings.word_embeddings.weight"),
             "embeddings.position.weight": Source("embeddings.position_embeddings.weight")}
    layer = {"attn.q_proj": "attention.q_lin", "attn.k_proj": "attention.k_lin",
             "attn.v_proj": "attention.v_lin", "attn.out_proj": "attention.out_lin",
             "attn_norm": "sa_layer_norm", "ffn_in": "ffn.lin1", "ffn_out": "ffn.lin2",
             "ffn_norm": "output_layer_norm"}
    for part in ("weight", "bias"):
        table[f"embeddings.norm.{part}"] = Source(f"embeddings.LayerNorm.{part}")
        for i in range(config.num_hidden_layers):
            table.update({f"layers.{i}.{ours}.{part}": Source(f"transformer.layer.{i}.{hf}.{part}")
                          for ours, hf in layer.items()})
    return table


# --- Marian (opus-mt translators) ---------------------------------------------------------------

def _row(tensor: Tensor) -> Tensor:
    return tensor.reshape(-1)  # final_logits_bias (1, V) -> (V,)


def _attention(ours: str, theirs: str) -> dict[str, Source]:
    return {f"{ours}.{proj}.{part}": Source(f"{theirs}.{hf}.{part}")
            for proj, hf in (("q_proj", "q_proj"), ("k_proj", "k_proj"), ("v_proj", "v_proj"),
                             ("out_proj", "out_proj")) for part in ("weight", "bias")}


def marian_weights(config: MarianConfig) -> dict[str, Source]:
    """Our name -> the Marian checkpoint tensor (``model.`` removed): one embedding
    (``shared``) or one per side (``encoder.embed_tokens``, ``decoder.embed_tokens``), see
    :attr:`~attnlab.models.marian.MarianConfig.one_embedding`."""
    one = config.one_embedding
    table = {"embedding.weight": Source("shared.weight" if one
                                        else "encoder.embed_tokens.weight"),
             "final_logits_bias": Source("final_logits_bias", _row)}
    if not one:
        table["target_embedding.weight"] = Source("decoder.embed_tokens.weight")
    if not config.tie_word_embeddings:
        table["output_projection.weight"] = Source("lm_head.weight")
    norms = {"attn_norm": "self_attn_layer_norm", "self_attn_norm": "self_attn_layer_norm",
             "cross_attn_norm": "encoder_attn_layer_norm", "ff_norm": "final_layer_norm",
             "ff.up": "fc1", "ff.down": "fc2"}
    for side, n in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        for i in range(n):
            ours, hf = f"{side}.layers.{i}", f"{side}.layers.{i}"
            if side == "encoder":
                table.update(_attention(f"{ours}.attn", f"{hf}.self_attn"))
                parts = ("attn_norm", "ff_norm", "ff.up", "ff.down")
            else:
                table.update(_attention(f"{ours}.self_attn", f"{hf}.self_attn"))
                table.update(_attention(f"{ours}.cross_attn", f"{hf}.encoder_attn"))
                parts = ("self_attn_norm", "cross_attn_norm", "ff_norm", "ff.up", "ff.down")
            table.update({f"{ours}.{part}.{p}": Source(f"{hf}.{norms[part]}.{p}")
                          for part in parts for p in ("weight", "bias")})
    return table


FAMILIES: dict[str, Family] = {
    "gpt2": Family("gpt2", GPT2Config.from_dict, GPT2LMHeadModel, gpt2_weights,
                   prefix="transformer.",
                   ignored=r"h\.\d+\.attn\.(bias|masked_bias)|lm_head\.weight", kind="decoder"),
    "llama": Family("llama", LlamaConfig.from_dict, LlamaForCausalLM, llama_weights,
                    prefix="model.", ignored=r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq"
                                             r"|lm_head\.weight", kind="decoder"),
    # The encoder only: a pooler or a masked-LM head in the file is left out.
    "roberta": Family("roberta", roberta_config, partial(BertModel, add_pooler=False),
                      roberta_weights, prefix="roberta.",
                      ignored=r"pooler\..*|lm_head\..*"
                              r"|embeddings\.(position_ids|token_type_ids)", kind="encoder"),
    "distilbert": Family("distilbert", distilbert_config, partial(BertModel, add_pooler=False),
                         distilbert_weights, prefix="distilbert.",
                         ignored=r"vocab_(transform|layer_norm|projector)\..*"
                                 r"|embeddings\.position_ids", kind="encoder"),
    # The sinusoid tables and the tied copies of the embeddings in some files are left out.
    "marian": Family("marian", MarianConfig.from_hf, MarianMTModel, marian_weights,
                     prefix="model.", ignored=r"(encoder|decoder)\.embed_positions\.weight"
                                              r"|(encoder|decoder)\.embed_tokens\.weight"
                                              r"|shared\.weight|lm_head\.weight",
                     kind="encoder-decoder"),
}


def read_config(folder: str | os.PathLike) -> tuple[Family, Any]:
    """The family and our config of a model folder, from its ``config.json``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"model folder not found: {folder} (expected a folder with "
                         f"config.json and {WEIGHTS_FILE})")
    path = folder / "config.json"
    if not path.is_file():
        raise InputError(f"{folder} has no config.json; a model folder in the Hugging Face "
                         f"layout holds config.json and {WEIGHTS_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path} is not valid JSON: {err}") from err
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type not in FAMILIES:
        raise InputError(f"{path}: model_type {model_type!r} is not supported; supported "
                         f"model types: {', '.join(sorted(FAMILIES))}")
    family = FAMILIES[model_type]
    return family, family.config_from_dict(data)


def load_family(folder: str | os.PathLike) -> nn.Module:
    """The model of a Hugging Face folder (``config.json`` + ``model.safetensors``), in
    evaluation mode, in float32 (call ``.double()`` etc. for another precision).

    Raises :class:`~attnlab.errors.InputError` for an unsupported ``model_type`` (naming the
    supported ones), a missing file, or a missing, unexpected or mis-shaped tensor.

    Example::

        >>> model = load_family("~/.cache/huggingface/hub/models--gpt2/snapshots/<hash>")
        >>> model(torch.tensor([[464, 3290]])).shape  # (B, L, V)
        torch.Size([1, 2, 50257])
    """
    folder = Path(folder).expanduser()
    family, config = read_config(folder)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        sharded = (folder / f"{WEIGHTS_FILE}.index.json").is_file()
        raise InputError(f"{folder} has no {WEIGHTS_FILE}" + (
            " (sharded checkpoints are not supported)" if sharded else
            " (only safetensors weights are read; pytorch_model.bin is never unpickled)"))
    model = family.model_class(config)
    model.load_state_dict(_renamed(path, family, config, model.state_dict()), strict=True)
    return model.eval()


def _renamed(path: Path, family: Family, config: Any, ours: dict[str, Tensor]
             ) -> dict[str, Tensor]:
    """The checkpoint's tensors under our names, checked against the table and our shapes."""
    state = {(k[len(family.prefix):] if k.startswith(family.prefix) else k): v
             for k, v in load_file(str(path)).items()}
    table = family.weights(config)
    wanted = {source.name for source in table.values()}
    missing = sorted(wanted - set(state))
    unexpected = sorted(k for k in set(state) - wanted if not re.fullmatch(family.ignored, k))
    if missing:
        raise InputError(f"{path}: missing weights for this {family.model_type} config: "
                         f"{', '.join(missing)}")
    if unexpected:
        raise InputError(f"{path}: unexpected tensors, not part of a {family.model_type} model "
                         f"with this config: {', '.join(unexpected)}")
    renamed = {}
    for name, source in table.items():
        tensor = source.take(state[source.name])
        if tensor.shape != ours[name].shape:
            raise InputError(f"{path}: tensor {source.name} gives shape {tuple(tensor.shape)}, "
                             f"but the config expects {tuple(ours[name].shape)} (for {name})")
        renamed[name] = tensor.to(ours[name].dtype)
    return renamed
