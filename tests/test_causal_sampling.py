"""Sampling from decoder-only models (attnlab.models.causal_generation.sample_generate) against
Hugging Face: its logits warpers on random logits, and ``GPT2LMHeadModel.generate(do_sample=
True)`` token for token under the same seed; and against itself: cache or not, top_k=1 is
greedy, the drawn frequencies are the warped probabilities."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # the references must never reach the hub

import pytest
import torch

from attnlab.errors import InputError
from attnlab.io.families import load_family
from attnlab.models.causal_generation import greedy_generate, sample_generate, warp_logits
from attnlab.models.language_model import LMConfig, TransformerLM

transformers = pytest.importorskip("transformers")

VOCAB = 60


@pytest.fixture(scope="module")
def lm():
    """A tiny TransformerLM whose next-token distributions are neither flat nor peaked."""
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=VOCAB, d_model=16, n_heads=2, n_layers=2,
                                   context=32, dropout=0.0, eos_token_id=None))
    with torch.no_grad():
        model.token_embedding.weight.normal_(0, 0.15)
    return model.eval()


def _prompts():
    """Three prompts, left-padded with id 0 to length 5: lengths 5, 2, 4."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (3, 5), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :1] = 0
    return ids.masked_fill(mask == 0, 0), mask


def test_cached_and_uncached_sampling_draw_the_same_tokens(lm):
    ids, mask = _prompts()
    runs = [sample_generate(lm, ids, mask, max_new_tokens=15, temperature=1.3, top_p=0.95,
                            generator=torch.Generator().manual_seed(7), use_cache=use_cache)
            for use_cache in (True, False)]
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (3, 20) and torch.equal(runs[0][:, :5], ids)
    assert len(set(runs[0][:, 5:].flatten().tolist())) > 10, "too few distinct tokens to test"
    other = sample_generate(lm, ids, mask, max_new_tokens=15, temperature=1.3, top_p=0.95,
                            generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other, runs[0])  # the seed matters


def test_top_k_one_is_greedy(lm):
    ids, mask = _prompts()
    want = greedy_generate(lm, ids, mask, max_new_tokens=12)
    got = sample_generate(lm, ids, mask, max_new_tokens=12, temperature=0.5, top_k=1,
                          generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, want)


def test_drawn_frequencies_are_the_warped_probabilities(lm):
    """4000 rows of one prompt, one token each: the counts follow the filtered softmax."""
    prompt = torch.tensor([[5, 9, 2]]).expand(4000, 3)
    settings = dict(temperature=0.7, top_k=20, top_p=0.8)
    drawn = sample_generate(lm, prompt, max_new_tokens=1, generator=torch.Generator()
                            .manual_seed(0), **settings)[:, -1]
    with torch.no_grad():
        probs = warp_logits(lm(prompt[:1])[:, -1], **settings).softmax(-1)[0]  # (V,)
    freq = torch.bincount(drawn, minlength=VOCAB).double() / 4000
    assert (freq[probs == 0] == 0).all()  # nothing outside the nucleus is ever drawn
    assert 2 < int((probs > 0).sum()) < 20
    assert torch.allclose(freq, probs.double(), atol=0.03)  # ~4 standard errors at p = 0.5


def _hf_warped(logits, temperature, top_k, top_p):
    """Hugging Face's warpers, in the order and with the conditions of its generate()."""
    lp = transformers.generation.logits_process
    warpers = []
    if temperature != 1.0:
        warpers.append(lp.TemperatureLogitsWarper(temperature))
    if top_k is not None:
        warpers.append(lp.TopKLogitsWarper(top_k=top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(lp.TopPLogitsWarper(top_p=top_p))
    for warper in warpers:
        logits = warper(None, logits)
    return logits


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (1.0, None, None), (0.6, None, None), (1.0, 5, None), (1.0, None, 0.9), (1.7, 12, 0.7),
    (0.3, 3, 0.5), (1.0, 1000, 0.01), (2.0, None, 1.0),
])
def test_filtered_logits_equal_hugging_faces_warpers(temperature, top_k, top_p):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 80, generator=g) * 3
    logits[0, :4] = logits[0, 4]  # ties at the k-th and in the nucleus
    got = warp_logits(logits, temperature, top_k, top_p)
    want = _hf_warped(logits.clone(), temperature, top_k, top_p)
    assert torch.equal(got.isinf(), want.isinf())
    assert torch.allclose(got[~got.isinf()], want[~want.isinf()], rtol=0, atol=0)
    assert (~got.isinf()).sum(-1).min() >= 1  # every row keeps a token


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A tiny random GPT-2 saved by transformers, and attnlab's copy of it."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=VOCAB,
                                     n_positions=64, bos_token_id=0, eos_token_id=0,
                                     initializer_range=0.15)
    hf = transformers.GPT2LMHeadModel(config).eval()
    folder = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(folder, safe_serialization=True)
    return load_family(folder), hf


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (1.0, None, None), (0.8, 10, None), (1.2, None, 0.9), (0.9, 20, 0.8)])
def test_sampling_matches_hugging_face_generate_under_the_same_seed(gpt2, temperature, top_k,
                                                                    top_p):
    ours, hf = gpt2
    ids, mask = _prompts()
    hf_options = dict(do_sample=True, temperature=temperature, top_k=top_k or 0,
                      top_p=top_p or 1.0, max_new_tokens=12)
    for seed in (0, 1):
        torch.manual_seed(seed)
        want = hf.generate(ids, attention_mask=mask, eos_token_id=None, pad_token_id=0,
                           **hf_options)
        torch.manual_seed(seed)
        got = sample_generate(ours, ids, mask, max_new_tokens=12, temperature=temperature,
                              top_k=top_k, top_p=top_p, eos_token_id=None)
        assert torch.equal(got, want), f"seed {seed}\n{got}\n{want}"
    assert len(set(want[:, 5:].flatten().tolist())) > 5, "generation too trivial to test"

    eos = int(want[1, 7])  # row 1 ends after its third new token
    torch.manual_seed(5)
    want = hf.generate(ids, attention_mask=mask, eos_token_id=eos, pad_token_id=59,
                       **hf_options)
    torch.manual_seed(5)
    got = sample_generate(ours, ids, mask, max_new_tokens=12, temperature=temperature,
                          top_k=top_k, top_p=top_p, eos_token_id=eos, pad_token_id=59)
    assert torch.equal(got, want), f"{got}\n{want}"
    assert (want[:, 5:] == eos).any() and (want[:, 5:] == 59).any()  # a row ended early


@pytest.mark.parametrize("argument,value,expected", [
    ("temperature", 0.0, "finite number > 0"),
    ("temperature", -1.0, "finite number > 0"),
    ("temperature", float("inf"), "finite number > 0"),
    ("temperature", float("nan"), "finite number > 0"),
    ("temperature", True, "finite number > 0"),
    ("top_k", 0, "integer >= 1"),
    ("top_k", 2.5, "integer >= 1"),
    ("top_p", 0.0, "(0, 1]"),
    ("top_p", 1.5, "(0, 1]"),
    ("max_new_tokens", -1, "integer >= 0"),
])
def test_bad_sampling_settings_are_named(lm, argument, value, expected):
    ids, _ = _prompts()
    with pytest.raises(InputError) as err:
        sample_generate(lm, ids, **{argument: value})
    message = str(err.value)
    assert argument in message and expected in message and repr(value)[:3] in message
