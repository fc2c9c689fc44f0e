"""Attributions of a translation's decisions (forced decoding, one row per target token over the
source and the target prefix) against the model's own log-softmax, autograd by hand one
decision at a time, integrated gradients by hand, the cross-attention of generation, a slow
value-zeroing loop and deletion by hand.

Two models: the tiny trained run (tied embeddings, float64 here) and a random one with separate
source and target embeddings (float64).
"""

from __future__ import annotations

import pytest
import torch

from attnlab.errors import InputError
from attnlab.inspect import METHODS, attribute
from attnlab.inspect.attribution_methods import gauss_legendre
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.tasks.translation.subject import TranslationSubject
from attnlab.tasks.translation.translator import Translator
from tiny_translation import make_tiny_translation_run

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE = "Ein Hund rennt durch den Schnee."
REFERENCE = "A dog runs through the snow."


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    return make_tiny_translation_run(tmp_path_factory.mktemp("attribution") / "de-en")


def tied(run) -> TranslationSubject:
    translator = Translator.load(run)
    translator.model.double()
    return TranslationSubject(translator, "tied")


def untied(run) -> TranslationSubject:
    tokenizer = Translator.load(run).tokenizer
    torch.manual_seed(0)
    config = Seq2SeqConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2,
                           n_encoder_layers=2, n_decoder_layers=2, d_ff=32, dropout=0.0,
                           tie_embeddings=False, max_len=64)
    model = Seq2SeqTransformer(config).double().eval()
    return TranslationSubject(Translator(model, tokenizer), "untied")


@pytest.fixture(params=["tied", "untied"])
def subject(request, run) -> TranslationSubject:
    return {"tied": tied, "untied": untied}[request.param](run)


def pair(subject: TranslationSubject):
    """Source ids (1, S), decoder input (1, T) and labels (T,) of the reference."""
    tok = subject.translator.tokenizer
    source = torch.tensor([subject.translator.encode([SOURCE])[0]])
    target = tok.tokenize([REFERENCE])[0].ids
    return source, torch.tensor([target[:-1]]), torch.tensor(target[1:])


def model_log_probs(subject, source, prefix, labels):
    logits = subject.translator.model(source, torch.ones_like(source), prefix).logits  # (1, T, V)
    return torch.log_softmax(logits[0], -1)[torch.arange(len(labels)), labels]  # (T,)


def test_forced_decoding_scores_the_reference_as_the_model_does(subject):
    decisions = subject.decisions(SOURCE, reference=REFERENCE)
    source, prefix, labels = pair(subject)
    with torch.no_grad():
        expected = model_log_probs(subject, source, prefix, labels)
    S, T = source.shape[1], prefix.shape[1]
    assert decisions.source_length == S and len(decisions.tokens) == S + T
    assert decisions.target_ids == labels.tolist() and decisions.targets[-1] == "[SEP]"  # [EOS]
    assert decisions.removable == [True] * (S - 1) + [False] * (T + 1)  # source [EOS], prefix
    torch.testing.assert_close(torch.tensor(decisions.probabilities, dtype=torch.float64),
                               expected.exp(), atol=1e-9, rtol=0)
    engine = decisions.engine
    with torch.no_grad():
        rows = engine.log_probs(engine.vectors().expand(T, -1, -1), torch.arange(T))
        one = torch.stack([engine.log_probs(engine.vectors()[None], torch.tensor([d]))[0]
                           for d in range(T)])
    torch.testing.assert_close(rows, expected, atol=1e-9, rtol=0)
    torch.testing.assert_close(one, expected, atol=1e-9, rtol=0)  # batched D rows = one by one


def hand_gradients(subject, d: int):
    """``∂ log p(label_d) / ∂`` the source and prefix word vectors, one decision, autograd on
    the embedding outputs (both embedding calls when they are tied), and those outputs."""
    model = subject.translator.model
    source, prefix, labels = pair(subject)
    modules = [model.embedding] + ([model.target_embedding]
                                   if model.target_embedding is not None else [])
    kept = []
    handles = [m.register_forward_hook(lambda mod, i, o: kept.append(o)) for m in modules]
    try:
        f = model_log_probs(subject, source, prefix, labels)[d]
    finally:
        for h in handles:
            h.remove()
    grads = torch.autograd.grad(f, kept)  # source side first, then target side
    vectors = torch.cat([o[0] for o in kept]).detach()  # (S + T, E)
    return torch.cat([g[0] for g in grads]), vectors


