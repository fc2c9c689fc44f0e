"""BERT on attnlab's attention against the reference implementations.

Oracles (test-only, loaded from the installed model directory, offline): ``transformers.BertModel``
with ``attn_implementation="eager"`` for hidden states and attention probabilities, and
``sentence_transformers.SentenceTransformer`` for sentence embeddings. Small checkpoints for the
loading errors are written by ``transformers`` itself, so the weight names are the real ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # the references must never reach the hub

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from attnlab import load_pretrained
from attnlab.io import load_bert_classifier, load_pretrained_classifier, save_bert_classifier
from attnlab.io.pretrained import KNOWN_MODELS, resolve_model_dir
from attnlab.models import BertConfig, BertModel, mean_pool
from attnlab.models.bert_classifier import BertClassifierConfig, BertForSequenceClassification

TOL = 1e-5
NAME = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def model_dir():
    return resolve_model_dir(NAME)


@pytest.fixture(scope="module")
def ours():
    return load_pretrained(NAME)


@pytest.fixture(scope="module")
def dev_texts(data_dir) -> list[str]:
    lines = (data_dir / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t", 1)[1] for line in lines]


@pytest.fixture(scope="module")
def mixed_batch(dev_texts) -> list[str]:
    """24 dev sentences from the shortest to the longest, so most rows are padded."""
    by_length = sorted(dev_texts, key=len)
    step = (len(by_length) - 1) / 23
    return [by_length[round(i * step)] for i in range(24)]


@pytest.fixture(scope="module")
def hf_eager(model_dir):
    from transformers import BertModel as HFBertModel

    return HFBertModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()


# --- numbers against transformers -----------------------------------------------------------


@pytest.mark.parametrize(("output_attentions", "skip_padding"),
                         [(False, False), (True, False), (False, True), (True, True)],
                         ids=["fused", "explicit", "fused-skip-padding", "explicit-skip-padding"])
def test_every_layer_matches_transformers(ours, hf_eager, mixed_batch, output_attentions,
                                          skip_padding):
    """Hidden states of the embeddings and of every layer at real-token positions, every layer's
    attention probabilities at real-token query rows (all key columns), and the pooler output.

    Padded query positions are excluded: they attend to the real tokens in both models and are
    ignored downstream, but float rounding drifts more there (their states are large). With
    ``skip_padding`` they are zeros after every layer."""
    batch = ours.tokenizer(mixed_batch)
    assert (batch.attention_mask == 0).any(), "the batch must contain padding"
    with torch.no_grad():
        got = ours(batch.input_ids, batch.attention_mask, batch.token_type_ids,
                   output_hidden_states=True, output_attentions=output_attentions,
                   skip_padding=skip_padding)
        want = hf_eager(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                        token_type_ids=batch.token_type_ids, output_hidden_states=True,
                        output_attentions=True)
    real = batch.attention_mask.bool()  # (B, L)
    assert len(got.hidden_states) == len(want.hidden_states) == ours.config.num_hidden_layers + 1
    for i, (g, w) in enumerate(zip(got.hidden_states, want.hidden_states, strict=True)):
        err = (g - w).abs()[real].max().item()
        assert err <= TOL, f"hidden_states[{i}] differs by {err}"
    assert torch.equal(got.last_hidden_state, got.hidden_states[-1])
    padded_states = torch.stack(got.hidden_states[1:])[:, ~real]  # (N, padded tokens, D)
    assert (padded_states == 0).all() == skip_padding
    assert (got.pooler_output - want.pooler_output).abs().max().item() <= TOL
    if not output_attentions:
        assert got.attentions is None
        return
    assert len(got.attentions) == len(want.attentions) == ours.config.num_hidden_layers
    for i, (g, w) in enumerate(zip(got.attentions, want.attentions, strict=True)):
        assert g.shape == w.shape == (*batch.input_ids.shape[:1], ours.config.num_attention_heads,
                                      *batch.input_ids.shape[1:2] * 2)
        err = (g - w).abs()[real[:, None, :, None].expand_as(g)].max().item()
        assert err <= TOL, f"attentions[{i}] differs by {err}"
        assert (g.masked_select(~real[:, None, None, :]) == 0).all(), "padding got attention"


def test_skip_padding_gives_the_same_gradients():
    """Training through the real-tokens-only path: the same loss and parameter gradients (float64,
    a small random encoder, no dropout)."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = BertModel(config, add_pooler=False).double()
    ids = torch.randint(1, 50, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    grads = []
    for skip in (False, True):
        model.zero_grad()
        hidden = model(ids, mask, skip_padding=skip).last_hidden_state  # (B, L, D)
        loss = (mean_pool(hidden, mask) ** 2).sum()
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = grads
    assert torch.allclose(loss_a, loss_b, rtol=0, atol=1e-12)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(grads_a, grads_b,
                                                                        strict=True))


