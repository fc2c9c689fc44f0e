"""Encoder families (RoBERTa, DistilBERT) loaded from a Hugging Face folder onto attnlab's BERT,
against ``transformers`` itself.

Each family is a tiny random model built and saved by ``transformers`` (``save_pretrained``,
safetensors), so the weight names and ``config.json`` are the real ones: a base model (RoBERTa's
with its pooler) and a masked-LM model (the base model nested under its prefix, beside an LM
head). attnlab loads the folder with :func:`attnlab.io.families.load_family`. Oracles: the last
hidden states of the same ``transformers`` encoder and its ``output_attentions=True`` (eager)
weights.
"""

from __future__ import annotations

import json
import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"  # the references must never reach the hub

import pytest
import torch

from attnlab.errors import InputError
from attnlab.inspect import capture
from attnlab.io.families import load_family
from attnlab.models.bert import BertConfig, BertModel

transformers = pytest.importorskip("transformers")

VOCAB, PAD = 100, 1  # RoBERTa's <pad> is 1, so its positions start at 2
COMMON = dict(vocab_size=VOCAB, pad_token_id=PAD, initializer_range=0.1)
# initializer_range 0.1 (not 0.02): attention far from uniform and hidden states that differ
# from token to token, so the comparisons can fail.
ROBERTA = dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=96,
               max_position_embeddings=12 + PAD + 1, type_vocab_size=1, **COMMON)
DISTILBERT = dict(n_layers=2, n_heads=4, dim=64, hidden_dim=96, max_position_embeddings=12,
                  **COMMON)
MODELS = {  # name -> (the transformers class that writes the folder, its config)
    "roberta": ("RobertaModel", lambda: transformers.RobertaConfig(**ROBERTA)),
    "roberta-mlm": ("RobertaForMaskedLM", lambda: transformers.RobertaConfig(**ROBERTA)),
    "distilbert": ("DistilBertModel", lambda: transformers.DistilBertConfig(**DISTILBERT)),
    "distilbert-sinusoidal-mlm": ("DistilBertForMaskedLM", lambda: transformers.DistilBertConfig(
        sinusoidal_pos_embds=True, **DISTILBERT)),
}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One saved folder per model, and the transformers encoder in it (float32, eval, eager)."""
    made = {}
    for name, (cls, make) in MODELS.items():
        torch.manual_seed(0)
        hf = getattr(transformers, cls)(make()).eval()
        folder = tmp_path_factory.mktemp(name)
        hf.save_pretrained(folder, safe_serialization=True)
        made[name] = (folder, cls)
    return made


def _pair(folders, name, dtype):
    """Ours and transformers' encoder of one folder, in ``dtype``."""
    folder, cls = folders[name]
    hf = getattr(transformers, cls).from_pretrained(folder, attn_implementation="eager",
                                                    dtype=dtype).eval()
    return load_family(folder).to(dtype), hf.base_model


