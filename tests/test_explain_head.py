"""``attnlab explain RUN TEXT``: one head of a real model, step by step, against the weights the
model computes (captured independently, every head) and against the formula recomputed here
from the printed scores; on a tiny classifier run, all-MiniLM-L6-v2 and a tiny translation
run (encoder self-attention, decoder causal self-attention, cross-attention)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from attnlab.cli import main
from attnlab.inspect import capture
from attnlab.inspect.neuron import HeadChoiceError, explain_head, find_token
from attnlab.inspect.subject import load_subject
from attnlab.io.registry import load_model
from attnlab.models.generation import greedy
from tiny_run import XSS, make_tiny_run

TRANSLATION = ["train", "--task", "translation", "--data", "multi30k", "--train-limit", "512",
               "--vocab-size", "600", "--dev-bleu-sentences", "8", "--batch-size", "32",
               "--d-model", "32", "--heads", "2", "--encoder-layers", "1", "--decoder-layers",
               "1", "--d-ff", "64", "--max-steps", "50", "--eval-steps", "50", "--quiet"]
SOURCE = "Ein Hund rennt durch den Schnee."
KEYS = {"tokens", "query_tokens", "query_index", "query", "keys", "values", "scores",
        "scaled_scores", "mask", "weights", "output", "layer", "head", "attention", "d_k",
        "scale", "model", "captured_weights"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("run") / "sst-tiny")


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("tr") / "de-en"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*TRANSLATION, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def explain_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main(["explain", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def check_steps(obj: dict, reference: torch.Tensor) -> None:
    """The JSON's weights are the model's; softmax and the weighted sum, redone here from the
    JSON's own numbers, give its weights and output back."""
    weights = torch.tensor(obj["weights"], dtype=torch.float64)
    torch.testing.assert_close(weights, reference.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(obj["captured_weights"], dtype=torch.float64),
                               reference.double(), rtol=0, atol=1e-6)
    mask = torch.tensor(obj["mask"])
    assert set(obj["mask"]) <= {0, 1}
    assert [x is None for x in obj["scaled_scores"]] == [m == 0 for m in obj["mask"]]
    scores = torch.tensor(obj["scores"], dtype=torch.float64)
    assert obj["scale"] == pytest.approx(1 / math.sqrt(obj["d_k"]), abs=1e-15)
    scaled = (scores * obj["scale"]).masked_fill(mask == 0, -math.inf)  # (S,)
    torch.testing.assert_close(torch.softmax(scaled, -1), weights, rtol=0, atol=1e-6)
    values = torch.tensor(obj["values"], dtype=torch.float64)  # (S, d_v)
    torch.testing.assert_close(weights @ values, torch.tensor(obj["output"],
                                                              dtype=torch.float64),
                               rtol=0, atol=1e-6)
    query, keys = (torch.tensor(obj[n], dtype=torch.float64) for n in ("query", "keys"))
    torch.testing.assert_close(keys @ query, scores, rtol=0, atol=1e-6)  # (S, d_k) x (d_k,)
    assert len(obj["tokens"]) == len(obj["weights"]) == len(obj["keys"])


@torch.no_grad()
def encoder_reference(spec, text: str, layer: int, head: int, query: int) -> torch.Tensor:
    """The weights of every head of every layer, captured in a separate pass: one row."""
    subject = load_subject(spec)
    enc = subject.encode([text])
    with capture(subject.model) as cap:
        subject.model(enc.input_ids, enc.attention_mask)
    return cap[layer][0, head, query]  # (S,)


# --- a tiny classifier run --------------------------------------------------------------------

@pytest.mark.parametrize("layer, head, token, index", [
    (0, 0, "film", 3), (1, 3, "FILM", 3), (1, 2, "0", 0), (0, 1, "-1", 4), (1, 1, "good", 2)])
def test_classifier_head_gives_the_models_weights(run, capsys, layer, head, token, index):
    obj = explain_json(capsys, str(run), "a good film", "--layer", str(layer), "--head",
                       str(head), "--token", token)
    assert KEYS <= obj.keys()
    assert obj["tokens"] == obj["query_tokens"] == ["[CLS]", "a", "good", "film", "[SEP]"]
    assert obj["query_index"] == index and obj["layer"] == layer and obj["head"] == head
    assert obj["attention"] == "self" and obj["d_k"] == 4 and obj["model"] == "sst-tiny"
    check_steps(obj, encoder_reference(run, "a good film", layer, head, index))