def test_grad_input_and_saliency_rows_equal_autograd_by_hand_per_decision(subject):
    decisions = subject.decisions(SOURCE, reference=REFERENCE)
    grad_input = attribute(subject, [decisions], method="grad_input")[0]
    saliency = attribute(subject, [decisions], method="saliency")[0]
    S = decisions.source_length
    for d in range(len(decisions)):
        g, x = hand_gradients(subject, d)  # (S + T, E) each
        torch.testing.assert_close(grad_input.scores[d].double(), (g * x).sum(-1), atol=1e-6,
                                   rtol=0)
        torch.testing.assert_close(saliency.scores[d].double(), g.norm(dim=-1), atol=1e-6,
                                   rtol=0)
        assert (grad_input.scores[d, S + d + 1:] == 0).all()  # the future prefix: no effect
        assert grad_input.scores[d, :S].abs().max() > 0


def test_integrated_gradients_rows_equal_one_decision_at_a_time_by_hand(subject):
    decisions = subject.decisions(SOURCE, reference=REFERENCE)
    steps = 8
    a = attribute(subject, [decisions], method="integrated_gradients", steps=steps)[0]
    engine = decisions.engine
    x, b = engine.vectors(), engine.baseline("pad")  # (S + T, E)
    model, (source, prefix, labels) = subject.translator.model, pair(subject)
    S = source.shape[1]
    special = torch.tensor(decisions.special)
    target_side = model.target_embedding or model.embedding
    pad = torch.cat([model.embedding.weight[0].expand(S, -1),
                     target_side.weight[0].expand(len(decisions), -1)]).detach()  # [PAD]'s
    assert torch.equal(b, torch.where(special[:, None], x, pad))
    alphas, weights = gauss_legendre(steps)
    for d in (0, len(decisions) // 2, len(decisions) - 1):
        total = torch.zeros_like(x)
        for alpha, w in zip(alphas, weights, strict=True):
            point = (b + alpha * (x - b)).requires_grad_(True)
            sides = iter([point[:S][None], point[S:][None]])
            modules = {model.embedding, model.target_embedding} - {None}
            handles = [m.register_forward_hook(lambda mod, i, o, sides=sides: next(sides))
                       for m in modules]
            try:
                f = model_log_probs(subject, source, prefix, labels)[d]
            finally:
                for h in handles:
                    h.remove()
            total += w * torch.autograd.grad(f, point)[0]
        torch.testing.assert_close(a.scores[d].double(), ((x - b) * total).sum(-1), atol=1e-6,
                                   rtol=0)
    gaps = torch.tensor(a.completeness_gap)
    assert gaps.shape == (len(decisions),) and torch.isfinite(gaps).all()


def test_attention_rows_are_the_cross_attention_of_generation(run):
    subject = TranslationSubject(Translator.load(run), "run")  # float32, as trained
    found = subject.translator.translate([SOURCE], attention=True)[0]
    last = attribute(subject, SOURCE, method="attention")[0]
    first = attribute(subject, SOURCE, method="attention", layer=0)[0]
    S = last.source_length
    assert last.targets == found.target_tokens  # [EOS] last when the output ended
    assert (last.targets[-1] == "[SEP]") == found.finished
    for a, layer in ((last, -1), (first, 0)):
        expected = found.attention[layer].mean(0)  # (T, S)
        torch.testing.assert_close(a.scores[:, :S], expected, atol=1e-5, rtol=0)
        assert (a.scores[:, S:] == 0).all()


def slow_value_zeroing(subject: TranslationSubject):
    """Value zeroing as defined, one whole forward pass per (layer, zeroed token), the layer's
    output read by a hook; encoder rolled out, then the decoder's rollout over [source | prefix]."""
    model, (source, prefix, _) = subject.translator.model, pair(subject)
    S, T = source.shape[1], prefix.shape[1]

    def output(layer, v_proj=None, j=None):
        out = []
        handles = [layer.register_forward_hook(lambda m, i, o: out.append(o))]
        if v_proj is not None:
            def zero(m, i, o):
                o = o.clone()
                o[:, j] = 0.0
                return o
            handles.append(v_proj.register_forward_hook(zero))
        try:
            with torch.no_grad():
                model(source, None, prefix)
        finally:
            for h in handles:
                h.remove()
        return out[0][0]  # (Q, D)

    def distances(layer, v_proj, n):
        original = output(layer)
        C = torch.zeros(original.shape[0], n, dtype=torch.float64)
        for j in range(n):
            changed = output(layer, v_proj, j)
            C[:, j] = 1 - torch.nn.functional.cosine_similarity(changed, original, dim=-1)
        return C

    R = torch.eye(S, dtype=torch.float64)
    for layer in model.encoder.layers:
        C = distances(layer, layer.attn.v_proj, S)
        R = (C / C.sum(-1, keepdim=True)) @ R
    X = torch.cat([torch.zeros(T, S), torch.eye(T)], 1).double()
    for layer in model.decoder.layers:
        M = torch.cat([distances(layer, layer.cross_attn.v_proj, S),
                       distances(layer, layer.self_attn.v_proj, T).tril()], 1)
        M = M / M.sum(-1, keepdim=True)
        X = M[:, :S] @ torch.cat([R, torch.zeros(S, T)], 1) + M[:, S:] @ X
    return X


def test_value_zeroing_equals_the_slow_loop(subject):
    ours = attribute(subject, SOURCE, method="value_zeroing", references=[REFERENCE])[0]
    expected = slow_value_zeroing(subject)
    torch.testing.assert_close(ours.scores.double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.scores.sum(-1), torch.ones(len(ours.targets)), atol=1e-5,
                               rtol=0)
    S = ours.source_length
    assert torch.equal(ours.scores[:, S:], ours.scores[:, S:].tril())  # no future prefix


def test_leave_one_out_equals_deleting_each_source_token_by_hand(subject):
    a = attribute(subject, SOURCE, method="leave_one_out", references=[REFERENCE])[0]
    source, prefix, labels = pair(subject)
    S = source.shape[1]
    with torch.no_grad():
        full = model_log_probs(subject, source, prefix, labels).exp()  # (T,)
        for i in range(S):
            if not a.removable[i]:
                assert (a.scores[:, i] == 0).all()
                continue
            rest = torch.cat([source[:, :i], source[:, i + 1:]], 1)
            dropped = model_log_probs(subject, rest, prefix, labels).exp()
            torch.testing.assert_close(a.scores[:, i].double(), full - dropped, atol=1e-6,
                                       rtol=0)
    assert (a.scores[:, S:] == 0).all()


def test_every_method_gives_one_row_per_target_token(run):
    subject = tied(run)
    for method in METHODS:
        a = attribute(subject, [SOURCE], method=method, references=[REFERENCE])[0]
        D, L, S = len(a.targets), len(a.tokens), a.source_length
        assert a.scores.shape == (D, L) and torch.isfinite(a.scores).all()
        future = torch.arange(L - S)[None, :] > torch.arange(D)[:, None]  # (D, T)
        assert (a.scores[:, S:][future] == 0).all(), method
        d = a.to_dict()
        assert len(d["scores"]) == D and d["targets"] == a.targets and d["source_length"] == S
    with pytest.raises(InputError, match="target is for classifiers"):
        attribute(subject, SOURCE, target="dog")
    with pytest.raises(InputError, match="references must be a list of one reference per"):
        attribute(subject, [SOURCE, SOURCE], references=[REFERENCE])
    with pytest.raises(InputError, match="no tokens"):
        attribute(subject, [SOURCE], references=[""])
    with pytest.raises(InputError, match="layer must be in \\[-2, 2\\)"):
        attribute(subject, [SOURCE], method="attention_grad", layer=2, references=[REFERENCE])