def _batch(padding: str):
    """Five rows of ten ids (never the pad id): full, and padded to lengths 7, 4, 9, 1."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(PAD + 2, VOCAB, (5, 10), generator=g)
    mask = torch.ones_like(ids)
    for row, length in enumerate((10, 7, 4, 9, 1)):
        pad = slice(length, None) if padding == "right" else slice(0, 10 - length)
        mask[row, pad] = 0
    return ids.masked_fill(mask == 0, PAD), mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_last_hidden_states_match_transformers(folders, name, padding, dtype):
    """The last hidden states at every real position, with padding and attention_mask.
    RoBERTa's positions count real tokens from pad + 1 in both models, so left padding moves
    nothing; DistilBERT's are 0..L-1 in both."""
    ours, hf = _pair(folders, name, dtype)
    assert isinstance(ours, BertModel) and ours.pooler is None
    ids, mask = _batch(padding)
    with torch.no_grad():
        got = ours(ids, mask).last_hidden_state  # (B, L, D)
        want = hf(ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert got.dtype == want.dtype == dtype and got.shape == want.shape == (5, 10, 64)
    assert want[real].std(0).mean() > 0.3, "hidden states too alike to test anything"
    err = (got - want).abs()[real].max().item()
    assert err <= TOL[dtype], f"{name} {padding} {dtype}: hidden states differ by {err}"


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_heads_attention_matches_transformers(folders, name, padding):
    """Every layer's and head's weights, captured on our hook points, against
    ``output_attentions=True`` (eager), at real query rows; padding keys get none."""
    ours, hf = _pair(folders, name, torch.float32)
    ids, mask = _batch(padding)
    with torch.no_grad(), capture(ours) as cap:
        ours(ids, mask)
    with torch.no_grad():
        want = torch.stack(hf(ids, attention_mask=mask, output_attentions=True).attentions)
    got = cap.stack()  # (N, B, H, L, L)
    assert got.shape == want.shape == (2, 5, 4, 10, 10)
    real_rows = mask.bool()[None, :, None, :, None].expand_as(got)
    err = (got - want).abs()[real_rows].max().item()
    assert err <= 1e-6, f"{name} {padding}: attention differs by {err}"
    assert (got.masked_select(~mask.bool()[None, :, None, None, :]) == 0).all()
    assert want[real_rows].max() > 0.9, "attention too uniform to test anything"


def test_roberta_positions_start_after_padding(folders):
    """A real token at column j of a row padded on the left by k sits at position
    pad + 1 + (j - k): the same row unpadded gives the same states; at most 12 real tokens."""
    ours, _ = _pair(folders, "roberta", torch.float64)
    ids, mask = _batch("left")
    with torch.no_grad():
        padded = ours(ids[2:3], mask[2:3]).last_hidden_state[0, 6:]  # (4, D)
        alone = ours(ids[2:3, 6:]).last_hidden_state[0]  # (4, D)
        assert (padded - alone).abs().max() <= 1e-10
        with pytest.raises(ValueError, match=r"=14 less pad_token_id \+ 1 = 12 positions"):
            ours(torch.full((1, 13), PAD + 2))
        ours(torch.full((1, 12), PAD + 2))


def test_distilbert_sinusoidal_table_comes_from_the_file(folders):
    """The sinusoidal positions are the checkpoint's position embedding: sin at even and cos at
    odd columns of pos / 10000^(2i/D), written out here by hand."""
    model = load_family(folders["distilbert-sinusoidal-mlm"][0])
    D = 64
    want = torch.tensor([[pos / 10000 ** (2 * (j // 2) / D) for j in range(D)]
                         for pos in range(12)], dtype=torch.float64)
    want[:, 0::2], want[:, 1::2] = want[:, 0::2].sin(), want[:, 1::2].cos()
    assert (model.embeddings.position.weight.double() - want).abs().max() <= 1e-6
    assert model.embeddings.token_type is None and model.config.type_vocab_size == 0
    with pytest.raises(ValueError, match="type_vocab_size=0"):
        model(torch.tensor([[5, 6]]), token_type_ids=torch.zeros(1, 2, dtype=torch.long))


@pytest.mark.parametrize(("name", "key", "value", "message"), [
    ("distilbert", "activation", "relu", "hidden_act must be 'gelu'"),
    ("roberta", "position_embedding_type", "relative_key", "position_embedding_type"),
])
def test_unsupported_encoder_configs_are_named(folders, tmp_path, name, key, value, message):
    """A config.json feature we do not implement is an error naming it, not another model."""
    folder, _ = folders[name]
    data = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**data, key: value}))
    shutil.copy(folder / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(InputError, match=message):
        load_family(tmp_path)


def test_bert_defaults_keep_positions_and_token_types():
    """Backward compatibility: a plain BertConfig still counts positions 0..L-1 and adds
    token types (the MiniLM checks in test_bert.py rest on this)."""
    config = BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    model = BertModel(config).eval()
    assert model.embeddings.token_type is not None and model.embeddings.pad_token_id is None
    assert model.config.max_length == model.config.max_position_embeddings == 16
    ids = torch.tensor([[3, 0, 4]])  # a [PAD] id mid-row is still at position 1
    with torch.no_grad():
        x = model.embeddings(ids, torch.zeros_like(ids))
        emb = model.embeddings
        raw = emb.word.weight[ids[0]] + emb.position.weight[:3] + emb.token_type.weight[0]
        assert (x[0] - emb.norm(raw)).abs().max() <= 1e-6

