"""The "what mattered" row's data: every shown method's scores in the page's payload (the
HTML view, ``show --html`` and the live app's answers, for a classifier and a translation
run), the cross-attention beside a translation's attributions, the run's faithfulness report
read when present and ignored when missing or malformed, and hostile tokens kept as data."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch

from attnlab.inspect.app import create_app
from attnlab.inspect.attribution import attribute
from attnlab.inspect.html import embed_json, render_page
from attnlab.inspect.mattered import (
    MAX_QUADRATIC_TOKENS,
    QUADRATIC,
    SHOWN_METHODS,
    Mattered,
    format_tops,
    mattered_block,
    read_faithfulness,
    top_tokens,
)
from attnlab.inspect.subject import attention_view, load_subject
from attnlab.tasks.translation.view import attend_translation
from tiny_run import make_tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "a good film"
SOURCE = "Zwei Männer."  # a short output of the tiny run: few decisions to attribute
HOSTILE = "</script><img src=x onerror=alert(1)>"
REPORT = {"model": "run", "data": "/somewhere/private/sst2", "split": "dev", "n": 872,
          "methods": {"integrated_gradients": {"comprehensiveness": 0.312, "sufficiency": 0.051,
                                               "comprehensiveness_sem": 0.01,
                                               "deletion_curve": [1.0, 0.5], "seconds": 3.5},
                      "random": {"comprehensiveness": 0.101, "sufficiency": 0.230,
                                 "seeds": [0, 1, 2], "spread": {"comprehensiveness": 0.004}}}}


def rows(entry: dict) -> torch.Tensor:
    return torch.tensor(entry["scores"])  # (D, L)


def check_block(block: dict, subject, text: str) -> None:
    """Every shown method's entry holds the library's scores (to the 6 digits kept)."""
    assert [e["name"] for e in block["methods"]] == list(SHOWN_METHODS)
    assert block["method"] == "integrated_gradients"
    for entry in block["methods"]:
        [a] = attribute(subject, text, method=entry["name"])
        assert block["tokens"] == a.tokens and block["targets"] == a.targets
        assert block["special"] == a.special
        torch.testing.assert_close(rows(entry), a.scores, rtol=1e-5, atol=1e-9)
        assert entry["probabilities"] == pytest.approx(a.probabilities, rel=1e-5)
        assert (entry["gap"] is None) == (entry["name"] != "integrated_gradients")


def test_classifier_payload_carries_every_methods_scores(classifier):
    payload = classifier.payload(TEXT)
    [s] = payload["sentences"]
    check_block(s["mattered"], classifier, TEXT)
    assert s["mattered"]["tokens"] == s["tokens"]  # the same tokens as the rollout row
    assert s["mattered"]["targets"] == [s["prediction"]["label"]]
    assert s["mattered"]["source_length"] is None and s["mattered"]["cross"] is None
    assert payload["faithfulness"] is None  # the tiny run has no report
    json.loads(embed_json(payload))  # JSON-ready, no NaN


def test_show_html_page_holds_the_row(classifier_run, classifier, tmp_path):
    page = classifier.look([TEXT, "i hated it"]).view().html
    data = json.loads(re.search(r'id="attnlab-data" type="application/json">(.*?)</script>',
                                page, re.S)[1])
    assert [s["mattered"]["targets"] for s in data["sentences"]] == [
        [a.prediction.label] for a in classifier.attend([TEXT, "i hated it"])]
    check_block(data["sentences"][1]["mattered"], classifier, "i hated it")
    assert "<script src" not in page and "window.AttnMattered" in page  # the script inline


def test_live_app_answers_carry_the_row(classifier):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    client = TestClient(create_app(classifier), base_url="http://127.0.0.1:8000")
    answer = client.post("/api/attend", json={"text": TEXT})
    assert answer.status_code == 200
    check_block(answer.json()["sentences"][0]["mattered"], classifier, TEXT)
    page = client.get("/").text  # the example, analysed in the page, has its row too
    assert '"mattered":{"tokens":["[CLS]"' in page


def test_quadratic_methods_are_left_out_of_long_inputs(tmp_path):
    subject = load_subject(make_tiny_run(tmp_path / "long", train_steps=5, max_len=128))
    long = "a good film " * 22  # 66 words + [CLS] and [SEP]: over MAX_QUADRATIC_TOKENS
    look = subject.look([TEXT, long])
    lines = [x for x in look.lines if x.startswith("  what mattered (")]
    assert len(lines) == 2 * len(SHOWN_METHODS)
    for method in QUADRATIC:
        assert f"  what mattered ({method}): left out (the input has over 64 tokens" in (
            lines[len(SHOWN_METHODS):][SHOWN_METHODS.index(method)])
    short = subject.payload(TEXT)["sentences"][0]["mattered"]
    too_long = subject.payload(long)["sentences"][0]["mattered"]
    assert [e["name"] for e in short["methods"]] == list(SHOWN_METHODS) and short["note"] is None
    assert [e["name"] for e in too_long["methods"]] == [m for m in SHOWN_METHODS
                                                        if m not in QUADRATIC]
    assert too_long["note"].startswith("Left out: value zeroing, leave one out (the input has")
    assert MAX_QUADRATIC_TOKENS == 64


def test_a_sentence_encoder_has_no_row(classifier):
    encoder = dataclasses.replace(classifier, labels=None)  # the same model, no head to explain
    [s] = encoder.payload(TEXT)["sentences"]
    assert s["mattered"] is None and s["prediction"] is None


def test_faithfulness_report_is_read_with_only_its_numbers(classifier_run, classifier, tmp_path):
    folder = classifier_run / "faithfulness"
    folder.mkdir()
    try:
        (folder / "faithfulness.json").write_text(json.dumps(REPORT))
        payload = classifier.payload(TEXT)
        assert attention_view(classifier, TEXT).html.count('"comprehensiveness":0.312') == 1
    finally:
        (folder / "faithfulness.json").unlink()
        folder.rmdir()
    assert payload["faithfulness"] == {
        "split": "dev", "n": 872, "data": "sst2",  # the data set's name, not its path
        "methods": {"integrated_gradients": {"comprehensiveness": 0.312, "sufficiency": 0.051,
                                             "comprehensiveness_sem": 0.01, "seconds": 3.5},
                    "random": {"comprehensiveness": 0.101, "sufficiency": 0.230}}}


def test_report_of_a_run_is_found_from_its_best_folder(tmp_path):
    (tmp_path / "faithfulness").mkdir()
    (tmp_path / "faithfulness" / "faithfulness.json").write_text(json.dumps(REPORT))
    assert read_faithfulness(tmp_path / "best")["n"] == 872
    assert read_faithfulness(tmp_path / "other") is None
    assert read_faithfulness(None) is None


@pytest.mark.parametrize("content", [
    b"not json", b"[]", b'{"methods": 3}', b'{"methods": {"x": {"comprehensiveness": "high"}}}',
    b'{"methods": {"x": {"comprehensiveness": NaN, "sufficiency": Infinity}}}',
    b'{"methods": {"x": {"comprehensiveness": 1' + b"0" * 400 + b"}}}",
    b'{"methods": {"x": [1, 2]}}', b"\xff\xfe{}", b"[" * 100_000, b"",
])
def test_a_malformed_report_gives_no_figures(tmp_path, content):
    (tmp_path / "faithfulness").mkdir()
    (tmp_path / "faithfulness" / "faithfulness.json").write_bytes(content)
    assert read_faithfulness(tmp_path) is None


def test_a_report_that_is_a_folder_gives_no_figures(tmp_path):
    (tmp_path / "faithfulness" / "faithfulness.json").mkdir(parents=True)
    assert read_faithfulness(tmp_path) is None


def test_a_report_with_odd_fields_keeps_what_is_sound(tmp_path):
    report = {"split": 3, "n": True, "data": None,
              "methods": {"saliency": {"comprehensiveness": 0.2, "sufficiency": False}}}
    (tmp_path / "faithfulness").mkdir()
    (tmp_path / "faithfulness" / "faithfulness.json").write_text(json.dumps(report))
    assert read_faithfulness(tmp_path) == {"split": None, "n": None, "data": None,
                                           "methods": {"saliency": {"comprehensiveness": 0.2}}}


def test_top_tokens_rank_by_score_without_specials(classifier):
    [a] = attribute(classifier, "the best movie of the year", method="leave_one_out")
    scores = a.scores[0].tolist()
    expected = sorted((i for i, s in enumerate(a.special) if not s), key=lambda i: -scores[i])
    assert top_tokens(a, k=4) == [(a.tokens[i], scores[i]) for i in expected[:4]]
    assert all(not a.special[a.tokens.index(t)] for t, _ in top_tokens(a, k=10))


def test_hostile_tokens_stay_data_in_the_page(classifier):
    [a] = attribute(classifier, TEXT, method="saliency")
    hostile = dataclasses.replace(a, tokens=[HOSTILE, *a.tokens[1:]], targets=[HOSTILE],
                                  details={HOSTILE: HOSTILE})
    [s] = classifier.payload(TEXT)["sentences"]
    s["mattered"] = mattered_block({HOSTILE: hostile})
    payload = {"model": HOSTILE, "sentences": [s],
               "faithfulness": {"split": HOSTILE, "n": 1, "data": HOSTILE,
                                "methods": {HOSTILE: {"comprehensiveness": 0.5}}}}
    page = render_page("view.html", payload)
    assert "<img" not in page and page.count("</script>") == 3
    data = re.search(r'id="attnlab-data" type="application/json">(.*?)</script>', page, re.S)[1]
    assert json.loads(data) == payload


def test_no_finite_score_no_page(classifier):
    [a] = attribute(classifier, TEXT, method="saliency")
    broken = dataclasses.replace(a, scores=torch.full_like(a.scores, math.nan))
    with pytest.raises(ValueError, match="nan"):
        mattered_block({"saliency": broken})


# --- a translation run ------------------------------------------------------------------------

def test_translation_payload_has_decisions_and_cross_attention(translation):
    payload = translation.payload(SOURCE)
    [s] = payload["sentences"]
    block = s["mattered"]
    a = attend_translation(translation.translator, SOURCE)
    assert block["targets"] == a.target_tokens
    assert block["tokens"][:block["source_length"]] == a.source_tokens
    assert block["decision_kinds"] == ["cross", "decoder"]
    cross_kind = next(k for k in s["kinds"] if k["name"] == "cross")
    assert cross_kind["query_tokens"] == block["targets"]  # a click on row d is decision d
    torch.testing.assert_close(torch.tensor(block["cross"]), a.cross[-1].mean(0),
                               rtol=1e-5, atol=1e-7)
    names = [e["name"] for e in block["methods"]]
    assert names == [m for m in SHOWN_METHODS if m in names] and "integrated_gradients" in names
    for entry in block["methods"]:
        [expected] = attribute(translation, SOURCE, method=entry["name"])
        assert rows(entry).shape == (len(block["targets"]), len(block["tokens"]))
        torch.testing.assert_close(rows(entry), expected.scores, rtol=1e-5, atol=1e-9)


def test_translation_payload_reads_the_runs_report(translation):
    run = translation.translator.path.parent  # the translator was loaded from run/best
    assert translation.translator.path.name == "best"
    (run / "faithfulness").mkdir()
    try:
        (run / "faithfulness" / "faithfulness.json").write_text(json.dumps(REPORT))
        payload = translation.payload(SOURCE)
    finally:
        (run / "faithfulness" / "faithfulness.json").unlink()
        (run / "faithfulness").rmdir()
    assert payload["faithfulness"]["n"] == 872
    assert payload["faithfulness"]["methods"]["random"]["comprehensiveness"] == 0.101
    assert translation.payload(SOURCE)["faithfulness"] is None


def test_translation_look_view_and_lines(translation):
    look = translation.look([SOURCE, "Zwei Männer sitzen."])
    lines = [x for x in look.lines if x.startswith("  what mattered (")]
    assert len(lines) == 2 and all("(integrated_gradients)" in x for x in lines)
    [a] = attribute(translation, "Zwei Männer sitzen.")
    assert lines[1] == f"  what mattered (integrated_gradients): {format_tops(a)}"
    page = look.view().html
    data = json.loads(re.search(r'id="attnlab-data" type="application/json">(.*?)</script>',
                                page, re.S)[1])
    assert [s["mattered"]["targets"] for s in data["sentences"]] == [
        attribute(translation, t, method="attention")[0].targets
        for t in (SOURCE, "Zwei Männer sitzen.")]


def test_an_empty_mattered_gives_no_rows():
    assert Mattered({}).blocks(2) == [None, None] and Mattered({}).lines(0) == []
