"""The explorer's Roles tab on a causal language model, in a real browser (Chromium driven by
Playwright): a tiny two-layer model with a planted previous-token head (L0.H0) and induction
head (L1.H0) (``test_head_roles.Planted``) seen through
:class:`~attnlab.inspect.causal_subject.CausalSubject`. On a repeated sentence
``[BOS] w1 .. w6 w1 .. w6`` the page marks both heads; clicking the induction head shows its
pattern, whose off-diagonal stripe (query ``i`` of the second half on key ``i - 5``, the token
after the query token's first occurrence) holds the weight worked out by hand from the planted
weights."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from tokenizers.processors import TemplateProcessing
from torch import nn

from attnlab.inspect.causal_subject import CausalSubject
from attnlab.inspect.roles_probe import head_roles
from attnlab.inspect.roles_view import with_roles
from attnlab.text import TextTokenizer
from browser_helpers import BROWSER_MARKS, READY
from test_head_roles import P, Planted, V

pytestmark = BROWSER_MARKS

HALF = 6  # words in each half of the repeated sentence
SENTENCE = " ".join(f"w{i}" for i in range(1, HALF + 1))
REPEATED = f"{SENTENCE} {SENTENCE}"  # [BOS] w1 .. w6 w1 .. w6: 13 tokens
C = 12.0  # Planted's query/key scale


class PlantedLM(nn.Module):
    """``Planted`` as a language model's call: ``(input_ids, attention_mask) -> (B, L, V)``, the
    residual's token slot read as the logits."""

    max_positions = P

    def __init__(self) -> None:
        super().__init__()
        self.body = Planted(C)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.body(input_ids)[..., :V]  # (B, L, V)


def planted_subject() -> CausalSubject:
    """The planted model with a word-level tokenizer of its ``V`` ids: ``[BOS]`` (0) first,
    then ``w1 .. w39``; a text is read as ``[BOS] words``."""
    vocab = {"[BOS]": 0, **{f"w{i}": i for i in range(1, V)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[BOS]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(["[BOS]"])
    tokenizer.post_processor = TemplateProcessing(single="[BOS] $A",
                                                  special_tokens=[("[BOS]", 0)])
    return CausalSubject(PlantedLM(), TextTokenizer(tokenizer, max_length=P), "planted-lm")


def stripe_weight(query: int) -> float:
    """The induction head's weight on its one matching key, by hand: layer 0 head 0 copies
    each position's previous token almost exactly (score ``C²/√P`` against 0), so layer 1 head
    0 scores ``C²/√V`` on the key after the query token's first occurrence and 0 on the other
    ``query`` visible keys (causal: keys ``0 .. query``)."""
    return 1 / (1 + query * math.exp(-C * C / math.sqrt(V)))


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    subject = planted_subject()
    table = head_roles(subject, [SENTENCE, "w9 w3 w12 w7 w7 w1"], repeat_length=8, sequences=3)
    path = tmp_path_factory.mktemp("lm") / "view.html"
    with_roles(subject.look([REPEATED]).view(), table).save(path)
    return path, table


def open_page(page, path):
    page.goto(path.as_uri())
    page.wait_for_selector(READY)


def test_the_roles_tab_shows_the_heat_map(page, page_file):
    path, table = page_file
    open_page(page, path)
    assert page.locator(".tabs button.tab").all_text_contents() == ["Attention", "Roles"]
    assert page.locator(".roles-tab").is_hidden()
    page.get_by_role("tab", name="Roles").click()
    assert page.locator(".tabs").get_attribute("data-tab") == "roles"
    assert page.locator("#attnlab-view").is_hidden() and page.locator(".roles-tab").is_visible()
    shown = page.eval_on_selector_all(".roles-tab td[data-score]", """tds => tds.map(td =>
        [td.dataset.head, td.dataset.role, +td.dataset.score])""")
    expected = [[h.label, r, h.scores[r]] for h in table.heads for r in table.roles]
    assert shown == expected  # 4 heads x every role, the probe's scores exactly
    induction = page.locator('.roles-tab td[data-head="self L1.H0"][data-role="induction"]')
    # below 1: the probe's ids start at position 0 (no [BOS]), whose previous-token slot holds
    # its own token, and random halves may repeat a token: both split some rows
    assert float(induction.get_attribute("data-score")) > 0.7
    assert induction.get_attribute("data-top") == "1"
    starred = page.eval_on_selector_all(".roles-tab tbody th[data-marked]",
                                        "ths => ths.map(th => [th.textContent, th.dataset.marked])")
    assert starred == [["self L0.H0", "previous"], ["self L1.H0", "induction"]]
    assert page.dialogs == [] and all(u.startswith("file:") for u in page.requests)


def test_the_induction_head_is_marked_and_shows_the_stripe(page, page_file):
    path, _ = page_file
    open_page(page, path)
    buttons = page.locator("button.marked-head")
    assert [b.get_attribute("data-marked") for b in buttons.all()] == ["induction", "previous"]
    assert buttons.first.text_content().startswith("induction head: self L1.H0 ")
    buttons.first.click()
    state = page.eval_on_selector("#attnlab-view", "e => Object.assign({}, e.dataset)")
    assert (state["layer"], state["heads"], state["tokens"]) == ("1", "0", str(2 * HALF + 1))
    toggle = page.locator('.head-toggle[data-head="0"]')
    assert toggle.get_attribute("data-marked") == "induction"
    assert "induction head" in toggle.get_attribute("title")
    assert page.locator('.head-toggle[data-head="1"]').get_attribute("data-marked") is None
    assert buttons.first.get_attribute("aria-pressed") == "true"
    maps = page.eval_on_selector_all("canvas.cell.marked",
                                     "cs => cs.map(c => [+c.dataset.layer, +c.dataset.head])")
    assert maps == [[0, 0], [1, 0]]
    assert page.locator("canvas.cell.selected").get_attribute("data-layer") == "1"
    # the pattern the page draws for the selected head: (L, L) bytes, round(weight * 255)
    weights = page.evaluate("() => Array.from(window.attnlabView.matrix(1, 0))")
    n = 2 * HALF + 1
    rows = [weights[i * n:(i + 1) * n] for i in range(n)]
    for query in range(HALF + 1, n):  # the second half's w1 .. w6
        stripe = query - HALF + 1  # the token after the query token's first occurrence
        assert rows[query][stripe] == round(stripe_weight(query) * 255) == 255
        assert sum(rows[query]) - rows[query][stripe] <= 1
    assert page.locator(".roles-tab").is_hidden()


def test_a_row_of_the_heat_map_selects_its_head(page, page_file):
    path, _ = page_file
    open_page(page, path)
    page.get_by_role("tab", name="Roles").click()
    page.locator(".roles-tab tbody th", has_text="self L1.H1").click()
    assert page.locator(".tabs").get_attribute("data-tab") == "attention"
    state = page.eval_on_selector("#attnlab-view", "e => Object.assign({}, e.dataset)")
    assert (state["layer"], state["heads"]) == ("1", "1")
    weights = page.evaluate("() => Array.from(window.attnlabView.matrix(1, 1))")
    n = 2 * HALF + 1
    for query in range(n):  # zero queries and keys: uniform over the keys 0 .. query
        row = weights[query * n:(query + 1) * n]
        assert row[:query + 1] == pytest.approx([255 / (query + 1)] * (query + 1), abs=0.51)
        assert row[query + 1:] == [0] * (n - query - 1)