def test_classifier_text_output_is_a_table_of_keys(run, capsys):
    assert main(["explain", str(run), "a good film", "--layer", "1", "--head", "2", "--token",
                 "good"]) == 0
    out = capsys.readouterr().out
    obj = explain_json(capsys, str(run), "a good film", "--layer", "1", "--head", "2",
                       "--token", "good")
    assert str(run) not in out  # the run's name, not a whole local path
    for text in ("Attention of one head: sst-tiny, layer 1, head 2 (self-attention, "
                 "encoder.layers.1.attn)", 'query token: "good" (position 2 of 5)',
                 "d_k = 4, √d_k = 2.0000", "q: what this token looks for; k: what each token "
                 "offers; q·k: how well they match; divided by √d_k",
                 "softmax turns scores into weights summing to 1; output = Σ weight·v",
                 "q·k/√d_k + mask", "output = Σ weight·v  (d_v = 4)",
                 "most of the output comes from: "):
        assert text in out, text
    assert ["sum", "1.0000"] in [line.split() for line in out.splitlines()]
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [r[1] for r in rows] == obj["tokens"]
    for row, s, z, m, w in zip(rows, obj["scores"], obj["scaled_scores"], obj["mask"],
                               obj["weights"], strict=True):
        assert row[2:6] == [f"{s:.4f}", f"{z:.4f}", str(m), f"{w:.4f}"]
    assert f"[ {' '.join(f'{x:.4f}' for x in obj['output'])} ]".split() == \
        out.split("(d_v = 4)\n")[1].splitlines()[0].split()


def test_the_library_takes_a_subject_and_decimals_round_the_json(run, capsys):
    subject = load_subject(run)
    found = explain_head(subject, "a bad film", layer=0, head=2, token="bad")
    assert found.query_token == "bad" and found.module == "encoder.layers.0.attn"
    torch.testing.assert_close(found.weights, found.captured_weights.double(), rtol=0,
                               atol=1e-6)
    assert float(found.contributions.sum()) == pytest.approx(1.0)
    rounded = explain_json(capsys, str(run), "a bad film", "--layer", "0", "--head", "2",
                           "--token", "bad", "--decimals", "2")
    assert rounded["weights"] == [round(w, 2) for w in found.weights.tolist()]


def test_a_hostile_looking_text_is_printed_literally(run, capsys):
    assert main(["explain", str(run), XSS, "--layer", "0", "--head", "0", "--token",
                 "onerror"]) == 0
    out = capsys.readouterr().out
    obj = explain_json(capsys, str(run), XSS, "--layer", "0", "--head", "0", "--token",
                       "onerror")
    assert obj["query_tokens"][obj["query_index"]] == "onerror"
    assert "<" in obj["tokens"] and "script" in obj["tokens"]
    assert f"text: {XSS}" in out and "&lt;" not in out and "\\u003c" not in out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit() or
            line.lstrip()[:1].isdigit()]
    assert [r[1] for r in rows] == obj["tokens"]


