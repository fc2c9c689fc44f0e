"""Cross-attention captured during generation (greedy and beam search) against one
teacher-forced forward pass, padding, word alignments (Pharaoh format, pieces merged into words)
and the commands: ``translate --alignments`` and ``show`` of a translation run."""

from __future__ import annotations

import json
import re

import pytest
import torch

from attnlab.attention.hooks import HookPoint
from attnlab.cli import main
from attnlab.inspect import capture
from attnlab.inspect.alignment import (
    align,
    merge_pieces,
    pharaoh,
    piece_words,
    source_piece_words,
    target_piece_words,
    word_alignment,
    word_attention,
)
from attnlab.models import beam_search_nbest, greedy_search
from attnlab.tasks.translation.translator import Translator
from attnlab.text import TextTokenizer
from lively_seq2seq import BOS, EOS, lively, sources
from tiny_translation import make_tiny_translation_run

pytestmark = pytest.mark.usefixtures("one_thread")

PAIR = re.compile(r"^(\d+)-(\d+)$")


def teacher_forced(model, src, mask, hyp) -> torch.Tensor:
    """The cross-attention ``(L, H, T, S_b)`` of one forward pass on the hypothesis's tokens
    (its EOS included when it ended), for one sentence without padding."""
    n = int(mask.sum())
    targets = hyp.tokens + [EOS] * hyp.finished
    inputs = torch.tensor([[BOS] + targets[:-1]])  # (1, T)
    names = [f"decoder.layers.{i}.cross_attn" for i in range(model.config.n_decoder_layers)]
    with torch.no_grad(), capture(model, layers=names) as cap:
        model(src[None, :n], mask[None, :n], inputs)
    return cap.stack()[:, 0]  # (L, H, T, S_b)


def cross_points(model):
    return [layer.cross_attn.hook_pattern for layer in model.decoder.layers]


# --- capture during generation ------------------------------------------------------------

