"""The "what mattered" row in a real browser (Chromium driven by Playwright): the HTML file
and the live app shade each token by the chosen method's scores (the library's numbers),
switching the method switches them, the run's faithfulness figures stand beside them, a click
on a generated token of a translation shows its attribution beside its cross-attention, and
hostile tokens (one token ``</script><img src=x onerror=alert(1)>`` included) render as
text and run nothing."""

from __future__ import annotations

import json
import re

import pytest
import torch

from attnlab.inspect.app import create_app
from attnlab.inspect.attribution import attribute
from attnlab.inspect.html import AttentionView, render_page
from attnlab.inspect.subject import attention_view, load_subject
from attnlab.tasks.translation.view import attend_translation
from browser_helpers import BROWSER_MARKS, READY, serve
from tiny_run import XSS

pytestmark = BROWSER_MARKS

ROW = "#attnlab-view .mattered"
METHOD = f"{ROW} select[aria-label='attribution method']"
HOSTILE = "</script><img src=x onerror=alert(1)>"
TEXT = "a good film"
SOURCE = "Zwei Männer."  # a short output of the tiny translation run
REPORT = {"split": "dev", "n": 872, "data": "sst2",
          "methods": {"integrated_gradients": {"comprehensiveness": 0.312, "sufficiency": 0.051,
                                               "comprehensiveness_sem": 0.01},
                      "random": {"comprehensiveness": 0.101, "sufficiency": 0.23}}}


@pytest.fixture(scope="module")
def subject(classifier_run):
    """The tiny classifier, its run folder holding a faithfulness report."""
    (classifier_run / "faithfulness").mkdir()
    (classifier_run / "faithfulness" / "faithfulness.json").write_text(json.dumps(REPORT))
    return load_subject(classifier_run)


@pytest.fixture(scope="module")
def server(subject):
    yield from serve(create_app(subject))


def row(pg) -> dict:
    return pg.eval_on_selector(ROW, "e => Object.assign({}, e.dataset)")


def shaded(pg, box: str = "attribution") -> tuple[list[str], list[float]]:
    """The tokens of a line of the row, as shown, and the scores they carry."""
    spans = pg.eval_on_selector_all(f"{ROW} .{box} span[data-score]", """spans => spans.map(
        s => [s.textContent, +s.dataset.score])""")
    return [t for t, _ in spans], [v for _, v in spans]


def check_scores(pg, expected: torch.Tensor, tokens: list[str], box: str = "attribution"):
    shown_tokens, shown = shaded(pg, box)
    assert shown_tokens == tokens
    torch.testing.assert_close(torch.tensor(shown), expected.float(), rtol=1e-5, atol=1e-9)


def no_script_ran(pg) -> None:
    pg.wait_for_timeout(300)
    assert pg.locator("img").count() == 0 and pg.locator("script").count() == 3
    assert pg.dialogs == []


# --- a classifier -------------------------------------------------------------------------------

def test_html_file_row_switches_method_and_shows_faithfulness(subject, page, tmp_path):
    path = attention_view(subject, [TEXT, XSS]).save(tmp_path / "view.html")
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    [ig] = attribute(subject, TEXT)
    assert row(page)["method"] == "integrated_gradients" and row(page)["ready"] == "1"
    check_scores(page, ig.scores[0], ig.tokens)
    summary = page.inner_text(f"{ROW} .summary")
    assert f"\u201c{ig.targets[0]}\u201d (probability {ig.probabilities[0]:.3f})" in summary
    assert "Completeness gap" in summary
    faith = page.inner_text(f"{ROW} .faithfulness")
    assert ("Faithfulness of integrated gradients on sst2's dev split (872 sentences): "
            "comprehensiveness 0.312 \u00b1 0.010, sufficiency 0.051") in faith
    assert "random: comprehensiveness 0.101, sufficiency 0.230" in faith
    # another method: its scores, and the report has none for it
    page.select_option(METHOD, "leave_one_out")
    [loo] = attribute(subject, TEXT, method="leave_one_out")
    assert row(page)["method"] == "leave_one_out"
    check_scores(page, loo.scores[0], loo.tokens)
    assert not torch.allclose(loo.scores, ig.scores)
    assert "has no figures for leave one out" in page.inner_text(f"{ROW} .faithfulness")
    assert "Completeness gap" not in page.inner_text(f"{ROW} .summary")
    # the hostile sentence: its tokens as text, the method kept
    page.select_option("#attnlab-view select[aria-label=sentence]", "1")
    page.wait_for_selector(READY)
    [xss] = attribute(subject, XSS, method="leave_one_out")
    assert row(page)["method"] == "leave_one_out"
    check_scores(page, xss.scores[0], xss.tokens)
    assert "<" in xss.tokens and "script" in xss.tokens
    no_script_ran(page)
    assert page.requests == [path.as_uri()]  # nothing fetched: the scores are in the page
    page.screenshot(path=str(tmp_path / "mattered.png"), full_page=True)


