"""The attention views in a real browser (Chromium driven by Playwright): the live app and the
self-contained HTML file draw the tokens and lines of the chosen heads, switching heads changes
them, a translation run's page switches between its three attention kinds and merges pieces
into words, the neuron view shows the model's own numbers for the chosen query, the live app
opens on an example and follows the typing, and hostile text renders literally and runs
nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from attnlab.inspect.app import create_app
from attnlab.inspect.subject import EXAMPLE, attention_view, load_subject
from attnlab.tasks.translation.subject import EXAMPLE as TRANSLATION_EXAMPLE
from attnlab.tasks.translation.subject import TranslationSubject
from attnlab.tasks.translation.translator import Translator
from attnlab.tasks.translation.view import attend_translation, translation_view
from browser_helpers import BROWSER_MARKS, READY, serve
from tiny_run import XSS, make_tiny_run
from tiny_translation import make_tiny_translation_run

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return load_subject(make_tiny_run(tmp_path_factory.mktemp("run") / "run"))


@pytest.fixture(scope="module")
def server(subject):
    yield from serve(create_app(subject))


def state(pg) -> dict:
    return pg.eval_on_selector("#attnlab-view", "e => Object.assign({}, e.dataset)")


def canvas_ink(pg) -> int:
    """Non-transparent pixels of the head view's canvas."""
    return pg.eval_on_selector("#attnlab-view canvas.lines", """c => {
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""")


def submit(pg, text: str) -> None:
    pg.fill("#attnlab-text", text)
    pg.click("#attnlab-go")
    pg.wait_for_selector(READY, timeout=30_000)


def check_head_switching(pg, n_tokens: int, tmp_path: Path, name: str) -> None:
    s = state(pg)
    assert s["tokens"] == str(n_tokens) and s["heads"] == "0" and s["layer"] == "0"
    assert pg.locator("#attnlab-view .tokcol.left .tok").count() == n_tokens
    assert pg.locator("#attnlab-view .tokcol.right .tok").count() == n_tokens
    assert s["maps"] == "8"  # 2 layers x 4 heads in the model view
    lines_head0, ink0 = int(s["lines"]), canvas_ink(pg)
    assert lines_head0 >= n_tokens and ink0 > 0  # every row has a weight >= 1/n
    # switch to head 3 of layer 1: the drawn lines follow
    pg.select_option("#attnlab-view select[aria-label=layer]", "1")
    pg.click('#attnlab-view .head-toggle[data-head="0"]')
    pg.click('#attnlab-view .head-toggle[data-head="3"]')
    s = state(pg)
    assert s["layer"] == "1" and s["heads"] == "3"
    expected = pg.evaluate("""() => { const v = window.attnlabView, m = v.matrix(1, 3);
        let n = 0; for (const q of m) if (q >= Math.ceil(0.01 * 255)) n++; return n; }""")
    assert int(s["lines"]) == expected
    # overlay: heads 1 and 3 together draw the lines of both
    pg.click('#attnlab-view .head-toggle[data-head="1"]')
    both = state(pg)
    assert both["heads"] == "1,3" and int(both["lines"]) > expected
    pg.click('#attnlab-view button:has-text("none")')
    assert state(pg)["lines"] == "0" and canvas_ink(pg) == 0
    pg.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    assert (tmp_path / f"{name}.png").stat().st_size > 0


def test_live_app_draws_and_switches_heads(server, page, tmp_path):
    page.goto(server + "/")
    submit(page, "a good film")
    assert page.locator("#attnlab-view .text").inner_text() == "a good film"
    assert page.get_attribute("#attnlab-view", "data-prediction") == "positive"
    assert page.locator("#attnlab-view .sentence span").all_inner_texts() == [
        "[CLS]", "a", "good", "film", "[SEP]"]
    check_head_switching(page, 5, tmp_path, "app")
    assert page.dialogs == []
    assert all(u.startswith(server) for u in page.requests)


def test_live_app_shows_errors_and_keeps_working(server, page):
    page.goto(server + "/")
    page.fill("#attnlab-text", "   ")
    page.click("#attnlab-go")
    page.wait_for_function("document.getElementById('attnlab-error').textContent.length > 0")
    assert "empty" in page.inner_text("#attnlab-error")
    submit(page, "i hated it")
    assert page.inner_text("#attnlab-error") == ""
    assert state(page)["tokens"] == "5"


def test_live_app_hostile_text_is_literal(server, page):
    page.goto(server + "/")
    submit(page, XSS)
    assert page.locator("#attnlab-view .text").inner_text() == XSS
    tokens = page.locator("#attnlab-view .tokcol.left .tok").all_inner_texts()
    assert "<" in tokens and "script" in tokens
    page.wait_for_timeout(300)
    assert page.locator("img").count() == 0 and page.locator("script").count() == 3
    assert page.dialogs == []


