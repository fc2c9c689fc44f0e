"""The heads × roles heat map as an HTML page (``attnlab heads RUN --roles --html``): every head
and role with its exact score in the embedded data, hostile names escaped, the command writes
the file. The page in a browser: tests/test_browser_roles.py."""

from __future__ import annotations

import json
import re

import pytest

from attnlab.cli import main
from attnlab.inspect.roles import ROLES
from attnlab.inspect.roles_probe import HeadRoles, RoleTable, head_roles
from attnlab.inspect.roles_view import roles_page
from tiny_run import XSS

DATA = re.compile(r'<script id="attnlab-data" type="application/json">(.*?)</script>', re.S)


def hand_table(model: str = "hand", kind: str = "self") -> RoleTable:
    """Two layers of two heads whose scores are known: head (l, h) scores
    ``(10·l + 2·h + r) / 100`` on the r-th role, so every score differs."""
    heads = [HeadRoles(kind, layer, head, f"layers.{layer}.attn",
                       {role: (10 * layer + 2 * head + r) / 100 for r, role in enumerate(ROLES)})
             for layer in range(2) for head in range(2)]
    return RoleTable(model, heads, {"repeat_length": 5, "sequences": 2, "attention": [kind],
                                    "exclusions": "only second-half queries count"})


def embedded(page: str) -> dict:
    """The page's data block, parsed as the page's script parses it."""
    [block] = DATA.findall(page)
    return json.loads(block)


def test_every_head_and_role_with_its_score():
    data = embedded(roles_page(hand_table()))
    assert data["roles"] == list(ROLES) and data["model"] == "hand" and data["k"] == 3
    assert data["shaded"] == [r for r in ROLES if r != "entropy"]  # nats are not on 0..1
    got = {(h["layer"], h["head"]): h["scores"] for h in data["heads"]}
    assert sorted(got) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for (layer, head), scores in got.items():
        assert scores == {role: (10 * layer + 2 * head + r) / 100 for r, role in enumerate(ROLES)}
    # the best three of each role: layer 1 head 1, then layer 1 head 0, then layer 0 head 1
    for role in ROLES:
        assert [(t["layer"], t["head"]) for t in data["top"][role]] == [(1, 1), (1, 0), (0, 1)]
    assert data["probe"]["exclusions"] == "only second-half queries count"


def test_the_name_given_is_shown_and_k_is_kept():
    data = embedded(roles_page(hand_table(), "runs/x", k=1))
    assert data["model"] == "runs/x" and all(len(t) == 1 for t in data["top"].values())


def test_hostile_names_cannot_break_out_of_the_page():
    page = roles_page(hand_table(model=XSS, kind=XSS), name=XSS)
    # one data block, one library script, one mount script: no script the names opened
    assert page.count("<script") == 3 and page.count("</script>") == 3
    assert "<img" not in page and "alert(2)</script>" not in page
    data = embedded(page)
    assert data["model"] == XSS and {h["attention"] for h in data["heads"]} == {XSS}
    assert "connect-src" not in page and "default-src 'none'" in page  # no network at all


def test_page_needs_no_network():
    page = roles_page(hand_table())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"\b(fetch\s*\(|XMLHttpRequest|WebSocket|import\s*\()", page)


def test_classifier_page_from_the_probe(classifier):
    table = head_roles(classifier, ["a good film"], repeat_length=4, sequences=1)
    data = embedded(roles_page(table))
    assert len(data["heads"]) == 8
    for shown, head in zip(data["heads"], table.heads, strict=True):
        assert shown["scores"] == head.scores  # exactly: JSON round-trips Python floats


def test_heads_roles_command_writes_the_page(classifier_run, tmp_path, capsys):
    path = tmp_path / "pages" / "roles.html"
    assert main(["heads", str(classifier_run), "--roles", "--repeat-length", "4",
                 "--sequences", "1", "--html", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    data = embedded(path.read_text(encoding="utf-8"))
    assert data["model"] == "run" and len(data["heads"]) == 8
    assert data["probe"]["repeat_length"] == 4 and data["probe"]["sequences"] == 1
    # with --json the JSON stays alone on stdout and the page holds the same scores
    assert main(["heads", str(classifier_run), "--roles", "--json", "--repeat-length", "4",
                 "--sequences", "1", "--html", str(path)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["heads"] == embedded(path.read_text(encoding="utf-8"))["heads"]
    assert f"wrote {path}" in out.err


@pytest.mark.parametrize("argv,message", [
    (["--html", "x.html"], "--html needs --roles"),
    (["--roles", "--html", "{tmp}"], "is a folder; give a file name for the page"),
])
def test_html_option_errors(classifier_run, tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["heads", str(classifier_run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