@pytest.mark.parametrize("positional", ["sinusoidal", "rotary"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_attention_equals_a_teacher_forced_forward(positional, use_cache):
    model = lively(positional, seed=1)
    src, mask = sources()
    hyps = greedy_search(model, src, mask, max_length=10, use_cache=use_cache, attention=True)
    assert any(h.finished for h in hyps) and not all(h.finished for h in hyps)
    for b, h in enumerate(hyps):
        expected = teacher_forced(model, src[b], mask[b], h)
        assert h.attention.shape == (2, 2, len(h.tokens) + h.finished, int(mask[b].sum()))
        torch.testing.assert_close(h.attention, expected, atol=1e-5, rtol=0)
    assert not any(p.active for p in cross_points(model))  # observers released


@pytest.mark.parametrize("early_stopping", [False, True])
def test_beam_attention_follows_the_returned_beams(early_stopping):
    model = lively(seed=1)
    src, mask = sources()
    nbest = beam_search_nbest(model, src, mask, beam=4, n_best=4, max_length=10,
                              early_stopping=early_stopping, attention=True)
    plain = beam_search_nbest(model, src, mask, beam=4, n_best=4, max_length=10,
                              early_stopping=early_stopping)
    assert [[h.tokens for h in n] for n in nbest] == [[h.tokens for h in n] for n in plain]
    assert any(not h.finished for n in nbest for h in n)  # some cut at max_length, too
    for b, hyps in enumerate(nbest):
        for h in hyps:
            torch.testing.assert_close(h.attention, teacher_forced(model, src[b], mask[b], h),
                                       atol=1e-5, rtol=0)
    assert all(h.attention is None for n in plain for h in n)
    assert not any(p.active for p in cross_points(model))


@pytest.mark.parametrize("beam", [1, 4])
def test_padding_never_leaks_batched_equals_one_by_one(beam):
    model = lively(seed=2)
    src, mask = sources()

    def search(s, m):
        if beam == 1:
            return greedy_search(model, s, m, max_length=10, attention=True)
        return [n[0] for n in beam_search_nbest(model, s, m, beam=beam, max_length=10,
                                                attention=True)]

    batched = search(src, mask)
    for b, h in enumerate(batched):
        n = int(mask[b].sum())
        alone = search(src[b:b + 1, :n], mask[b:b + 1, :n])[0]
        assert alone.tokens == h.tokens
        torch.testing.assert_close(h.attention, alone.attention, atol=1e-5, rtol=0)
        torch.testing.assert_close(h.attention.sum(-1), torch.ones(h.attention.shape[:-1]),
                                   atol=1e-5, rtol=0)  # all of it on the S_b real tokens


def test_plain_generation_observes_nothing(monkeypatch):
    model = lively(seed=1)
    src, mask = sources()

    def refuse(*args, **kwargs):
        raise AssertionError("a hook point was observed during plain generation")

    monkeypatch.setattr(HookPoint, "observe", refuse)
    assert all(h.attention is None for h in greedy_search(model, src, mask, max_length=6))
    assert all(h.attention is None
               for n in beam_search_nbest(model, src, mask, beam=3, max_length=6) for h in n)
    with pytest.raises(ValueError, match="attention must be a bool"):
        greedy_search(model, src, mask, attention="yes")


# --- word alignment -----------------------------------------------------------------------

def test_merge_pieces_sums_source_pieces_and_averages_target_pieces():
    weights = torch.tensor([[0.5, 0.3, 0.2],  # target piece 0 (word 0)
                            [0.1, 0.1, 0.8],  # target piece 1 (word 1)
                            [0.3, 0.3, 0.4],  # target piece 2 (word 1)
                            [0.0, 0.0, 1.0]])  # EOS: no word
    merged = merge_pieces(weights, [0, 1, 1, None], [0, 0, None], 2, 1)  # (J=2, I=1)
    torch.testing.assert_close(merged, torch.tensor([[0.8], [0.4]]))


def test_align_a_hand_made_example():
    # 3 target words, 3 source words; layer 1 says 2-0 0-1 1-2, layer 0 says otherwise
    crossed = torch.tensor([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.2, 0.6, 0.2]])
    flat = torch.tensor([[0.9, 0.05, 0.05]] * 3)
    weights = torch.stack([torch.stack([flat, flat]), torch.stack([crossed, crossed])])
    assert align(weights, 1) == [(2, 0), (0, 1), (1, 2)] == align(weights, -1)
    assert align(weights, 0) == [(0, 0), (0, 1), (0, 2)]
    assert align(weights) == align(weights, 0)  # the penultimate layer of two
    assert pharaoh(align(weights, 1)) == "2-0 0-1 1-2"
    with pytest.raises(ValueError, match="layer must be an integer in \\[-2, 2\\) or 'mean'"):
        align(weights, 2)


def test_piece_words_from_character_spans():
    text = "Ein  Hund rennt."
    # "▁Ein" (0, 3), a bare "▁" (3, 4) starts the next word, "▁Hu" "nd", "▁rennt" ".", EOS
    spans = [(0, 3), (3, 4), (4, 7), (7, 9), (9, 15), (15, 16), None, (16, 16)]
    assert piece_words(spans, text) == [0, 1, 1, 1, 2, 2, None, None]


@pytest.fixture(scope="module")
def tokenizer(data_dir) -> TextTokenizer:
    lines = (data_dir / "multi30k" / "train.de").read_text(encoding="utf-8").splitlines()[:2000]
    lines += (data_dir / "multi30k" / "train.en").read_text(encoding="utf-8").splitlines()[:2000]
    return TextTokenizer.train(lines, 500, kind="bpe")


def test_pieces_find_their_words_through_offsets_and_decoding(tokenizer):
    text = "Ein Hund rennt durch den Schnee."
    ids = tokenizer.encode([text])[0][1:]  # pieces + [EOS], as the encoder sees them
    words = source_piece_words(tokenizer, text, len(ids))
    pieces = [tokenizer.tokenizer.id_to_token(i) for i in ids]
    assert words[-1] is None and len(words) == len(ids)
    for piece, word in zip(pieces[:-1], words[:-1], strict=True):
        assert piece.lstrip("\u2581") in text.split()[word]
    out = tokenizer.encode(["A dog runs through the snow."])[0][1:-1]
    target, decoded = target_piece_words(tokenizer, out, len(out) + 1)
    assert decoded == "A dog runs through the snow." and target[-1] is None
    assert sorted(set(target[:-1])) == list(range(6)) and target == sorted(target[:-1]) + [None]


def test_word_attention_and_alignment_of_a_known_attention(tokenizer):
    text, output = "Hund Ein", "A dog"  # word 0 of the output looks at source word 1
    src = tokenizer.encode([text])[0][1:]  # (S,) with [EOS]
    out = tokenizer.encode([output])[0][1:-1]
    S, T = len(src), len(out) + 1
    source_words = source_piece_words(tokenizer, text, S)
    target_words, _ = target_piece_words(tokenizer, out, T)
    attention = torch.zeros(1, 2, T, S)
    for t, j in enumerate(target_words):
        for s, i in enumerate(source_words):
            if j is not None and i is not None and i == 1 - j:
                attention[:, :, t, s] = 1.0
    merged = word_attention(tokenizer, text, out, attention)
    assert merged.source_words == ["Hund", "Ein"] and merged.target_words == ["A", "dog"]
    assert word_alignment(tokenizer, text, out, attention) == [(1, 0), (0, 1)]


# --- the commands on a tiny trained run -----------------------------------------------------

# 40 steps at a high learning rate: enough for outputs made of words (6 steps give only [BOS])
@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    return make_tiny_translation_run(tmp_path_factory.mktemp("attention") / "de-en")


def test_translate_attention_equals_teacher_forcing_on_a_trained_run(run):
    loaded = Translator.load(run)
    t = loaded.translate(["Ein Hund rennt durch den Schnee."], attention=True,
                         max_length=12)[0]
    ids = loaded.tokenizer.encode([t.text])[0][1:]
    src, mask = torch.tensor(ids), torch.ones(len(ids), dtype=torch.long)
    hyp = type("H", (), {"tokens": t.ids, "finished": t.finished})
    with torch.no_grad():
        expected = teacher_forced(loaded.model, src, mask, hyp)
    torch.testing.assert_close(t.attention, expected, atol=1e-5, rtol=0)
    assert len(t.source_tokens) == len(ids) and len(t.target_tokens) == t.attention.shape[2]


def test_translate_prints_pharaoh_alignments(run, capsys):
    texts = ["Ein Hund rennt durch den Schnee.", "Zwei Männer."]
    capsys.readouterr()
    assert main(["translate", str(run), *texts, "--alignments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * len(texts) and all(t.split() for t in lines[::2])
    for text, translation, pairs in zip(texts, lines[::2], lines[1::2], strict=True):
        found = [PAIR.match(p) for p in pairs.split()]
        assert all(found), pairs
        ij = [(int(m.group(1)), int(m.group(2))) for m in found]
        assert all(0 <= i < len(text.split()) and 0 <= j < len(translation.split())
                   for i, j in ij)
        assert [j for _, j in ij] == list(range(len(translation.split())))
    assert main(["translate", str(run), texts[0], "--alignments", "--json", "--beam", "3",
                 "--alignment-layer", "mean"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"text", "translation", "tokens", "alignments"} <= record.keys()
    assert all(isinstance(p, list) and len(p) == 2 for p in record["alignments"])


def test_show_draws_the_cross_attention_of_a_translation(run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["show", str(run), "Ein Mann fährt Fahrrad.", "--out",
                 str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "translation: " in out and "alignment: " in out and f"wrote {tmp_path / 'x.png'}" in out
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["show", str(run), "Ein Mann fährt Fahrrad.", "--words", "--layer", "-1",
                 "--head", "1", "--out", str(tmp_path / "w.png")]) == 0
    assert main(["show", str(run), "Ein Mann.", "--layer", "0",
                 "--out", str(tmp_path / "l.png")]) == 0
    assert (tmp_path / "w.png").is_file() and (tmp_path / "l.png").is_file()


@pytest.mark.parametrize("argv,message", [
    (["translate", "{run}", "Ein Hund.", "--alignments", "--alignment-layer", "5"],
     "--alignment-layer must be in [-2, 2)"),
    (["translate", "{run}", "Ein Hund.", "--alignments", "--alignment-layer", "top"],
     "--alignment-layer must be an integer or 'mean'"),
    (["translate", "{run}", "Ein Hund.", "--alignment-layer", "0"],
     "--alignment-layer needs --alignments"),
    (["show", "{run}", "Ein Hund.", "--layer", "2", "--out", "x.png"], "--layer must be in"),
    (["show", "{run}", "Ein Hund.", "--layer", "0", "--head", "2", "--out", "x.png"],
     "--head must be in [0, 2)"),
    (["show", "{run}", "Ein Hund.", "--head", "0"], "--head needs --layer"),
    (["evaluate", "{run}", "--batch-size", "4"],
     "--batch-size does not apply to translation runs; it is an option of classification runs"),
    (["predict", "{run}", "Ein Hund."], "predict applies to classification runs; "),
    (["show", "{run}", "Ein Hund.", "--beam", "0"], "beam must be an integer >= 1, got 0"),
])
def test_bad_options_exit_2_with_a_message(run, capsys, tmp_path, argv, message):
    argv = [a.replace("{run}", str(run)).replace("x.", str(tmp_path / "x.")) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