def test_html_file(subject, page, tmp_path):
    path = attention_view(subject, ["a good film", XSS]).save(tmp_path / "view.html")
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    check_head_switching(page, 5, tmp_path, "file")
    options = page.locator("#attnlab-view select[aria-label=sentence] option").all_inner_texts()
    assert options == ["1. a good film", "2. " + XSS[:80]]
    page.select_option("#attnlab-view select[aria-label=sentence]", "1")
    page.wait_for_selector(READY)
    assert page.locator("#attnlab-view .text").inner_text() == XSS
    assert state(page)["tokens"] == str(len(subject.attend([XSS])[0].tokens))
    page.wait_for_timeout(300)
    assert page.locator("img").count() == 0 and page.locator("script").count() == 3
    assert page.dialogs == []
    assert page.requests == [path.as_uri()]  # nothing fetched: no network at all


def test_html_file_512_tokens_stays_responsive(page, tmp_path):
    subject = load_subject(make_tiny_run(tmp_path / "long", train_steps=0, max_len=512))
    text = " ".join(["a good film , i loved it"] * 100)  # 600 words, cut to 512 tokens
    path = attention_view(subject, text).save(tmp_path / "long.html")
    start = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_selector(READY, timeout=30_000)
    loaded = time.perf_counter() - start
    assert state(page)["tokens"] == "512" and state(page)["maps"] == "8"
    start = time.perf_counter()
    page.click('#attnlab-view .head-toggle[data-head="1"]')
    assert state(page)["heads"] == "0,1"
    switched = time.perf_counter() - start
    assert page.locator("#attnlab-view .tokcol.left .tok").count() == 512
    assert loaded < 20 and switched < 5, (loaded, switched)


# --- the neuron view ------------------------------------------------------------------------

NEURON = "#attnlab-view .neuron"


def neuron(pg) -> dict:
    return pg.eval_on_selector(NEURON, "e => Object.assign({}, e.dataset)")


def neuron_rows(pg) -> list[dict]:
    """The key rows as drawn, in display order: key index, weight (data and text), score."""
    return pg.eval_on_selector_all(f"{NEURON} tr.key", """rows => rows.map(r => ({
        key: +r.dataset.key, weight: +r.dataset.weight, shown: r.querySelector(".wnum")
        .textContent, score: r.dataset.score, token: r.querySelector(".tokname").textContent}))""")


def check_weights(pg, attended, layer: int, head: int, query: int) -> None:
    """The panel shows, for this query, the model's captured weight of every key."""
    s = neuron(pg)
    assert (s["ready"], s["layer"], s["head"], s["query"]) == ("1", str(layer), str(head),
                                                                str(query))
    captured = attended.weights[layer][head][query].tolist()
    rows = sorted(neuron_rows(pg), key=lambda r: r["key"])
    assert [r["key"] for r in rows] == list(range(len(captured)))
    for r, w in zip(rows, captured, strict=True):
        assert abs(r["weight"] - w) < 1e-5
        assert abs(float(r["shown"]) - w) <= 5e-4 + 1e-6  # the number shown, to 3 decimals
    assert [r["token"] for r in rows] == attended.tokens


def test_neuron_view_in_html_file(subject, page, tmp_path):
    path = attention_view(subject, ["a good film", XSS]).save(tmp_path / "view.html")
    [a] = subject.attend(["a good film"], vectors=True)
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    assert "softmax turns the scores into weights that sum to 1" in page.inner_text(NEURON)
    check_weights(page, a, 0, 0, 0)
    # the vectors, one cell per number, the number on hover
    q_cells = page.locator(f"{NEURON} tr.query .vcell")
    assert q_cells.count() == 4
    assert q_cells.first.get_attribute("title") == f"q[0] = {a.queries[0][0, 0, 0]:.4f}"
    k_title = page.locator(f'{NEURON} tr.key[data-key="2"] .vcell').first.get_attribute("title")
    assert k_title == f"k[0] = {a.keys[0][0, 2, 0]:.4f}"
    # another query token, layer and head from the panel's own controls
    page.select_option(f"{NEURON} select[aria-label='query token']", "2")
    check_weights(page, a, 0, 0, 2)
    page.select_option(f"{NEURON} select[aria-label='neuron layer']", "1")
    page.select_option(f"{NEURON} select[aria-label='neuron head']", "3")
    check_weights(page, a, 1, 3, 2)
    # sort by weight reorders the rows
    page.check(f"{NEURON} input[aria-label='sort by weight']")
    rows = neuron_rows(page)
    weights = [r["weight"] for r in rows]
    assert weights == sorted(weights, reverse=True) and neuron(page)["sorted"] == "1"
    assert neuron(page)["order"] == ",".join(str(r["key"]) for r in rows) != "0,1,2,3,4"
    page.uncheck(f"{NEURON} input[aria-label='sort by weight']")
    assert neuron(page)["order"] == "0,1,2,3,4"
    # clicking a query token in the head view opens it there: same layer, first selected head
    page.select_option("#attnlab-view select[aria-label=layer]", "1")
    page.click('#attnlab-view .head-toggle[data-head="0"]')
    page.click('#attnlab-view .head-toggle[data-head="2"]')
    page.click('#attnlab-view .head-toggle[data-head="1"]')
    assert state(page)["heads"] == "1,2"
    page.evaluate("window.scrollTo(0, 0)")
    page.click('#attnlab-view .tokcol.left .tok[data-index="3"]')
    check_weights(page, a, 1, 1, 3)
    top = page.eval_on_selector(NEURON, "e => e.getBoundingClientRect().top")
    assert 0 <= top < page.viewport_size["height"] / 2  # scrolled into view
    page.screenshot(path=str(tmp_path / "neuron.png"), full_page=True)
    assert page.dialogs == [] and page.requests == [path.as_uri()]


