"""The explorer's Roles tab in the page's data (``attnlab show RUN TEXT --html``): the marked heads
of a hand-made table, the data block extended without touching the rest of the page (hostile
text stays escaped), and the command writing the tab by default and leaving it out with
``--no-roles``. The tab in a browser: tests/test_browser_lm_roles.py."""

from __future__ import annotations

import json
import re

import pytest

from attnlab.cli import main
from attnlab.inspect.html import AttentionView, render_page
from attnlab.inspect.roles import ROLES
from attnlab.inspect.roles_probe import HeadRoles, RoleTable
from attnlab.inspect.roles_view import MARK_LEAST, marked_heads, with_roles
from tiny_run import XSS

DATA = re.compile(r'<script id="attnlab-data" type="application/json">(.*?)</script>', re.S)


def embedded(page: str) -> dict:
    [block] = DATA.findall(page)
    return json.loads(block)


def scored(induction: list[float], previous: list[float], kind: str = "self") -> RoleTable:
    """One layer whose head ``h`` scores ``induction[h]`` and ``previous[h]``, 0 elsewhere."""
    heads = [HeadRoles(kind, 0, h, "layers.0.attn", {**dict.fromkeys(ROLES, 0.0),
                                                     "induction": i, "previous": p})
             for h, (i, p) in enumerate(zip(induction, previous, strict=True))]
    return RoleTable("hand", heads, {"repeat_length": 5})


def test_marked_heads_are_the_best_above_the_least_score():
    table = scored(induction=[0.2, 0.9, 0.5, 0.45, MARK_LEAST], previous=[0.99, 0, 0, 0, 0.1])
    marked = marked_heads(table, k=3)
    assert [(m["role"], m["head"], m["rank"], m["score"]) for m in marked] == [
        ("induction", 1, 1, 0.9), ("induction", 2, 2, 0.5), ("induction", 3, 3, 0.45),
        ("previous", 0, 1, 0.99)]  # head 4 (exactly 0.4) is fourth: k=3 leaves it out
    assert [m["head"] for m in marked_heads(table, k=5) if m["role"] == "induction"] == [
        1, 2, 3, 4]  # 0.4 itself is marked
    assert marked_heads(scored([0.1, 0.3], [0.2, 0.39])) == []  # no head is called one


def test_with_roles_adds_the_tab_and_keeps_the_page():
    base = {"model": XSS, "sentences": [], "faithfulness": None}
    view = AttentionView(render_page("view.html", base))
    table = scored([0.1, 0.8], [0.7, 0.0], kind=XSS)
    page = with_roles(view, table, k=2).html
    data = embedded(page)
    assert {k: data[k] for k in base} == base  # the explorer's data untouched
    roles = data["roles"]
    assert roles["k"] == 2 and roles["mark_least"] == MARK_LEAST
    assert [(m["role"], m["attention"], m["head"]) for m in roles["marked"]] == [
        ("induction", XSS, 1), ("previous", XSS, 0)]
    assert [h["scores"]["induction"] for h in roles["heads"]] == [0.1, 0.8]
    # outside the data block, the page is the same; inside it, nothing hostile is raw
    assert DATA.sub("", page) == DATA.sub("", view.html)
    assert "<img" not in page and page.count("<script") == 3
    assert "var AttnRolesTab" in page  # the tab's script is inline


def test_with_data_refuses_a_page_without_one_data_block():
    with pytest.raises(ValueError, match="one data block, found 0"):
        AttentionView("<html></html>").with_data(roles={})


def test_show_writes_the_roles_tab_unless_told_not_to(classifier_run, tmp_path, capsys):
    path = tmp_path / "v.html"
    assert main(["show", str(classifier_run), "a good film", "--html", str(path)]) == 0
    roles = embedded(path.read_text())["roles"]
    assert [(h["layer"], h["head"]) for h in roles["heads"]] == [(l, h) for l in range(2)
                                                                for h in range(4)]
    assert roles["model"] == "run" and set(roles["top"]) == set(ROLES)
    assert all(m["score"] >= MARK_LEAST for m in roles["marked"])
    assert main(["show", str(classifier_run), "a good film", "--html", str(path),
                 "--no-roles"]) == 0
    assert "roles" not in embedded(path.read_text())
    assert capsys.readouterr().err == ""