@pytest.mark.parametrize("argv, message", [
    (["--layer", "0", "--head", "0", "--token", "nothing"],
     "--token 'nothing' is not among the 5 query tokens ['[CLS]', 'a', 'good', 'film', "
     "'[SEP]']"),
    (["--layer", "0", "--head", "0", "--token", "9"], "--token position 9 is out of range"),
    (["--layer", "2", "--head", "0", "--token", "film"], "--layer must be an integer in [0, 2)"),
    (["--layer", "-1", "--head", "0", "--token", "film"], "--layer must be an integer in [0, 2)"),
    (["--layer", "0", "--head", "4", "--token", "film"], "--head must be an integer in [0, 4)"),
    (["--layer", "0", "--head", "0", "--token", "film", "--attention", "cross"],
     "--attention must be one of self for sst-tiny (its kinds of attention), got 'cross'"),
    (["--layer", "0", "--head", "0", "--token", "film", "--attention", "sideways"],
     "--attention must be one of self for sst-tiny (its kinds of attention), got 'sideways'"),
    (["--layer", "0", "--head", "0"], "needs --token"),
    (["--layer", "0", "--head", "0", "--token", "film", "--q", "[[1]]"],
     "--q type matrices by hand, RUN explains a model's head: give one or the other"),
])
def test_bad_choices_are_one_line_errors_naming_the_option(run, capsys, argv, message):
    assert main(["explain", str(run), "a good film", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("attnlab explain: error: ") and message in captured.err, \
        captured.err


@pytest.mark.parametrize("argv, message", [
    (["--layer", "0", "--q", "[[1]]", "--k", "[[1]]", "--v", "[[1]]"],
     "--layer explain a model's head: give RUN and TEXT first"),
    ([], "missing: --q, --k, --v"),
    (["--q", "[[1]]"], "missing: --k, --v"),
])
def test_matrix_mode_usage_errors(capsys, argv, message):
    assert main(["explain", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnlab explain: error: ") and message in err, err


def test_text_without_run_options_is_an_error(run, capsys):
    assert main(["explain", str(run), "--layer", "0", "--head", "0", "--token", "a"]) == 2
    assert "TEXT is missing" in capsys.readouterr().err


def test_find_token_prefers_exact_then_ignores_marks_and_case():
    tokens = ["[CLS]", "Ġthe", "##ing", "▁Film", "film", "7"]
    assert find_token(tokens, "film") == 4  # exact first
    assert find_token(tokens, "the") == 1 and find_token(tokens, "ING") == 2
    assert find_token(tokens, "▁film") == 3  # marks and case ignored when nothing is exact
    assert find_token(tokens, "7") == 5  # a token that looks like a number is a token ...
    assert find_token(tokens, "2") == 2 and find_token(tokens, -1) == 5  # ... else a position
    for bad in ("dog", "##", 6, -7):
        with pytest.raises(HeadChoiceError, match="token"):
            find_token(tokens, bad)


# --- all-MiniLM-L6-v2 ---------------------------------------------------------------------------

def test_minilm_head_gives_the_models_weights(capsys):
    text = "a gripping , funny film"
    argv = ["all-MiniLM-L6-v2", text, "--layer", "1", "--head", "2", "--token", "film"]
    obj = explain_json(capsys, *argv)
    assert obj["tokens"] == ["[CLS]", "a", "gripping", ",", "funny", "film", "[SEP]"]
    assert obj["query_index"] == 5 and obj["d_k"] == 32 and obj["model"] == "all-MiniLM-L6-v2"
    assert obj["mask"] == [1] * 7 and None not in obj["scaled_scores"]
    check_steps(obj, encoder_reference("all-MiniLM-L6-v2", text, 1, 2, 5))
    assert main(["explain", *argv]) == 0
    out = capsys.readouterr().out
    assert "all-MiniLM-L6-v2, layer 1, head 2" in out and "d_k = 32, √d_k = 5.6569" in out
    assert main(["explain", *argv[:2], "--layer", "6", "--head", "0", "--token", "film"]) == 2
    assert "--layer must be an integer in [0, 6)" in capsys.readouterr().err


# --- a tiny translation run ---------------------------------------------------------------------

@torch.no_grad()
def translation_reference(path, attention: str, module: str, head: int, query: int):
    """Greedy translation and a teacher-forced pass capturing every head, redone here."""
    loaded = load_model(path)
    model, tokenizer = loaded.model, loaded.tokenizer
    source = torch.tensor([tokenizer.encode([SOURCE])[0][1:]])  # (1, S): pieces + [EOS]
    mask = torch.ones_like(source)
    target = [model.config.bos_token_id, *greedy(model, source, mask)[0]]
    with capture(model) as cap:
        model(source, mask, torch.tensor([target]))
    pieces = [tokenizer.tokenizer.id_to_token(i) for i in target]
    source_pieces = [tokenizer.tokenizer.id_to_token(i) for i in source[0].tolist()]
    return cap.weights[module][0, head, query], source_pieces, pieces


@pytest.mark.parametrize("attention, token", [
    ("self", "Hund"), ("self", "1"), ("decoder", "0"), ("decoder", "-1"), ("cross", "-1"),
    ("cross", "1")])
def test_translation_heads_give_the_models_weights(translation_run, capsys, attention, token):
    obj = explain_json(capsys, str(translation_run), SOURCE, "--attention", attention,
                       "--layer", "0", "--head", "1", "--token", token)
    assert obj["attention"] == attention and obj["model"] == "de-en"
    expected_module = {"self": "encoder.layers.0.attn", "decoder": "decoder.layers.0.self_attn",
                       "cross": "decoder.layers.0.cross_attn"}[attention]
    assert obj["module"] == expected_module
    reference, source, target = translation_reference(translation_run, attention,
                                                      expected_module, 1, obj["query_index"])
    assert obj["query_tokens"] == (source if attention == "self" else target)
    assert obj["tokens"] == (target if attention == "decoder" else source)
    assert obj["query_tokens"][0] == ("▁Ein" if attention == "self" else "[CLS]")
    if token == "Hund":
        assert obj["query_tokens"][obj["query_index"]] == "▁Hund"
    else:
        assert obj["query_index"] == int(token) % len(obj["query_tokens"])
    if attention == "decoder":  # causal: query i sees keys j <= i only
        i = obj["query_index"]
        assert obj["mask"] == [int(j <= i) for j in range(len(obj["tokens"]))]
    else:
        assert set(obj["mask"]) == {1}
    check_steps(obj, reference)


def test_translation_text_output_and_layer_errors(translation_run, capsys):
    assert main(["explain", str(translation_run), SOURCE, "--attention", "cross", "--layer",
                 "0", "--head", "0", "--token", "0"]) == 0
    out = capsys.readouterr().out
    for text in ("de-en, layer 0, head 0 (cross-attention, decoder.layers.0.cross_attn)",
                 f"text: {SOURCE}", "generated first (greedy): ",
                 "queries: [BOS] + the generated tokens; keys: the source",
                 'query token: "[CLS]" (position 0 of'):
        assert text in out, text
    assert main(["explain", str(translation_run), SOURCE, "--attention", "decoder", "--layer",
                 "1", "--head", "0", "--token", "0"]) == 2
    err = capsys.readouterr().err
    assert "--layer must be an integer in [0, 1) (1 layers of 'decoder' attention" in err
    assert main(["explain", str(translation_run), SOURCE, "--layer", "0", "--head", "2",
                 "--token", "0"]) == 2
    assert "--head must be an integer in [0, 2)" in capsys.readouterr().err