def test_neuron_view_hostile_query_is_literal(subject, page, tmp_path):
    path = attention_view(subject, [XSS]).save(tmp_path / "xss.html")
    [a] = subject.attend([XSS], vectors=True)
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    for token in ("<", "script", "onerror"):
        index = a.tokens.index(token)
        page.click(f'#attnlab-view .tokcol.left .tok[data-index="{index}"]')
        check_weights(page, a, 0, 0, index)
        assert page.inner_text(f"{NEURON} tr.query .tokname") == f"q of \u201c{token}\u201d"
    options = page.locator(f"{NEURON} select[aria-label='query token'] option").all_inner_texts()
    assert options == [f"{i}: {t}" for i, t in enumerate(a.tokens)]
    page.wait_for_timeout(300)
    assert page.locator("img").count() == 0 and page.locator("script").count() == 3
    assert page.dialogs == []


def test_neuron_view_says_why_long_sentences_have_none(page, tmp_path):
    subject = load_subject(make_tiny_run(tmp_path / "long", train_steps=0, max_len=128))
    path = attention_view(subject, "a good film " * 30).save(tmp_path / "long.html")
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    assert "92 tokens" in page.inner_text(NEURON) and neuron(page)["ready"] == "1"
    assert page.locator(f"{NEURON} tr.key").count() == 0


# --- the live app opens on an example and follows the typing ---------------------------------

def api_requests(pg) -> list[str]:
    return [u for u in pg.requests if u.endswith("/api/attend")]


def test_live_app_opens_on_the_example(server, subject, page):
    page.goto(server + "/")
    page.wait_for_selector(READY)
    assert "see what attention attends to" in page.inner_text("h1")
    assert page.inner_text("#attnlab-model") == "run"
    assert page.input_value("#attnlab-text") == EXAMPLE
    assert page.locator("#attnlab-view .text").inner_text() == EXAMPLE
    [a] = subject.attend([EXAMPLE], vectors=True)
    assert state(page)["tokens"] == str(len(a.tokens)) and int(state(page)["lines"]) > 0
    check_weights(page, a, 0, 0, 0)
    assert api_requests(page) == []  # drawn from the page itself
    # the Roles tab: the heat map of every head, scored when the app started
    assert page.locator(".tabs button.tab").all_text_contents() == ["Attention", "Roles"]
    page.get_by_role("tab", name="Roles").click()
    assert page.locator(".roles-tab").is_visible()
    assert page.locator(".roles-tab td[data-score]").count() > 0
    page.get_by_role("tab", name="Attention").click()


def test_live_app_updates_as_you_type(server, subject, page):
    page.goto(server + "/")
    page.wait_for_selector(READY)
    page.fill("#attnlab-text", "")
    page.type("#attnlab-text", "i loved it", delay=30)  # no Enter, no click
    page.wait_for_function("() => document.querySelector('#attnlab-view .text').textContent "
                           "=== 'i loved it'", timeout=30_000)
    page.wait_for_selector(READY)
    assert 1 <= len(api_requests(page)) <= 3  # debounced: not one request per keystroke
    [a] = subject.attend(["i loved it"], vectors=True)
    page.click('#attnlab-view .tokcol.left .tok[data-index="2"]')
    check_weights(page, a, 0, 0, 2)


