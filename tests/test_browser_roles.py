"""The heads × roles page in a real browser (Chromium driven by Playwright): every cell shows its
head's score (``data-score`` exact, the text to three decimals), the best heads of each role are
marked, the shading follows matplotlib's viridis, hostile names render as text and run nothing,
and the page asks the network for nothing."""

from __future__ import annotations

import pytest
from matplotlib import colormaps

from attnlab.inspect.roles import ROLES
from attnlab.inspect.roles_probe import HeadRoles, RoleTable
from attnlab.inspect.roles_view import roles_page
from browser_helpers import BROWSER_MARKS
from tiny_run import XSS

pytestmark = BROWSER_MARKS

READY = '#attnlab-roles[data-ready="1"]'
CELLS = "#attnlab-roles table.roles td[data-score]"


def table(model: str = "hand", kind: str = "self") -> RoleTable:
    """Three heads: (0, h) scores ``h/2`` on every role but entropy, which is ``1 + h``."""
    heads = [HeadRoles(kind, 0, h, "layers.0.attn",
                       {r: (1.0 + h if r == "entropy" else h / 2) for r in ROLES})
             for h in range(3)]
    return RoleTable(model, heads, {"repeat_length": 5, "exclusions": XSS})


def open_page(page, tmp_path, t: RoleTable):
    path = tmp_path / "roles.html"
    path.write_text(roles_page(t, k=2), encoding="utf-8")
    page.goto(path.as_uri())
    page.wait_for_selector(READY)
    return path


def cells(page) -> list[dict]:
    return page.eval_on_selector_all(CELLS, """tds => tds.map(td => ({
        head: td.dataset.head, role: td.dataset.role, score: +td.dataset.score,
        text: td.textContent, title: td.title, top: td.dataset.top || null,
        background: getComputedStyle(td).backgroundColor}))""")


def test_cells_show_every_score_and_mark_the_best(page, tmp_path):
    open_page(page, tmp_path, table())
    shown = cells(page)
    assert [(c["head"], c["role"]) for c in shown] == [(f"self L0.H{h}", r) for h in range(3)
                                                      for r in ROLES]
    for c in shown:
        h = int(c["head"][-1])
        expected = 1.0 + h if c["role"] == "entropy" else h / 2
        assert c["score"] == expected and c["text"] == f"{expected:.3f}"
        assert c["title"].startswith(f"self L0.H{h}, {c['role']}: ")
        # k=2: heads 2 and 1 are the best of every role, in that order
        assert c["top"] == {2: "1", 1: "2", 0: None}[h]
    assert page.locator("#attnlab-roles thead th").all_text_contents() == ["head", *ROLES]
    assert page.dialogs == [] and all(u.startswith("file:") for u in page.requests)


def test_shading_follows_viridis(page, tmp_path):
    open_page(page, tmp_path, table())
    for c in cells(page):
        if c["role"] == "entropy":  # nats: unshaded
            assert c["background"] == "rgb(244, 244, 244)"
            continue
        r, g, b, _ = colormaps["viridis"](float(c["score"]))  # a float: an int indexes the table
        shown = [int(x) for x in c["background"][4:-1].split(",")]
        assert shown == pytest.approx([r * 255, g * 255, b * 255], abs=1.5)


def test_hostile_names_render_as_text(page, tmp_path):
    open_page(page, tmp_path, table(model=XSS, kind=XSS))
    page.wait_for_timeout(300)
    assert page.locator("h1").text_content() == f"{XSS}: heads by role"
    assert page.locator("#attnlab-roles tbody th").first.text_content() == f"{XSS} L0.H0"
    assert XSS in page.locator("dl.probe").text_content()
    assert page.locator("img").count() == 0 and page.locator("script").count() == 3
    assert page.dialogs == []
    assert page.title() == f"attnlab: {XSS}: heads by role"
