"""Greedy and beam search: cached == uncached, beam 1 == greedy, beam scores, padding, limits,
and a tiny model that learns to reverse its input."""

import pytest
import torch
import torch.nn.functional as F

from attnlab.models import (
    Hypothesis,
    Seq2SeqConfig,
    Seq2SeqTransformer,
    TextClassifier,
    beam_search,
    beam_search_nbest,
    greedy,
    greedy_search,
    sequence_scores,
)
from attnlab.models.classifier import ClassifierConfig
from lively_seq2seq import BOS, EOS, PAD, V, lively, sources

POSITIONAL = ["sinusoidal", "learned", "rotary"]


@pytest.mark.parametrize("positional", POSITIONAL)
def test_cached_greedy_equals_uncached(positional):
    model = lively(positional, seed=1)
    src, mask = sources()
    cached = greedy_search(model, src, mask, max_length=12)
    uncached = greedy_search(model, src, mask, max_length=12, use_cache=False)
    assert [h.tokens for h in cached] == [h.tokens for h in uncached]
    assert any(h.finished for h in cached) and not all(h.finished for h in cached)
    for a, b in zip(cached, uncached, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize("positional", POSITIONAL)
@pytest.mark.parametrize("early_stopping", [True, False])
def test_cached_beam_equals_uncached(positional, early_stopping):
    model = lively(positional, seed=1)
    src, mask = sources()
    kwargs = dict(beam=4, max_length=12, n_best=4, early_stopping=early_stopping)
    cached = beam_search_nbest(model, src, mask, **kwargs)
    uncached = beam_search_nbest(model, src, mask, use_cache=False, **kwargs)
    assert [[h.tokens for h in n] for n in cached] == [[h.tokens for h in n] for n in uncached]
    assert any(h.finished for n in cached for h in n)
    for a, b in zip(sum(cached, []), sum(uncached, []), strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize("positional", POSITIONAL)
@pytest.mark.parametrize("early_stopping", [True, False])
def test_beam_one_is_greedy(positional, early_stopping):
    model = lively(positional, seed=2)
    src, mask = sources()
    expected = greedy_search(model, src, mask, max_length=12)
    found = [n[0] for n in beam_search_nbest(model, src, mask, beam=1, max_length=12,
                                             early_stopping=early_stopping)]
    assert [h.tokens for h in found] == [h.tokens for h in expected]
    assert beam_search(model, src, mask, beam=1, max_length=12) == greedy(model, src, mask,
                                                                           max_length=12)
    for a, b in zip(found, expected, strict=True):
        assert a.finished == b.finished and a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_scores_at_least_greedy_and_are_the_model_scores(seed, length_penalty):
    model = lively(POSITIONAL[seed], seed=seed)
    src, mask = sources()
    best = greedy_search(model, src, mask, max_length=12, length_penalty=length_penalty)
    nbest = beam_search_nbest(model, src, mask, beam=5, max_length=12, n_best=5,
                              length_penalty=length_penalty)
    for hyps, g in zip(nbest, best, strict=True):
        assert hyps[0].score >= g.score - 1e-6
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) + (h.finished,) for h in hyps}) == len(hyps)
    # the scores reported are the model's, recomputed in one teacher-forced pass
    for k in range(5):
        hyps = [n[k] for n in nbest]
        rescored = sequence_scores(model, src, mask, hyps, length_penalty=length_penalty)
        assert rescored == pytest.approx([h.score for h in hyps], abs=1e-5)
    rescored = sequence_scores(model, src, mask, best, length_penalty=length_penalty)
    assert rescored == pytest.approx([h.score for h in best], abs=1e-5)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_padding_does_not_change_what_is_generated(search):
    model = lively("rotary", seed=3)
    src, mask = sources()

    def run(ids, m):
        if search == "greedy":
            return greedy(model, ids, m, max_length=10)
        return beam_search(model, ids, m, beam=3, max_length=10)

    together = run(src, mask)
    noisy = torch.where(mask.bool(), src, torch.randint(4, V, src.shape))
    assert run(noisy, mask) == together
    for b in (1, 3, 6):
        n = int(mask[b].sum())
        assert run(src[b:b + 1, :n], mask[b:b + 1, :n]) == [together[b]]


def test_outputs_hold_no_specials_and_respect_max_length():
    model = lively(seed=4)
    src, mask = sources()
    for max_length in (1, 3, 7):
        outputs = (greedy(model, src, mask, max_length=max_length)
                   + beam_search(model, src, mask, beam=3, max_length=max_length))
        for tokens in outputs:
            assert len(tokens) <= max_length
            assert PAD not in tokens and EOS not in tokens  # (BOS could be generated)
    unfinished = greedy_search(model, src, mask, max_length=3)
    assert all(len(h.tokens) == 3 for h in unfinished if not h.finished)


def test_generation_leaves_the_training_mode_as_it_was():
    model = lively(dropout=0.3).train()
    src, mask = sources()
    first = greedy(model, src, mask, max_length=8)
    assert model.training and greedy(model, src, mask, max_length=8) == first  # no dropout
    beam_search(model, src, mask, beam=2, max_length=8)
    assert model.training