def test_head_mask_removes_the_head_output(ours, mixed_batch):
    """Masking head h of layer i equals zeroing the out_proj columns that read head h."""
    batch = ours.tokenizer(mixed_batch[:6])
    N, H = ours.config.num_hidden_layers, ours.config.num_attention_heads
    d_k = ours.config.hidden_size // H
    head_mask = torch.ones(N, H)
    head_mask[2, 5] = 0
    pruned = BertModel(ours.config)
    pruned.load_state_dict(ours.bert.state_dict())
    with torch.no_grad():
        pruned.layers[2].attn.out_proj.weight[:, 5 * d_k:6 * d_k] = 0
        got = ours(batch.input_ids, batch.attention_mask, head_mask=head_mask).last_hidden_state
        want = pruned.eval()(batch.input_ids, batch.attention_mask).last_hidden_state
        plain = ours(batch.input_ids, batch.attention_mask).last_hidden_state
    assert (got - want).abs().max().item() <= TOL
    assert (got - plain).abs().max().item() > 1e-3  # the head mattered


# --- sentence embeddings against sentence-transformers ------------------------------------


@pytest.fixture(scope="module")
def sentence_transformer(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


def _check_encode(ours, sentence_transformer, texts):
    got = ours.encode(texts, batch_size=32)
    want = torch.from_numpy(sentence_transformer.encode(texts, batch_size=32))
    assert got.shape == want.shape == (len(texts), ours.config.hidden_size)
    assert got.dtype == torch.float32
    assert (got - want).abs().max().item() <= TOL


def test_encode_matches_sentence_transformers(ours, sentence_transformer, dev_texts):
    _check_encode(ours, sentence_transformer, dev_texts[:64])


@pytest.mark.slow
def test_encode_matches_sentence_transformers_on_all_dev(ours, sentence_transformer, dev_texts):
    _check_encode(ours, sentence_transformer, dev_texts)


def test_encode_keeps_input_order_and_batching_does_not_matter(ours, dev_texts):
    texts = dev_texts[100:140]
    forward = ours.encode(texts, batch_size=7)
    backward = ours.encode(texts[::-1], batch_size=40)
    assert (forward - backward.flip(0)).abs().max().item() <= TOL
    single = ours.encode(texts[3])
    assert single.shape == (ours.config.hidden_size,)
    assert (single - forward[3]).abs().max().item() <= TOL


def test_encode_is_mean_pooling_then_l2(ours, dev_texts):
    texts = dev_texts[:5]
    batch = ours.tokenizer(texts)
    with torch.no_grad():
        hidden = ours(batch.input_ids, batch.attention_mask).last_hidden_state  # (B, L, D)
    mask = batch.attention_mask[..., None].float()  # (B, L, 1)
    mean = (hidden * mask).sum(1) / mask.sum(1)  # (B, D)
    raw = ours.encode(texts, normalize=False)
    assert (raw - mean).abs().max().item() <= TOL
    assert (raw.norm(dim=-1) - 1).abs().min().item() > 1e-3  # not normalised
    assert (ours.encode(texts) - F.normalize(mean, dim=-1)).abs().max().item() <= TOL
    assert (mean_pool(hidden, batch.attention_mask) - mean).abs().max().item() <= TOL


def test_encode_bfloat16_is_close_to_float32(ours, dev_texts):
    texts = dev_texts[:64]
    full = ours.encode(texts)
    half = ours.encode(texts, dtype=torch.bfloat16)
    assert half.dtype == torch.float32
    assert F.cosine_similarity(full, half, dim=-1).min().item() >= 0.999
    assert next(ours.bert.parameters()).dtype == torch.float32  # the model itself is untouched


def test_encode_rejects_bad_arguments(ours):
    with pytest.raises(ValueError, match="batch_size"):
        ours.encode(["a"], batch_size=0)
    with pytest.raises(TypeError, match="strings"):
        ours.encode(["a", 3])
    with pytest.raises(TypeError, match="dtype"):
        ours.encode(["a"], dtype=torch.int64)


def test_tokenizer_truncates_and_pads(ours):
    tok = ours.tokenizer
    long_text = "word " * 1000
    batch = tok([long_text, "short"])
    assert batch.input_ids.shape == (2, tok.max_length)
    assert batch.attention_mask[1].sum() == 3  # [CLS] short [SEP]
    assert (batch.input_ids[1, 3:] == tok.pad_token_id).all()


# --- loading and its errors ---------------------------------------------------------------

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@pytest.fixture
def tiny_dir(tmp_path, model_dir):
    """A small random BERT saved by transformers, with the real tokenizer beside it."""
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel as HFBertModel

    torch.manual_seed(1)
    hf = HFBertModel(HFBertConfig(vocab_size=30522, **TINY)).eval()
    folder = tmp_path / "tiny"
    hf.save_pretrained(folder, safe_serialization=True)
    shutil.copy(model_dir / "tokenizer.json", folder / "tokenizer.json")
    return folder, hf


def _rewrite_weights(folder, edit):
    path = folder / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": "pt"})


def test_tiny_checkpoint_loads_and_matches(tiny_dir):
    folder, hf = tiny_dir
    model = load_pretrained(folder)
    ids = model.tokenizer(["a fine film", "dull"])
    with torch.no_grad():
        got = model(ids.input_ids, ids.attention_mask).last_hidden_state
        want = hf(input_ids=ids.input_ids, attention_mask=ids.attention_mask).last_hidden_state
    assert got.shape[-1] == TINY["hidden_size"]
    real = ids.attention_mask.bool()
    assert (got - want).abs()[real].max().item() <= TOL


def test_bert_prefix_is_accepted(tiny_dir):
    folder, _ = tiny_dir
    plain = load_pretrained(folder).bert.state_dict()
    _rewrite_weights(folder, lambda s: s.update({f"bert.{k}": s.pop(k) for k in list(s)}))
    prefixed = load_pretrained(folder).bert.state_dict()
    assert all(torch.equal(plain[k], prefixed[k]) for k in plain)


def test_missing_tensor_is_named(tiny_dir):
    folder, _ = tiny_dir
    gone = "encoder.layer.1.attention.self.key.weight"
    _rewrite_weights(folder, lambda s: s.pop(gone))
    with pytest.raises(ValueError, match=rf"missing.*{re.escape(gone)}"):
        load_pretrained(folder)


def test_unexpected_tensor_is_named(tiny_dir):
    folder, _ = tiny_dir
    _rewrite_weights(folder, lambda s: s.update({"cls.predictions.bias": torch.zeros(30522)}))
    with pytest.raises(ValueError, match=r"unexpected.*cls\.predictions\.bias"):
        load_pretrained(folder)


def test_misshaped_tensor_is_named(tiny_dir):
    folder, _ = tiny_dir
    bad = "encoder.layer.0.attention.self.query.weight"
    _rewrite_weights(folder, lambda s: s.update({bad: torch.zeros(32, 31)}))
    with pytest.raises(ValueError, match=rf"{re.escape(bad)} has shape \(32, 31\).*\(32, 32\)"):
        load_pretrained(folder)


def test_missing_file_is_named(tiny_dir):
    folder, _ = tiny_dir
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_pretrained(folder)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="all-MiniLM-L6-v2.*directory"):
        load_pretrained("no-such-model")


