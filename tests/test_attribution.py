"""Attributions of an encoder classifier's decision, each method against an independent
reference: captum's LayerIntegratedGradients, autograd by hand, the attention layer written out,
a slow value-zeroing loop from the paper's definition, deletion by hand.

The models are tiny, in float64, trained for 5 full-batch Adam steps on eight phrases (so that
their decisions move with the words, with probabilities of 0.5-0.9 as a real model's, not
saturated): a TextClassifier (pre-norm; sinusoidal positions added to unit-scale word vectors)
and a BertForSequenceClassification (post-norm, mean pooling, layers that return tuples).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.errors import InputError
from attnlab.inspect import (
    METHODS,
    Attribution,
    Subject,
    attribute,
    attribution_methods,
    load_subject,
)
from attnlab.inspect.attribution_methods import gauss_legendre
from attnlab.models.bert import BertConfig, BertModel
from attnlab.models.bert_classifier import BertClassifierConfig, BertForSequenceClassification
from attnlab.models.classifier import ClassifierConfig, TextClassifier
from attnlab.text import TextTokenizer
from tiny_run import LABELS as CLASSES
from tiny_run import TEXTS, make_tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = ["negative", "positive"]
SENTENCES = ["a good film", "dull , boring and long", "the best movie of the year i loved"]


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(TEXTS, vocab_size=64, kind="word", max_length=32)


def text_classifier(tokenizer, pooling: str = "cls", seed: int = 0) -> Subject:
    torch.manual_seed(seed)
    config = ClassifierConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=4,
                              n_layers=2, d_ff=32, max_len=32, pooling=pooling, dropout=0.0,
                              positional="sinusoidal", embed_init_std=1.0, word_dropout=0.0)
    subject = Subject(TextClassifier(config).double(), tokenizer, LABELS, pooling,
                      f"classifier-{pooling}")
    return trained(subject)


def bert_classifier(tokenizer, seed: int = 0) -> Subject:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=32, max_position_embeddings=32,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        initializer_range=0.5)
    bert = BertModel(config, add_pooler=False)
    bert.init_weights()
    model = BertForSequenceClassification(bert, BertClassifierConfig(dropout=0.0))
    return trained(Subject(model.double(), tokenizer, LABELS, "mean", "bert"))


def trained(subject: Subject, steps: int = 5) -> Subject:
    """``subject`` after ``steps`` full-batch Adam steps on the eight phrases, in eval mode."""
    enc = subject.encode(TEXTS)
    labels = torch.tensor(CLASSES)
    optimizer = torch.optim.Adam(subject.model.parameters(), lr=1e-2)
    subject.model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(subject.logits(enc.input_ids, enc.attention_mask), labels).backward()
        optimizer.step()
    subject.model.eval()
    return subject


SUBJECTS = {"classifier-cls": lambda t: text_classifier(t, "cls"),
            "classifier-mean": lambda t: text_classifier(t, "mean"),
            "bert": bert_classifier}


@pytest.fixture(params=list(SUBJECTS))
def subject(request, tokenizer) -> Subject:
    return SUBJECTS[request.param](tokenizer)


def inputs(subject: Subject, text: str):
    enc = subject.encode([text])
    return enc.input_ids, enc.attention_mask, enc.special_mask[0].bool()


def log_probs(subject: Subject, ids, mask):
    out = subject.model(ids, mask)
    return torch.log_softmax(getattr(out, "logits", out), -1)  # (B, C)


# --- integrated gradients --------------------------------------------------------------------

@pytest.mark.parametrize("baseline", ["pad", "zero"])
def test_integrated_gradients_equal_captum_layer_integrated_gradients(subject, baseline):
    from captum.attr import LayerIntegratedGradients

    embedding = subject.model.get_input_embeddings()
    if baseline == "zero":  # captum's baseline is ids: [PAD]'s row, made zero, gives zeros
        pad = subject.tokenizer.pad_token_id
        with torch.no_grad():
            embedding.weight[pad] = torch.randn(embedding.weight.shape[1], dtype=torch.float64)
    for text in SENTENCES:
        ours = attribute(subject, text, method="integrated_gradients", baseline=baseline)[0]
        ids, mask, special = inputs(subject, text)
        base_ids = ids.masked_fill(~special[None], subject.tokenizer.pad_token_id)  # (1, L)
        target = LABELS.index(ours.targets[0])
        saved = embedding.weight.detach().clone()
        if baseline == "zero":
            with torch.no_grad():
                embedding.weight[subject.tokenizer.pad_token_id] = 0.0
        lig = LayerIntegratedGradients(lambda i, m: log_probs(subject, i, m), embedding)
        theirs, delta = lig.attribute(ids, base_ids, target=target, additional_forward_args=(mask,),
                                      n_steps=50, method="gausslegendre",
                                      return_convergence_delta=True)
        with torch.no_grad():
            embedding.weight.copy_(saved)
        torch.testing.assert_close(ours.scores[0].double(), theirs.sum(-1)[0].detach(),
                                   atol=1e-5, rtol=0)
        assert abs(ours.completeness_gap[0] - float(delta)) < 1e-5
        assert ours.scores[0].abs().max() > 1e-2  # not a trivial zero
        assert ours.details == {"baseline": baseline, "steps": 50, "integration": "gauss-legendre"}


def test_completeness_within_one_percent_at_the_default_steps(subject):
    """On the tiny trained float64 models, 50 Gauss-Legendre nodes."""
    for text in SENTENCES:
        decisions = subject.decisions(text)
        a = attribute(subject, [decisions], method="integrated_gradients")[0]
        engine = decisions.engine
        with torch.no_grad():
            f = engine.log_probs(torch.stack([engine.vectors(), engine.baseline("pad")]),
                                 torch.zeros(2, dtype=torch.long))
        change = float(f[0] - f[1])
        assert abs(change) > 1e-2
        assert abs(float(a.scores.sum()) - change - a.completeness_gap[0]) < 1e-6
        assert abs(a.completeness_gap[0]) <= 0.01 * abs(change)


def test_integrated_gradients_by_hand_one_node_at_a_time(tokenizer):
    subject = text_classifier(tokenizer)
    text = SENTENCES[1]
    a = attribute(subject, text, method="integrated_gradients", steps=7)[0]
    ids, mask, special = inputs(subject, text)
    embedding = subject.model.get_input_embeddings()
    x = embedding(ids).detach()  # (1, L, E)
    b = torch.where(special[None, :, None], x, torch.zeros_like(x))  # [PAD]'s row is zero
    alphas, weights = gauss_legendre(7)
    target = LABELS.index(a.targets[0])
    total = torch.zeros_like(x)
    for alpha, w in zip(alphas, weights, strict=True):
        point = (b + alpha * (x - b)).requires_grad_(True)
        handle = embedding.register_forward_hook(lambda m, i, o, p=point: p)
        try:
            (g,) = torch.autograd.grad(log_probs(subject, ids, mask)[0, target], point)
        finally:
            handle.remove()
        total += w * g
    torch.testing.assert_close(a.scores[0].double(), ((x - b) * total).sum(-1)[0], atol=1e-6,
                               rtol=0)


def test_integrated_gradients_in_several_passes_equal_one(tokenizer, monkeypatch):
    subject = text_classifier(tokenizer)
    one = attribute(subject, SENTENCES, method="integrated_gradients", steps=20)
    monkeypatch.setattr(attribution_methods, "TOKENS_PER_PASS", 30)  # a few rows per pass
    several = attribute(subject, SENTENCES, method="integrated_gradients", steps=20)
    for a, b in zip(one, several, strict=True):
        torch.testing.assert_close(a.scores, b.scores, atol=1e-6, rtol=0)


# --- gradients by hand -----------------------------------------------------------------------

def test_grad_input_and_saliency_equal_autograd_by_hand(subject):
    embedding = subject.model.get_input_embeddings()
    for text in SENTENCES:
        kept = []
        handle = embedding.register_forward_hook(lambda m, i, o, kept=kept: kept.append(o))
        try:
            ids, mask, _ = inputs(subject, text)
            scores = log_probs(subject, ids, mask)[0]
            target = int(scores.argmax())
            (g,) = torch.autograd.grad(scores[target], kept[0])  # (1, L, E)
        finally:
            handle.remove()
        grad_input = attribute(subject, text, method="grad_input")[0]
        saliency = attribute(subject, text, method="saliency")[0]
        torch.testing.assert_close(grad_input.scores[0].double(), (g * kept[0]).sum(-1)[0],
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(saliency.scores[0].double(), g.norm(dim=-1)[0], atol=1e-6,
                                   rtol=0)
        assert grad_input.targets == [LABELS[target]]


def test_target_picks_the_label_attributed(tokenizer):
    subject = text_classifier(tokenizer)
    text = SENTENCES[0]
    by_name = [attribute(subject, text, method="grad_input", target=n)[0] for n in LABELS]
    by_index = [attribute(subject, text, method="grad_input", target=i)[0] for i in (0, 1)]
    assert [a.targets for a in by_name] == [["negative"], ["positive"]]
    for a, b in zip(by_name, by_index, strict=True):
        torch.testing.assert_close(a.scores, b.scores)
    # two classes: log p0 + log p1 has no simple sum rule, but p0 + p1 = 1 does
    p = [a.probabilities[0] for a in by_name]
    assert abs(sum(p) - 1) < 1e-9 and not torch.allclose(by_name[0].scores, by_name[1].scores)


# --- attention methods -----------------------------------------------------------------------

def test_attention_and_rollout_read_the_heads_the_view_shows(subject):
    text = SENTENCES[2]
    seen = subject.attend([text])[0]
    last = attribute(subject, text, method="attention")[0]
    first = attribute(subject, text, method="attention", layer=0)[0]
    rolled = attribute(subject, text, method="rollout")[0]
    for a, layer in ((last, -1), (first, 0)):
        mean = seen.weights[layer].mean(0)  # (L, L)
        row = mean[0] if subject.pooling == "cls" else mean.mean(0)
        torch.testing.assert_close(a.scores[0], row.float(), atol=1e-6, rtol=0)
    assert last.details == {"layer": 1} and first.details == {"layer": 0}
    torch.testing.assert_close(rolled.scores[0], seen.relevance.float(), atol=1e-6, rtol=0)


def test_attention_times_gradient_equals_the_last_layer_written_out(tokenizer):
    """The last layer of the pre-norm TextClassifier by hand, its weights a leaf."""
    subject = text_classifier(tokenizer, "cls")
    model = subject.model
    ids, mask, _ = inputs(subject, SENTENCES[2])
    layer = model.encoder.layers[-1]
    kept = []
    handle = layer.register_forward_pre_hook(lambda m, args: kept.append(args[0]))
    try:
        target = int(log_probs(subject, ids, mask)[0].argmax())
    finally:
        handle.remove()
    x = kept[0].detach()  # (1, L, D): the last layer's input
    attn, H = layer.attn, layer.attn.n_heads
    h = layer.attn_norm(x)
    q, k, v = (proj(h).view(1, -1, H, attn.d_k).transpose(1, 2)
               for proj in (attn.q_proj, attn.k_proj, attn.v_proj))  # (1, H, L, d_k)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(attn.d_k), -1)  # (1, H, L, L)
    weights = weights.detach().requires_grad_(True)
    heads = (weights @ v).transpose(1, 2).reshape(1, -1, H * attn.d_v)  # (1, L, D)
    y = x + attn.out_proj(heads)
    y = model.encoder.final_norm(y + layer.ff(layer.ff_norm(y)))
    score = torch.log_softmax(model.head(y[:, 0]), -1)[0, target]
    (grad,) = torch.autograd.grad(score, weights)
    expected = (weights * grad).mean(1)[0, 0]  # [CLS] row, heads averaged
    ours = attribute(subject, SENTENCES[2], method="attention_grad")[0]
    torch.testing.assert_close(ours.scores[0].double(), expected.detach(), atol=1e-6, rtol=0)
    assert expected.abs().max() > 1e-4


# --- value zeroing ---------------------------------------------------------------------------

def slow_value_zeroing(subject: Subject, text: str):
    """Mohebbi et al. (2023) as written: for each layer and token j, one forward pass of the
    whole model with token j's value vectors zeroed in that layer's attention (the layers
    below are untouched, so the layer's input is the same); the layer's output read by a
    hook; cosine distances; rows normalised; rolled out by matrix products; pooled row."""
    ids, mask, _ = inputs(subject, text)
    L = ids.shape[1]
    attention = [m for m in subject.model.modules() if hasattr(m, "hook_pattern")]
    layers = [next(p for p in subject.model.modules()
                   if any(c is a for c in p.children())) for a in attention]

    def layer_output(layer, attn, j):
        out = []
        h1 = layer.register_forward_hook(
            lambda m, i, o: out.append(o[0] if isinstance(o, tuple) else o))
        h2 = None
        if j is not None:
            def zero(m, i, o):
                o = o.clone()
                o[:, j] = 0.0
                return o
            h2 = attn.v_proj.register_forward_hook(zero)
        try:
            with torch.no_grad():
                subject.model(ids, mask)
        finally:
            h1.remove()
            if h2 is not None:
                h2.remove()
        return out[0][0]  # (L, D)

    rolled = torch.eye(L, dtype=torch.float64)
    for layer, attn in zip(layers, attention, strict=True):
        original = layer_output(layer, attn, None)
        C = torch.zeros(L, L, dtype=torch.float64)
        for j in range(L):
            changed = layer_output(layer, attn, j)
            for i in range(L):
                C[i, j] = 1 - torch.dot(changed[i], original[i]) / (
                    changed[i].norm() * original[i].norm())
        C = C / C.sum(-1, keepdim=True)
        rolled = C @ rolled
    return rolled[0] if subject.pooling == "cls" else rolled.mean(0)


def test_value_zeroing_equals_the_slow_loop_of_the_paper(subject):
    for text in SENTENCES[:2]:
        ours = attribute(subject, text, method="value_zeroing")[0]
        expected = slow_value_zeroing(subject, text)
        torch.testing.assert_close(ours.scores[0].double(), expected, atol=1e-5, rtol=0)
        assert abs(float(ours.scores.sum()) - 1) < 1e-5  # rows of a product of stochastic
        assert ours.scores.std() > 1e-3  # matrices: a distribution, not uniform


# --- perturbation, the floor -----------------------------------------------------------------

def test_leave_one_out_equals_deleting_each_token_by_hand(subject):
    text = SENTENCES[2]
    a = attribute(subject, text, method="leave_one_out")[0]
    ids, mask, special = inputs(subject, text)
    target = LABELS.index(a.targets[0])
    with torch.no_grad():
        full = log_probs(subject, ids, mask)[0, target].exp()
        for i in range(ids.shape[1]):
            if special[i]:
                assert a.scores[0, i] == 0
                continue
            rest = torch.cat([ids[:, :i], ids[:, i + 1:]], 1)
            dropped = log_probs(subject, rest, torch.ones_like(rest))[0, target].exp()
            assert abs(float(a.scores[0, i]) - float(full - dropped)) < 1e-6
    assert abs(a.probabilities[0] - float(full)) < 1e-9


def test_probability_deletes_tokens_in_one_batch_as_one_by_one(tokenizer):
    subject = text_classifier(tokenizer, "mean")
    decisions = subject.decisions(SENTENCES[2])
    L = len(decisions.tokens)
    keep = torch.rand(40, L, generator=torch.Generator().manual_seed(1)) < 0.5  # (40, L)
    rows = torch.zeros(40, dtype=torch.long)
    batched = decisions.probability(keep, rows)
    ids = subject.encode([SENTENCES[2]]).input_ids[0]
    special = torch.tensor(decisions.special)
    for n in range(40):
        kept = ids[keep[n] | special][None]  # specials always stay
        with torch.no_grad():
            p = log_probs(subject, kept, torch.ones_like(kept))[0, decisions.target_ids[0]].exp()
        assert abs(float(batched[n]) - float(p)) < 1e-9
    with pytest.raises(InputError, match="keep must be"):
        decisions.probability(keep[:, :-1], rows)
    with pytest.raises(InputError, match="rows must be decision indices"):
        decisions.probability(keep, rows + 1)


def test_random_is_seeded_and_the_same_alone_or_among_others(tokenizer):
    subject = text_classifier(tokenizer)
    together = attribute(subject, SENTENCES, method="random", seed=3)
    alone = attribute(subject, SENTENCES[1], method="random", seed=3)[0]
    again = attribute(subject, SENTENCES, method="random", seed=3)
    other = attribute(subject, SENTENCES, method="random", seed=4)
    torch.testing.assert_close(together[1].scores, alone.scores, atol=0, rtol=0)
    for a, b, c in zip(together, again, other, strict=True):
        assert torch.equal(a.scores, b.scores) and not torch.equal(a.scores, c.scores)
        assert ((a.scores >= 0) & (a.scores < 1)).all()
    assert not torch.equal(together[0].scores[0, :3], together[1].scores[0, :3])


def test_batched_texts_equal_each_text_alone(tokenizer):
    subject = text_classifier(tokenizer, "mean")
    for method in METHODS:
        together = attribute(subject, SENTENCES, method=method)
        for text, a in zip(SENTENCES, together, strict=True):
            b = attribute(subject, [text], method=method)[0]
            assert a.tokens == b.tokens and len(a.tokens) == a.scores.shape[1]
            torch.testing.assert_close(a.scores, b.scores, atol=1e-6, rtol=0)
    assert len({len(a.tokens) for a in together}) == 3


def test_to_dict_of_one_decision_is_flat_and_json_ready(tokenizer):
    import json

    subject = text_classifier(tokenizer)
    a = attribute(subject, SENTENCES[0], method="integrated_gradients")[0]
    assert isinstance(a, Attribution)
    d = json.loads(json.dumps(a.to_dict()))
    assert d["tokens"] == a.tokens and d["method"] == "integrated_gradients"
    assert len(d["scores"]) == len(a.tokens) and d["target"] == a.targets[0]
    assert d["probability"] == a.probabilities[0]
    assert d["completeness_gap"] == a.completeness_gap[0] and d["details"]["steps"] == 50


# --- refused input ---------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"method": "shap"}, r"method must be one of attention, .*got 'shap'"),
    ({"target": "neutral"}, r"target must be one of the labels \['negative', 'positive'\].*"
                            r"'neutral'"),
    ({"target": 2}, r"target must be .* index in \[0, 2\), got 2"),
    ({"target": True}, r"target must be .* got True"),
    ({"steps": 0}, r"steps must be an integer >= 1, got 0"),
    ({"steps": 2.5}, r"steps must be an integer >= 1, got 2.5"),
    ({"baseline": "mask"}, r"baseline must be one of pad, zero, got 'mask'"),
    ({"method": "attention", "layer": 2}, r"layer must be in \[-2, 2\) .* got 2"),
    ({"method": "saliency", "layer": 0}, r"layer applies to the methods attention, "
                                          r"attention_grad only"),
    ({"references": ["x"]}, r"reference is for translation"),
    ({"references": "x"}, r"references must be a list of one reference per input"),
    ({"seed": "1"}, r"seed must be an integer"),
])
def test_bad_options_are_input_errors_that_say_what_was_expected(tokenizer, options, message):
    subject = text_classifier(tokenizer)
    with pytest.raises(InputError, match=message):
        attribute(subject, [SENTENCES[0]], **options)


def test_a_text_without_tokens_is_refused(tokenizer):
    with pytest.raises(InputError, match="text ' ' has no tokens"):
        attribute(text_classifier(tokenizer), ["a good film", " "], method="saliency")


def test_a_sentence_encoder_has_nothing_to_attribute():
    subject = load_subject("all-MiniLM-L6-v2")
    assert subject.labels is None
    with pytest.raises(InputError, match="no classification head.*nothing to attribute"):
        attribute(subject, "a gripping , funny film", method="saliency")


def test_a_trained_run_opens_and_every_method_scores_every_token(tmp_path):
    """The checkpoint as training writes it (float32, rotary positions, trained)."""
    subject = load_subject(make_tiny_run(tmp_path / "run", pooling="mean"))
    for method in METHODS:
        a = attribute(subject, "great acting and a fine story", method=method)[0]
        assert a.scores.shape == (1, len(a.tokens)) and a.scores.dtype == torch.float32
        assert torch.isfinite(a.scores).all() and a.method == method
        assert a.targets == ["positive"] and a.removable == [not s for s in a.special]
        if method not in ("leave_one_out", "random"):
            assert a.scores.abs().sum() > 0
