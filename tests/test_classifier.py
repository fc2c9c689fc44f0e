"""TextClassifier: shapes, padding invariance, parameter counts, masks, config and errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from attnlab.attention.multihead import MultiHeadAttention
from attnlab.models.classifier import ClassifierConfig, ClassifierOutput, TextClassifier

POSITIONAL = ["none", "sinusoidal", "learned", "rotary"]


def _config(**kw) -> ClassifierConfig:
    base = dict(vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=40)
    return ClassifierConfig(**{**base, **kw})


def _batch(B=3, T=9, vocab=50):
    input_ids = torch.randint(4, vocab, (B, T))
    lengths = torch.tensor([T, T - 4, 1][:B])
    attention_mask = (torch.arange(T) < lengths[:, None]).long()  # (B, T)
    return input_ids.masked_fill(attention_mask == 0, 0), attention_mask


@pytest.mark.parametrize("positional", POSITIONAL)
@pytest.mark.parametrize("pooling", ["mean", "max", "attention", "cls"])
def test_shapes_and_loss(positional, pooling):
    model = TextClassifier(_config(positional=positional, pooling=pooling, n_classes=3))
    ids, mask = _batch()
    labels = torch.tensor([0, 2, 1])
    out = model(ids, mask, labels)
    assert isinstance(out, ClassifierOutput)
    assert out.logits.shape == (3, 3) and out.loss.shape == ()
    expected = nn.functional.cross_entropy(out.logits, labels)
    torch.testing.assert_close(out.loss, expected)
    assert model(ids, mask).loss is None
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters()
               if not n.startswith("embedding")) and torch.isfinite(out.loss)


@pytest.mark.parametrize("positional", POSITIONAL)
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "max", "attention", "cls"])
def test_padding_does_not_change_logits(positional, norm_first, pooling):
    model = TextClassifier(_config(positional=positional, norm_first=norm_first,
                                   pooling=pooling)).eval()
    ids, mask = _batch()
    padded_ids = torch.cat([ids, torch.zeros(3, 7, dtype=torch.long)], dim=1)  # (B, T + 7)
    padded_mask = torch.cat([mask, torch.zeros(3, 7, dtype=torch.long)], dim=1)
    # Garbage in padded positions must not matter either.
    padded_ids[:, -7:] = torch.randint(4, 50, (3, 7))
    full = model(ids, mask).logits
    torch.testing.assert_close(model(padded_ids, padded_mask).logits, full, atol=1e-5, rtol=0)
    # Each sequence alone, unpadded, gives the same logits as inside the batch.
    for i in range(3):
        n = int(mask[i].sum())
        alone = model(ids[i:i + 1, :n], mask[i:i + 1, :n]).logits
        torch.testing.assert_close(alone, full[i:i + 1], atol=1e-5, rtol=0)


def test_mask_matters_without_it_padding_leaks():
    model = TextClassifier(_config()).eval()
    ids, mask = _batch()
    assert not torch.allclose(model(ids, mask).logits[1:], model(ids).logits[1:], atol=1e-4)
    torch.testing.assert_close(model(ids[:1], mask[:1]).logits, model(ids[:1]).logits)


@pytest.mark.parametrize("positional", POSITIONAL)
def test_one_head_and_many_heads_have_equal_parameter_counts(positional):
    counts = {h: TextClassifier(_config(n_heads=h, positional=positional)).num_parameters()
              for h in (1, 2, 4, 8)}
    assert len(set(counts.values())) == 1, counts


def test_parameter_count_by_hand():
    c = _config(positional="learned")
    V, D, F, L, C, T = c.vocab_size, c.d_model, c.d_ff, c.n_layers, c.n_classes, c.max_len
    per_layer = 4 * (D * D + D) + (D * F + F) + (F * D + D) + 2 * 2 * D
    expected = V * D + T * D + L * per_layer + 2 * D + D * C + C
    assert TextClassifier(c).num_parameters() == expected


def test_uses_attnlab_attention_only():
    model = TextClassifier(_config())
    kinds = {type(m) for m in model.modules()}
    assert MultiHeadAttention in kinds
    assert not kinds & {nn.MultiheadAttention, nn.TransformerEncoder, nn.TransformerEncoderLayer}


@pytest.mark.parametrize("std", [0.02, 1.0])
def test_embedding_init_std(std):
    torch.manual_seed(0)
    model = TextClassifier(_config(vocab_size=2000, d_model=64, n_heads=4, embed_init_std=std))
    rows = model.embedding.weight.detach()[1:]  # all but [PAD]
    assert (model.embedding.weight[0] == 0).all()
    assert abs(float(rows.std()) - std) < 0.03 * std  # 127,936 draws: sampling error ~0.2%
    assert abs(float(rows.mean())) < 0.03 * std


def test_pad_embedding_is_zero_and_position_order_matters():
    model = TextClassifier(_config(positional="learned", dropout=0.0)).eval()
    assert (model.embedding.weight[0] == 0).all()
    with torch.no_grad():
        model.positions.embedding.weight.normal_()
    ids = torch.tensor([[5, 6, 7, 8]])
    assert not torch.allclose(model(ids).logits, model(ids.flip(1)).logits)
    bag = TextClassifier(_config(positional="none", dropout=0.0)).eval()
    # Without positions, attention and mean pooling are permutation invariant.
    torch.testing.assert_close(bag(ids).logits, bag(ids.flip(1)).logits, atol=1e-5, rtol=0)


def test_word_dropout_replaces_only_words_and_only_in_training():
    model = TextClassifier(_config(word_dropout=0.5))
    ids = torch.tensor([[2] + list(range(4, 50)) * 20 + [3]])  # (1, T): [CLS] words [SEP]
    dropped = model.drop_words(ids)
    words = ids >= 4
    share = (dropped[words] == 1).float().mean().item()
    assert 0.45 < share < 0.55, share
    assert (dropped[~words] == ids[~words]).all()
    assert ((dropped == ids) | (dropped == 1)).all()
    # Evaluation sees every word: the logits of the same weights without word dropout.
    dropping = TextClassifier(_config(word_dropout=0.5, dropout=0.0))
    plain = TextClassifier(_config(word_dropout=0.0, dropout=0.0))
    plain.load_state_dict(dropping.state_dict())
    few = torch.tensor([[2] + list(range(4, 30)) + [3]])
    dropping.eval(), plain.eval()
    torch.testing.assert_close(dropping(few).logits, plain(few).logits, atol=0, rtol=0)
    dropping.train(), plain.train()  # ... while training replaces some words
    assert not torch.equal(dropping(few).logits, plain(few).logits)


def test_config_round_trip_through_json():
    c = _config(positional="rotary", pooling="cls", norm_first=False, word_dropout=0.1)
    again = ClassifierConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c
    with pytest.raises(ValueError, match="unknown ClassifierConfig fields"):
        ClassifierConfig.from_dict({**c.to_dict(), "n_head": 3})


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"d_model": 30, "n_heads": 4}, "divisible"),
        ({"positional": "alibi"}, "positional must be one of"),
        ({"pooling": "sum"}, "pooling must be one of"),
        ({"dropout": 1.0}, "dropout"),
        ({"n_layers": 0}, "n_layers"),
        ({"n_classes": 1}, "n_classes"),
        ({"d_model": 12, "n_heads": 4, "positional": "rotary"}, "even head size"),
        ({"pad_token_id": 50}, "pad_token_id"),
        ({"word_dropout": -0.1}, "word_dropout"),
        ({"embed_init_std": 0.0}, "embed_init_std"),
        ({"n_special_tokens": 51}, "n_special_tokens"),
    ],
)
def test_config_errors(kw, words):
    with pytest.raises(ValueError, match=words):
        _config(**kw)


def test_forward_errors():
    model = TextClassifier(_config())
    ids, mask = _batch()
    with pytest.raises(TypeError, match="long tensor"):
        model(ids.float())
    with pytest.raises(ValueError, match="max_len=40"):
        model(torch.ones(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(B, T\)"):
        model(ids, mask[:, :-1])
    with pytest.raises(ValueError, match="without any token"):
        model(ids, torch.zeros_like(mask))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        model(ids, mask, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="ClassifierConfig"):
        TextClassifier({"vocab_size": 10})


def test_memorises_a_slice_of_sst2(data_dir):
    from attnlab.text import LengthGroupedBatches, TextTokenizer, load_split

    train = load_split(data_dir / "sst2", "train")
    texts, labels = train.texts[:128], train.labels[:128]
    tok = TextTokenizer.train(texts, vocab_size=2000)
    batches = LengthGroupedBatches(tok.encode(texts), labels, 32, seed=0)
    model = TextClassifier(_config(vocab_size=tok.vocab_size, max_len=64, dropout=0.0,
                                   word_dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for epoch in range(12):
        batches.set_epoch(epoch)
        total = 0.0
        for batch in batches:
            loss = model(**batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() / len(batches)
        first = total if first is None else first
    assert first > 0.6 and total < 0.1, (first, total)


def test_sinusoidal_positions_are_scaled_to_the_embeddings():
    """At its natural amplitude the table would drown out embeddings that start at std 0.02."""
    config = ClassifierConfig(vocab_size=50, d_model=32, n_heads=4, positional="sinusoidal",
                              embed_init_std=0.02)
    table = TextClassifier(config).positions.pe  # (max_len, D)
    rms = table.pow(2).mean().sqrt().item()
    assert abs(rms - 0.02) < 0.002


def test_pooling_by_hand():
    hidden = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [9.0, 9.0]]])  # (1, 3, 2); token 3 padding
    mask = torch.tensor([[1, 1, 0]])
    pooled = {}
    for pooling in ("mean", "max", "attention", "cls"):
        model = TextClassifier(_config(d_model=2, n_heads=1, pooling=pooling))
        if pooling == "attention":
            nn.init.zeros_(model.pool_scores.bias)
            with torch.no_grad():
                model.pool_scores.weight.copy_(torch.tensor([[math.log(3.0), 0.0]]))
        pooled[pooling] = model.pool(hidden, mask)
    torch.testing.assert_close(pooled["mean"], torch.tensor([[2.0, -1.0]]))
    torch.testing.assert_close(pooled["max"], torch.tensor([[3.0, 0.0]]))
    # scores log(3)*1 and log(3)*3: softmax weights 3/30 and 27/30
    torch.testing.assert_close(pooled["attention"], torch.tensor([[0.1 * 1 + 0.9 * 3,
                                                                    0.1 * -2 + 0.9 * 0]]))
    torch.testing.assert_close(pooled["cls"], torch.tensor([[1.0, -2.0]]))
