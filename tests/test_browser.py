"""The attention views in a real browser (Chromium driven by Playwright): the live app and the
self-contained HTML file draw the tokens and lines of the chosen heads, switching heads changes
them, and hostile text renders literally and runs nothing."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Chromium not found at /usr/bin/chromium (apt-get install -y "
                              "chromium) - browser tests skipped"),
]

playwright_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

from attnlab.inspect.app import create_app  # noqa: E402
from attnlab.inspect.html import attention_view  # noqa: E402
from attnlab.inspect.subject import load_subject  # noqa: E402
from tiny_run import XSS, make_tiny_run  # noqa: E402

READY = '#attnlab-view[data-ready="1"]'


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return load_subject(make_tiny_run(tmp_path_factory.mktemp("run") / "run"))


@pytest.fixture(scope="module")
def server(subject):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(subject), host="127.0.0.1", port=port, log_level="error")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the attnlab app did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page that records every dialog (none may appear) and every request."""
    context = browser.new_context()
    pg = context.new_page()
    pg.dialogs, pg.requests = [], []

    def on_dialog(dialog):
        pg.dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.on("request", lambda r: pg.requests.append(r.url))
    yield pg
    context.close()


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