def test_bad_arguments_name_the_argument():
    model = lively()
    src, mask = sources()
    with pytest.raises(ValueError, match="beam must be"):
        beam_search(model, src, mask, beam=0)
    with pytest.raises(ValueError, match="n_best must be"):
        beam_search_nbest(model, src, mask, beam=2, n_best=3)
    with pytest.raises(ValueError, match=r"max_length must be .*max_len=32"):
        greedy(model, src, mask, max_length=33)
    with pytest.raises(ValueError, match="max_length must be"):
        beam_search(model, src, mask, max_length=0)
    with pytest.raises(ValueError, match="early_stopping must be a bool"):
        beam_search(model, src, mask, early_stopping="never")
    with pytest.raises(ValueError, match="attention_mask must have the shape of input_ids"):
        greedy(model, src, mask[:, :3])
    with pytest.raises(TypeError, match="Seq2SeqTransformer"):
        greedy(TextClassifier(ClassifierConfig(vocab_size=V)), src, mask)
    with pytest.raises(ValueError, match="one per sentence"):
        sequence_scores(model, src, mask, [Hypothesis([4], 0.0, True)])



SEARCHES = {
    "greedy": lambda model, ids, mask, **kw: greedy(model, ids, mask, **kw),
    "greedy_search": lambda model, ids, mask, **kw: greedy_search(model, ids, mask, **kw),
    "beam_search": lambda model, ids, mask, **kw: beam_search(model, ids, mask, beam=2, **kw),
    "beam_search_nbest": lambda model, ids, mask, **kw: beam_search_nbest(model, ids, mask,
                                                                         beam=2, **kw),
}


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("bad,error,message", [
    (lambda src, mask: (src[0], None), ValueError,
     r"input_ids must have shape \(B, S\) with S >= 1, got \(6,\)"),
    (lambda src, mask: (src[:, :0], None), ValueError,
     r"input_ids must have shape \(B, S\) with S >= 1, got \(8, 0\)"),
    (lambda src, mask: (src.masked_fill(src == src[2, 1], V), mask), ValueError,
     r"input_ids must hold token ids in \[0, vocab_size=13\), got 13 \(row \d+, position"),
    (lambda src, mask: (src.masked_fill(src == src[2, 1], -1), mask), ValueError,
     r"input_ids must hold token ids in \[0, vocab_size=13\), got -1"),
    (lambda src, mask: (src, mask * 2), ValueError,
     r"attention_mask must hold only 1 \(token\) and 0 \(padding\), got 2"),
    (lambda src, mask: (src, mask - 1), ValueError,
     r"attention_mask must hold only 1 \(token\) and 0 \(padding\), got -1"),
    (lambda src, mask: (src.tolist(), None), TypeError,
     r"input_ids must be a long tensor \(B, S\), got a list"),
    (lambda src, mask: (src, mask.tolist()), TypeError,
     r"attention_mask must be a tensor or None, got a list"),
])
def test_bad_inputs_name_the_argument_and_the_value(search, bad, error, message):
    """Bad ids or masks are refused up front, not by torch's IndexError or AttributeError."""
    model = lively()
    src, mask = sources()
    ids, mask = bad(src, mask)
    with pytest.raises(error, match=message):
        SEARCHES[search](model, ids, mask, max_length=4)


@pytest.mark.parametrize("length_penalty", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("search", ["greedy_search", "beam_search", "beam_search_nbest"])
def test_length_penalty_must_be_finite(search, length_penalty):
    model = lively()
    src, mask = sources()
    with pytest.raises(ValueError, match=r"length_penalty must be a finite number.*got "
                                         + str(length_penalty)):
        SEARCHES[search](model, src, mask, max_length=4, length_penalty=length_penalty)
    with pytest.raises(ValueError, match="length_penalty must be a finite number"):
        sequence_scores(model, src, mask, [Hypothesis([4], 0.0, True)] * 8,
                        length_penalty=length_penalty)


def test_boolean_masks_are_accepted():
    model = lively()
    src, mask = sources()
    assert greedy(model, src, mask.bool(), max_length=5) == greedy(model, src, mask,
                                                                    max_length=5)


# --- a tiny model learns to reverse its input -----------------------------------------------

def reverse_pairs(n=32, vocab=V, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 8, (n,), generator=generator).tolist()
    src = [torch.randint(4, vocab, (k,), generator=generator).tolist() for k in lengths]
    return src, [s[::-1] for s in src]


def pad(rows):
    out = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row)
    return out


@pytest.fixture(scope="module")
def reverser():
    """A model trained on 32 random pairs (reverse the source) until it fits them all."""
    torch.manual_seed(0)
    src, tgt = reverse_pairs()
    input_ids = pad(src)
    mask = (input_ids != PAD).long()
    decoder_input_ids, labels = pad([[BOS] + t for t in tgt]), pad([t + [EOS] for t in tgt])
    model = Seq2SeqTransformer(Seq2SeqConfig(
        vocab_size=V, d_model=32, n_heads=2, n_encoder_layers=2, n_decoder_layers=2, d_ff=64,
        dropout=0.0, max_len=32, positional="rotary"))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(200):
            logits = model(input_ids, mask, decoder_input_ids).logits  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=PAD)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), input_ids, mask, tgt


def test_tiny_model_learns_to_reverse(reverser):
    model, input_ids, mask, targets = reverser
    assert greedy(model, input_ids, mask, max_length=10) == targets
    assert greedy(model, input_ids, mask, max_length=10, use_cache=False) == targets
    for beam in (2, 4, 5):
        assert beam_search(model, input_ids, mask, beam=beam, max_length=10) == targets


def test_trained_model_beam_cached_equals_uncached(reverser):
    model, input_ids, mask, _ = reverser
    kwargs = dict(beam=4, max_length=10, n_best=4)
    cached = beam_search_nbest(model, input_ids, mask, **kwargs)
    uncached = beam_search_nbest(model, input_ids, mask, use_cache=False, **kwargs)
    assert [[h.tokens for h in n] for n in cached] == [[h.tokens for h in n] for n in uncached]
    assert all(n[0].finished for n in cached)
