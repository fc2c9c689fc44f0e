"""Attributions of a decoder-only language model's decision (the next token), each method against
an independent reference: captum's LayerIntegratedGradients, autograd by hand, deletion by
hand, the attention the view shows. The model is a tiny TransformerLM in float64 on a character
tokenizer; the same methods run on a GPT-2 loaded from a Hugging Face folder."""

from __future__ import annotations

import pytest
import torch

from attnlab.errors import InputError
from attnlab.inspect import METHODS, attribute
from attnlab.inspect.causal_subject import CausalSubject
from attnlab.models.language_model import LMConfig, TransformerLM
from attnlab.text import TextTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "the cat sat on the mat and the dog sat on the log; the cat ran.\n" * 4
PROMPTS = ["the cat sat on th", "and the dog", "the mat"]


@pytest.fixture(scope="module")
def subject() -> CausalSubject:
    tokenizer = TextTokenizer.train([TEXT], kind="char", max_length=32)
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=4,
                                   n_layers=2, context=32, dropout=0.0, init_std=0.3)).double()
    ids = torch.tensor([tokenizer.tokenizer.encode(TEXT).ids[:33]])  # (1, 33)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):  # decisions that depend on the characters, not saturated
        optimizer.zero_grad()
        logits = model(ids[:, :-1])
        torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]).backward()
        optimizer.step()
    return CausalSubject(model.eval(), tokenizer, "tiny-lm")


def next_log_probs(subject, ids):
    return torch.log_softmax(subject.model(ids)[:, -1], -1)  # (B, V)


def test_integrated_gradients_equal_captum(subject):
    from captum.attr import LayerIntegratedGradients

    embedding = subject.model.get_input_embeddings()
    pad = subject.tokenizer.pad_token_id
    for text in PROMPTS:
        ours = attribute(subject, text, method="integrated_gradients", baseline="pad")[0]
        ids = subject.encode([text]).input_ids  # (1, L)
        target = subject.tokenizer.token_to_id(ours.targets[0])
        lig = LayerIntegratedGradients(lambda i: next_log_probs(subject, i), embedding)
        theirs, delta = lig.attribute(ids, torch.full_like(ids, pad), target=target,
                                      n_steps=50, method="gausslegendre",
                                      return_convergence_delta=True)
        torch.testing.assert_close(ours.scores[0].double(), theirs.sum(-1)[0].detach(),
                                   atol=1e-6, rtol=0)
        assert abs(ours.completeness_gap[0] - float(delta)) < 1e-6
        assert ours.scores[0].abs().max() > 1e-3


def test_grad_input_equals_autograd_by_hand(subject):
    text = PROMPTS[0]
    ours = attribute(subject, text, method="grad_input")[0]
    ids = subject.encode([text]).input_ids
    target = subject.tokenizer.token_to_id(ours.targets[0])
    vectors = subject.model.get_input_embeddings()(ids).detach().requires_grad_(True)
    handle = subject.model.get_input_embeddings().register_forward_hook(lambda m, a, o: vectors)
    try:
        score = next_log_probs(subject, ids)[0, target]
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(score, vectors)
    torch.testing.assert_close(ours.scores[0].double(), (grad * vectors).sum(-1)[0].detach(),
                               atol=1e-6, rtol=0)


def test_leave_one_out_deletes_each_character_by_hand(subject):
    text = PROMPTS[1]
    a = attribute(subject, text, method="leave_one_out")[0]
    ids = subject.encode([text]).input_ids
    target = subject.tokenizer.token_to_id(a.targets[0])
    with torch.no_grad():
        full = next_log_probs(subject, ids)[0, target].exp()
        for i in range(ids.shape[1]):
            rest = torch.cat([ids[:, :i], ids[:, i + 1:]], 1)
            dropped = next_log_probs(subject, rest)[0, target].exp()
            assert abs(float(a.scores[0, i]) - float(full - dropped)) < 1e-6  # float32 scores
    assert a.probabilities[0] == pytest.approx(float(full), abs=1e-12)
    assert a.targets[0] == subject.tokenizer.tokenizer.id_to_token(
        int(next_log_probs(subject, ids)[0].argmax()))


def test_attention_reads_the_last_query_row_the_view_shows(subject):
    text = PROMPTS[2]
    a = attribute(subject, text, method="attention")[0]
    attended = subject.attend([text])[0][0]
    last_layer = attended.weights[-1]  # (H, L, L)
    torch.testing.assert_close(a.scores[0].double(), last_layer.mean(0)[-1].double(),
                               atol=1e-6, rtol=0)
    rollout = attribute(subject, text, method="rollout")[0]
    torch.testing.assert_close(rollout.scores[0].double(), attended.relevance.double(),
                               atol=1e-6, rtol=0)


def test_every_method_scores_every_token_and_a_given_target(subject):
    results = [attribute(subject, PROMPTS[0], method=m, target="t")[0] for m in METHODS]
    for r in results:
        assert r.targets == ["t"] and r.scores.shape == (1, len(PROMPTS[0]))
        assert torch.isfinite(r.scores).all()
    with pytest.raises(InputError, match="target must be a token of the vocabulary"):
        attribute(subject, PROMPTS[0], method="saliency", target="§")
    with pytest.raises(InputError, match="reference is for translation runs"):
        attribute(subject, PROMPTS[0], method="saliency", references=["x"])


def test_value_zeroing_equals_the_slow_loop_of_the_paper(subject):
    """Mohebbi et al. (2023) as written, one forward per layer and token with that token's
    values zeroed; the rollout's last row (the query that predicts the next token)."""
    text = PROMPTS[2]
    ours = attribute(subject, text, method="value_zeroing")[0]
    ids = subject.encode([text]).input_ids
    L = ids.shape[1]
    blocks = list(subject.model.layers)

    def block_output(block, j):
        out = []
        hooks = [block.register_forward_hook(lambda m, i, o: out.append(o))]
        if j is not None:
            def zero(m, i, o):
                o = o.clone()
                o[:, j] = 0.0
                return o
            hooks.append(block.attn.v_proj.register_forward_hook(zero))
        try:
            with torch.no_grad():
                subject.model(ids)
        finally:
            for h in hooks:
                h.remove()
        return out[0][0]  # (L, D)

    rolled = torch.eye(L, dtype=torch.float64)
    for block in blocks:
        original = block_output(block, None)
        C = torch.zeros(L, L, dtype=torch.float64)
        for j in range(L):
            changed = block_output(block, j)
            C[:, j] = 1 - torch.cosine_similarity(changed, original, dim=-1)
        C = C / C.sum(-1, keepdim=True)
        rolled = C @ rolled
    torch.testing.assert_close(ours.scores[0].double(), rolled[-1], atol=1e-6, rtol=0)
    assert rolled[-1, 0] > 0 and ours.scores.std() > 1e-3