def test_live_app_ignores_stale_answers(server, page):
    page.goto(server + "/")
    page.wait_for_selector(READY)
    # answers for texts with "bad" arrive 1.5 s late and cannot be aborted
    page.evaluate("""() => { const original = window.fetch; window.lateAnswers = 0;
        window.fetch = (url, init) => {
            const slow = JSON.parse(init.body).text.includes("bad");
            const copy = Object.assign({}, init); delete copy.signal;
            return original(url, copy).then(r => slow ? new Promise(done => setTimeout(() => {
                window.lateAnswers++; done(r); }, 1500)) : r); }; }""")
    page.fill("#attnlab-text", "a bad film")
    page.wait_for_function("() => document.getElementById('attnlab-form').dataset.sent "
                           "=== '1'")
    page.fill("#attnlab-text", "i loved it")
    page.wait_for_function("() => document.getElementById('attnlab-form').dataset.drawn "
                           "=== '2'", timeout=30_000)
    page.wait_for_function("() => window.lateAnswers === 1", timeout=30_000)
    page.wait_for_timeout(200)
    assert page.locator("#attnlab-view .text").inner_text() == "i loved it"
    assert page.get_attribute("#attnlab-form", "data-drawn") == "2"
    assert page.inner_text("#attnlab-error") == ""


# --- a translation run: three attention kinds, query and key tokens apart ---------------------

SOURCE = "Ein Mann fährt Fahrrad."
KIND = "#attnlab-view select[aria-label=attention]"
WORDS = "#attnlab-view input[aria-label='merge subword pieces into words']"


@pytest.fixture(scope="module")
def translator(tmp_path_factory, data_dir):
    return Translator.load(make_tiny_translation_run(tmp_path_factory.mktemp("tr") / "de-en"))


@pytest.fixture(scope="module")
def translation_server(translator):
    yield from serve(create_app(TranslationSubject(translator, "de-en")))


def columns(pg) -> tuple[list[str], list[str]]:
    return tuple(pg.locator(f"#attnlab-view .tokcol.{side} .tok").all_inner_texts()
                 for side in ("left", "right"))


def test_translation_page_kinds_words_and_hostile_text(translator, page, tmp_path):
    a = attend_translation(translator, SOURCE)
    path = translation_view(translator, [SOURCE, XSS]).save(tmp_path / "tr.html")
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    assert page.inner_text("#attnlab-view .translation") == a.translation
    s = state(page)
    assert s["kind"] == "cross" and s["words"] == "0"
    assert columns(page) == (a.target_tokens, a.source_tokens)  # different lengths
    assert len(a.target_tokens) != len(a.source_tokens) and int(s["lines"]) > 0
    assert s["maps"] == "4" and canvas_ink(page) > 0  # 2 decoder layers x 2 heads
    assert not page.locator("#attnlab-view .neuron").is_visible()
    page.select_option(KIND, "self")
    assert state(page)["kind"] == "self" and state(page)["maps"] == "2"
    assert columns(page) == (a.source_tokens, a.source_tokens)
    page.select_option(KIND, "decoder")
    assert columns(page) == (a.decoder_tokens, a.decoder_tokens)
    page.select_option(KIND, "cross")
    page.check(WORDS)
    s = state(page)
    assert s["words"] == "1" and columns(page)[1] == [*SOURCE.split(), "[SEP]"]
    assert int(s["keyTokens"]) < len(a.source_tokens)
    page.uncheck(WORDS)
    assert columns(page)[1] == a.source_tokens
    page.select_option("#attnlab-view select[aria-label=sentence]", "1")
    page.wait_for_selector(READY)
    assert page.locator("#attnlab-view .text").inner_text() == XSS
    assert "".join(columns(page)[1]).count("script") == 3  # pieces, shown as text
    page.wait_for_timeout(300)
    assert page.locator("img").count() == 0 and page.locator("script").count() == 3
    assert page.dialogs == [] and page.requests == [path.as_uri()]
    page.screenshot(path=str(tmp_path / "translation.png"), full_page=True)


def test_live_app_for_a_translation_run(translation_server, translator, page):
    page.goto(translation_server + "/")
    page.wait_for_selector(READY)
    assert page.input_value("#attnlab-text") == TRANSLATION_EXAMPLE
    example = attend_translation(translator, TRANSLATION_EXAMPLE)
    assert page.inner_text("#attnlab-view .translation") == example.translation
    assert columns(page) == (example.target_tokens, example.source_tokens)
    assert api_requests(page) == []
    page.fill("#attnlab-text", "")
    page.type("#attnlab-text", "Zwei Männer.", delay=30)
    page.wait_for_function("() => document.querySelector('#attnlab-view .text').textContent "
                           "=== 'Zwei Männer.'", timeout=30_000)
    page.wait_for_selector(READY)
    typed = attend_translation(translator, "Zwei Männer.")
    assert page.inner_text("#attnlab-view .translation") == typed.translation
    assert columns(page) == (typed.target_tokens, typed.source_tokens)
    assert 1 <= len(api_requests(page)) <= 3 and page.dialogs == []