def test_a_hostile_token_renders_as_text(subject, page, tmp_path):
    payload = subject.payload(TEXT)
    block = payload["sentences"][0]["mattered"]
    block["tokens"][1] = HOSTILE  # one token: the whole string
    block["targets"] = [HOSTILE]
    block["methods"][0]["details"] = {HOSTILE: HOSTILE}
    payload["faithfulness"] = {"split": HOSTILE, "n": 3, "data": HOSTILE,
                               "methods": {block["methods"][0]["name"]: {
                                   "comprehensiveness": 0.5, "sufficiency": 0.1}}}
    path = AttentionView(render_page("view.html", payload)).save(tmp_path / "hostile.html")
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    page.select_option(METHOD, block["methods"][0]["name"])
    tokens, _ = shaded(page)
    assert tokens[1] == HOSTILE
    assert page.inner_text(f"{ROW} .attribution span[data-index='1']") == HOSTILE
    assert f"\u201c{HOSTILE}\u201d" in page.inner_text(f"{ROW} .summary")
    assert f"{HOSTILE}'s {HOSTILE} split" in page.inner_text(f"{ROW} .faithfulness")
    no_script_ran(page)


def test_live_app_row_follows_the_text_and_keeps_the_method(server, subject, page):
    page.goto(server + "/")
    page.wait_for_selector(READY)
    page.fill("#attnlab-text", TEXT)
    page.click("#attnlab-go")
    page.wait_for_function(f"() => document.querySelector('#attnlab-view .text').textContent "
                           f"=== '{TEXT}'", timeout=30_000)
    page.wait_for_selector(READY)
    [ig] = attribute(subject, TEXT)
    check_scores(page, ig.scores[0], ig.tokens)
    assert "comprehensiveness 0.312" in page.inner_text(f"{ROW} .faithfulness")
    page.select_option(METHOD, "grad_input")
    [gi] = attribute(subject, TEXT, method="grad_input")
    check_scores(page, gi.scores[0], gi.tokens)
    page.fill("#attnlab-text", "i hated it")
    page.click("#attnlab-go")
    page.wait_for_function("() => document.querySelector('#attnlab-view .text').textContent "
                           "=== 'i hated it'", timeout=30_000)
    page.wait_for_selector(READY)
    [after] = attribute(subject, "i hated it", method="grad_input")
    assert row(page)["method"] == "grad_input"
    check_scores(page, after.scores[0], after.tokens)
    assert page.dialogs == []


# --- a translation run ----------------------------------------------------------------------------

def test_clicking_a_generated_token_shows_its_attribution(translation, page, tmp_path):
    path = translation.look([SOURCE]).view().save(tmp_path / "tr.html")
    [ig] = attribute(translation, SOURCE)
    a = attend_translation(translation.translator, SOURCE)
    S = ig.source_length
    cross = a.cross[-1].mean(0)  # (T, S): last decoder layer, mean of the heads
    assert ig.targets == a.target_tokens and len(ig.targets) >= 4
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    assert row(page)["decision"] == "0" and row(page)["method"] == "integrated_gradients"
    check_scores(page, ig.scores[0, :S + 1], ig.tokens[:S + 1])  # the source and [BOS]
    check_scores(page, cross[0], a.source_tokens, box="cross")
    # a click on generated token 3 (the head view opens on cross-attention)
    assert page.get_attribute("#attnlab-view", "data-kind") == "cross"
    page.click('#attnlab-view .tokcol.left .tok[data-index="3"]')
    assert row(page)["decision"] == "3"
    check_scores(page, ig.scores[3, :S + 4], ig.tokens[:S + 4])  # source, prefix up to 3
    check_scores(page, cross[3], a.source_tokens, box="cross")
    assert (page.input_value(f"{ROW} select[aria-label='generated token']") == "3")
    assert f"\u201c{ig.targets[3]}\u201d (probability {ig.probabilities[3]:.3f})" in (
        page.inner_text(f"{ROW} .summary"))
    # another method, same token
    page.select_option(METHOD, "attention_grad")
    [ag] = attribute(translation, SOURCE, method="attention_grad")
    check_scores(page, ag.scores[3, :S + 4], ag.tokens[:S + 4])
    # the decoder's rows are the same decisions; the encoder's are not
    page.select_option("#attnlab-view select[aria-label=attention]", "decoder")
    page.click('#attnlab-view .tokcol.left .tok[data-index="1"]')
    assert row(page)["decision"] == "1"
    page.select_option("#attnlab-view select[aria-label=attention]", "self")
    page.click('#attnlab-view .tokcol.left .tok[data-index="2"]')
    assert row(page)["decision"] == "1"
    assert page.dialogs == [] and page.requests == [path.as_uri()]
    page.screenshot(path=str(tmp_path / "translation-mattered.png"), full_page=True)


def test_translation_row_with_hostile_tokens_renders_text(translation, page, tmp_path):
    payload = translation.payload(SOURCE)
    block = payload["sentences"][0]["mattered"]
    block["targets"][0] = HOSTILE
    block["tokens"][0] = HOSTILE
    path = AttentionView(render_page("view.html", payload)).save(tmp_path / "tr-hostile.html")
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    assert shaded(page)[0][0] == HOSTILE and shaded(page, "cross")[0][0] == HOSTILE
    options = page.locator(f"{ROW} select[aria-label='generated token'] option")
    assert options.first.inner_text() == f"0: {HOSTILE}"
    assert re.search(re.escape(f"\u201c{HOSTILE}\u201d"), page.inner_text(f"{ROW} .summary"))
    no_script_ran(page)