def test_missing_package_says_how_to_install(monkeypatch):
    package = KNOWN_MODELS[NAME]
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    with pytest.raises(ImportError, match=r"pip install attnlab\[pretrained\]"):
        load_pretrained(NAME)


@pytest.mark.parametrize("key, value", [
    ("position_embedding_type", "relative_key"),
    ("hidden_act", "relu"),
    ("is_decoder", True),
    ("num_attention_heads", 5),
])
def test_unsupported_config_is_an_error(model_dir, key, value):
    data = json.loads((model_dir / "config.json").read_text())
    data[key] = value
    with pytest.raises(ValueError, match=key):
        BertConfig.from_dict(data)


def test_config_reads_the_json(model_dir):
    data = json.loads((model_dir / "config.json").read_text())
    config = BertConfig.from_json(model_dir / "config.json")
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "max_position_embeddings", "layer_norm_eps"):
        assert getattr(config, field) == data[field]


def test_forward_rejects_bad_inputs(ours):
    ids = torch.tensor([[101, 2000, 102]])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ours(torch.ones(1, ours.config.max_position_embeddings + 1, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        ours(ids.float())
    with pytest.raises(ValueError, match="attention_mask"):
        ours(ids, torch.ones(1, 4))
    with pytest.raises(ValueError, match="vocab_size"):
        ours(torch.tensor([[101, ours.config.vocab_size]]))
    with pytest.raises(ValueError, match="head_mask"):
        ours(ids, head_mask=torch.ones(3))


# --- classification head ------------------------------------------------------------------


def test_classifier_trains_and_round_trips(tmp_path, dev_texts):
    model = load_pretrained_classifier(NAME, num_labels=2, dropout=0.0)
    texts = dev_texts[:8]
    batch = model.tokenizer(texts)
    labels = torch.tensor([0, 1] * 4)
    out = model(batch.input_ids, batch.attention_mask, labels=labels)
    assert out.logits.shape == (8, 2)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = out.loss.item()
    for _ in range(5):
        optimizer.zero_grad()
        loss = model(batch.input_ids, batch.attention_mask, labels=labels).loss
        loss.backward()
        assert model.bert.layers[0].attn.q_proj.weight.grad.abs().sum() > 0
        optimizer.step()
    assert loss.item() < first  # it fits the batch

    model.eval()
    save_bert_classifier(model, tmp_path / "clf")
    loaded = load_bert_classifier(tmp_path / "clf")
    with torch.no_grad():
        want = model(batch.input_ids, batch.attention_mask).logits
        got = loaded(batch.input_ids, batch.attention_mask).logits
    assert torch.equal(got, want)
    assert loaded.head == model.head
    assert torch.equal(loaded.tokenizer(texts).input_ids, batch.input_ids)


def test_classifier_pooler_head_and_label_errors(ours):
    model = BertForSequenceClassification(ours.bert, BertClassifierConfig(3, "pooler", 0.0))
    batch = ours.tokenizer(["a fine film", "dull"])
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask)
        pooled = ours(batch.input_ids, batch.attention_mask).pooler_output
    assert out.loss is None
    assert torch.allclose(out.logits, model.classifier(pooled))
    with pytest.raises(ValueError, match="labels"):
        model(batch.input_ids, batch.attention_mask, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="pooling"):
        BertClassifierConfig(pooling="max")
