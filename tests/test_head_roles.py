"""Heads by what they do: role scores on hand-built patterns whose scores are known exactly, on
a planted two-layer causal model (a previous-token head and an induction head set by hand),
and ``attnlab heads RUN --roles`` on the tiny classifier and translation runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from attnlab.attention import MultiHeadAttention
from attnlab.cli import main
from attnlab.errors import InputError
from attnlab.inspect.protocol import HeadPass
from attnlab.inspect.roles import (
    in_context_score,
    is_punctuation,
    key_share,
    pattern_share,
    repeat_targets,
    row_entropy,
    shift_share,
    text_roles,
)
from attnlab.inspect.roles_probe import head_roles
from attnlab.inspect.roles_report import format_roles, roles_figure


def _one_hot_rows(targets: list[int], n_keys: int) -> torch.Tensor:
    """A one-head pattern ``(1, Q, K)`` where query ``q`` puts all its attention on
    ``targets[q]``."""
    return torch.eye(n_keys)[targets][None]


# --- hand-built patterns ----------------------------------------------------------------------

def test_perfect_previous_token_head():
    w = _one_hot_rows([0, 0, 1, 2, 3, 4], 6)  # row 0 has no previous token: itself
    assert shift_share(w, -1).item() == 1.0
    assert shift_share(w, 1).item() == 0.0
    entropy, broad = row_entropy(w)
    assert entropy.item() == 0.0 and broad.item() == 0.0
    tokens = ["[CLS]", "a", ",", "b", "c", "[SEP]"]
    roles = text_roles(w, tokens)
    assert roles["first"].item() == pytest.approx(2 / 6)  # rows 0 and 1 look at key 0
    assert roles["cls"].item() == pytest.approx(2 / 6)
    assert roles["punctuation"].item() == pytest.approx(1 / 6)  # row 3 looks at ","
    assert roles["sep"].item() == 0.0


def test_perfect_next_token_head_and_uniform_attention():
    nxt = _one_hot_rows([1, 2, 3, 4, 4], 5)
    assert shift_share(nxt, 1).item() == 1.0 and shift_share(nxt, -1).item() == 0.0
    uniform = torch.full((2, 5, 5), 1 / 5)
    entropy, broad = row_entropy(uniform)
    assert torch.allclose(entropy, torch.full((2,), math.log(5), dtype=torch.float64))
    assert torch.allclose(broad, torch.ones(2, dtype=torch.float64))
    assert shift_share(uniform, -1).tolist() == pytest.approx([0.2, 0.2])


def test_entropy_of_causal_uniform_rows_counts_the_visible_keys():
    n = 5
    w = torch.tril(torch.ones(n, n))
    w = (w / w.sum(-1, keepdim=True))[None]  # row i uniform over keys 0..i
    entropy, broad = row_entropy(w, visible=torch.arange(1, n + 1))
    assert entropy.item() == pytest.approx(sum(math.log(i) for i in range(1, n + 1)) / n)
    assert broad.item() == pytest.approx(1.0)  # row 0 (one key) is left out
    assert row_entropy(w)[1].item() < 0.8  # against all 5 keys it would not look broad


def test_token_roles_clark_et_al():
    tokens = ["[CLS]", "the", "film", ".", "[SEP]"]
    on_sep = _one_hot_rows([4] * 5, 5)
    on_dot = _one_hot_rows([3] * 5, 5)
    w = torch.cat([on_sep, on_dot])  # (2, 5, 5)
    roles = text_roles(w, tokens)
    assert roles["sep"].tolist() == [1.0, 0.0]
    assert roles["punctuation"].tolist() == [0.0, 1.0]
    assert roles["cls"].tolist() == [0.0, 0.0] and roles["first"].tolist() == [0.0, 0.0]
    assert key_share(w, [True, True, False, False, False]).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("token,expected", [(",", True), ("##.", True), ("Ġ!", True),
                                            ("...", True), ("a", False), ("[SEP]", False),
                                            ("▁", False), ("don't", False)])
def test_is_punctuation(token, expected):
    assert is_punctuation(token) is expected


def test_repeat_targets_by_hand():
    # [CLS] a b c a b c [SEP]: the sequence starts at position 1 on both sides
    assert repeat_targets(3, 8, 1, 1, "duplicate").tolist() == [-1, -1, -1, -1, 1, 2, 3, -1]
    assert repeat_targets(3, 8, 1, 1, "induction").tolist() == [-1, -1, -1, -1, 2, 3, 4, -1]
    # a translator's cross-attention: target [BOS] a b a b, source a b a b [EOS]
    assert repeat_targets(2, 5, 1, 0, "induction").tolist() == [-1, -1, -1, 1, 2]


def test_perfect_induction_and_duplicate_heads():
    induction = repeat_targets(3, 8, 1, 1, "induction")
    duplicate = repeat_targets(3, 8, 1, 1, "duplicate")
    rows = [int(t) if t >= 0 else 0 for t in induction]  # other rows on [CLS]
    w = _one_hot_rows(rows, 8)
    assert pattern_share(w, induction, excluded_keys=1).item() == 1.0
    assert pattern_share(w, duplicate, excluded_keys=1).item() == 0.0
    w = _one_hot_rows([int(t) if t >= 0 else 0 for t in duplicate], 8)
    assert pattern_share(w, duplicate, excluded_keys=1).item() == 1.0


def test_the_excluded_first_token_leaves_both_sums():
    targets = repeat_targets(3, 8, 1, 1, "induction")
    rows = [int(t) if t >= 0 else 0 for t in targets]
    w = 0.5 * _one_hot_rows(rows, 8) + 0.5 * _one_hot_rows([0] * 8, 8)  # half on [CLS]
    assert pattern_share(w, targets, excluded_keys=1).item() == pytest.approx(1.0)
    assert pattern_share(w, targets, excluded_keys=0).item() == pytest.approx(0.5)


def test_pattern_share_matches_transformer_lens_formula():
    """TransformerLens's detection patterns built from token equality (head_detector.py) and
    its ``mul`` score, on the second-half rows with the first column zeroed (exclude_bos)."""
    torch.manual_seed(1)
    half = torch.randperm(50)[:7] + 10
    tokens = torch.cat([torch.tensor([1]), half, half])  # [BOS] + repeated, causal
    n = len(tokens)
    w = torch.softmax(torch.randn(3, n, n).masked_fill(~torch.tril(torch.ones(n, n,
                      dtype=torch.bool)), float("-inf")), -1)  # (3, n, n)
    dup = (tokens[:, None] == tokens[None, :]).float()
    dup.fill_diagonal_(0)
    dup = torch.tril(dup)
    ind = torch.roll(dup, shifts=1, dims=1)
    ind[:, 0] = 0
    ind = torch.tril(ind)
    rows = slice(1 + 7, n)  # the second half
    for pattern, kind in ((dup, "duplicate"), (ind, "induction")):
        ref = w.clone().double()
        ref[:, :, 0] = 0
        expected = (ref[:, rows] * pattern[rows]).sum((-1, -2)) / ref[:, rows].sum((-1, -2))
        got = pattern_share(w, repeat_targets(7, n, 1, 1, kind), excluded_keys=1)
        assert torch.allclose(got, expected)


def test_in_context_score_by_hand():
    losses = torch.tensor([[5.0, 4.0, 3.0, 2.0], [7.0, 6.0, 3.0, 1.0]])
    assert in_context_score(losses, early=1, late=3) == pytest.approx(1.5 - 5.0)
    assert in_context_score(losses[0], early=0, late=2) == pytest.approx(-2.0)
    with pytest.raises(InputError, match="early < late < T=4"):
        in_context_score(losses)  # Olsson's 50 and 500 need 501 positions


def test_bad_weights_are_refused():
    with pytest.raises(InputError, match=r"weights must be a non-empty tensor \(H, Q, K\)"):
        shift_share(torch.ones(3, 3), -1)
    with pytest.raises(InputError, match="keys must mark each of the 3 keys"):
        key_share(torch.ones(1, 3, 3), [True])


# --- a planted two-layer causal model (the shape of a future language-model subject) ----------

V, P = 40, 24  # vocabulary (id 0 is [BOS]), positions
D = V + P + V  # residual: token one-hot | position one-hot | the previous token (written by L0)


class Planted(nn.Module):
    """Attention only, causal. Layer 0 head 0 attends to the previous position and writes that
    token into the third slot; layer 1 head 0 matches the current token against it (induction).
    Heads 1 have zero queries, keys and values: uniform over the visible keys."""

    def __init__(self, c: float = 12.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList([MultiHeadAttention(D, 2, d_k=P, d_v=V, bias=False),
                                     MultiHeadAttention(D, 2, d_k=V, d_v=V, bias=False)])
        with torch.no_grad():
            for layer in self.layers:
                for proj in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj):
                    proj.weight.zero_()
            prev, ind = self.layers
            prev.q_proj.weight[:P, V:V + P] = c * torch.eye(P)  # q_i = c e_i
            prev.k_proj.weight[1:P, V:V + P - 1] = c * torch.eye(P - 1)  # k_j = c e_(j+1)
            prev.v_proj.weight[:V, :V] = torch.eye(V)  # the token
            prev.out_proj.weight[V + P:, :V] = torch.eye(V)  # into the third slot
            ind.q_proj.weight[:V, :V] = c * torch.eye(V)  # the current token
            ind.k_proj.weight[:V, V + P:] = c * torch.eye(V)  # the previous token

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        x = torch.cat([nn.functional.one_hot(ids, V).float(),  # (B, L, V)
                       nn.functional.one_hot(torch.arange(n), P).float().expand(len(ids), n, P),
                       torch.zeros(len(ids), n, V)], -1)  # (B, L, D)
        for layer in self.layers:
            x = x + layer(x, is_causal=True).output  # (B, L, D)
        return x


class PlantedSubject:
    """What a causal language-model subject gives the probe: ``[BOS] ids``, one kind."""

    name, task, labels = "planted", "lm", None
    attention_kinds, show_options, default_example = ("self",), (), "w1 w2 w3 w4 w5"

    def __init__(self) -> None:
        self.model = Planted().eval()
        self.vocab = ["[BOS]", *(f"w{i}" for i in range(1, V))]

    def ordinary_ids(self) -> list[int]:
        return list(range(1, V))

    def ids_pass(self, ids, attention: str) -> HeadPass:
        x = torch.tensor([[0, *ids]])  # (1, L)
        tokens = [self.vocab[i] for i in x[0].tolist()]
        return HeadPass(self.model, self.name, ["layers.0", "layers.1"], tokens, tokens,
                        lambda: self.model(x), offsets=(1, 1))

    def head_pass(self, text: str, attention: str) -> HeadPass:
        return self.ids_pass([self.vocab.index(w) for w in text.split()], attention)


def test_the_planted_heads_are_found():
    table = head_roles(PlantedSubject(), ["w3 w9 w4 w1 w7 w2", "w5 w5 w6 w8"],
                       repeat_length=8, sequences=3)
    by = {(h.layer, h.head): h.scores for h in table.heads}
    assert by[0, 0]["previous"] > 0.99
    assert table.top("previous", 1)[0].label == "self L0.H0"
    assert by[1, 0]["induction"] > 0.8
    assert table.top("induction", 1)[0].label == "self L1.H0"
    for other in ((0, 0), (0, 1), (1, 1)):
        assert by[other]["induction"] < 0.25
    # the uniform heads are uniform over the keys the causal mask leaves: broad 1.0 exactly
    assert by[0, 1]["broad"] == pytest.approx(1.0) and by[1, 1]["broad"] == pytest.approx(1.0)
    assert by[0, 0]["next"] == 0.0  # causal: nothing after


def test_head_roles_arguments_are_checked():
    subject = PlantedSubject()
    with pytest.raises(InputError, match="repeat_length must be an integer >= 2"):
        head_roles(subject, repeat_length=1)
    with pytest.raises(InputError, match="attention must name kinds among self, got cross"):
        head_roles(subject, attention=["cross"])


# --- real subjects and the command line ------------------------------------------------------

def test_classifier_roles_table_and_picture(classifier, tmp_path):
    table = head_roles(classifier, ["a good film", "dull , boring"], repeat_length=5,
                       sequences=2)
    assert [(h.layer, h.head) for h in table.heads] == [(l, h) for l in range(2)
                                                       for h in range(4)]
    for head in table.heads:
        assert all(math.isfinite(v) for v in head.scores.values())
        assert 0.0 <= head.scores["broad"] <= 1.0 + 1e-9
        # every text starts with [CLS]: "first" and "cls" are the same keys
        assert head.scores["first"] == pytest.approx(head.scores["cls"])
    text = format_roles(table)
    assert text.count("*") >= 3 * len(table.roles) and "self L1.H3" in text
    fig = roles_figure(table)
    assert len(fig.axes[0].get_yticklabels()) == 8


def test_heads_roles_command_on_the_classifier(classifier_run, tmp_path, capsys):
    assert main(["heads", str(classifier_run), "--roles", "--repeat-length", "5",
                 "--sequences", "2", "--out", str(tmp_path / "roles")]) == 0
    out = capsys.readouterr().out
    assert "self L0.H0" in out and "induction" in out
    assert f"wrote {tmp_path / 'roles.png'}" in out and (tmp_path / "roles.png").stat().st_size
    assert main(["heads", str(classifier_run), "--roles", "--json", "--repeat-length", "5",
                 "--out", str(tmp_path / "r.png")]) == 0
    data = json.loads(capsys.readouterr().out)  # "wrote" went to stderr
    assert len(data["heads"]) == 8 and set(data["top"]) == set(data["roles"])
    assert data["probe"]["repeat_length"] == 5 and data["model"] == "run"


def test_heads_roles_command_on_the_translation_run(translation_run, capsys):
    assert main(["heads", str(translation_run), "--roles", "--json", "--repeat-length", "4",
                 "--sequences", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = [h["attention"] for h in data["heads"]]
    # 1 encoder layer, 2 decoder layers, 2 heads each
    assert kinds == ["self"] * 2 + ["decoder"] * 4 + ["cross"] * 4
    decoder = [h for h in data["heads"] if h["attention"] == "decoder"]
    assert all(h["scores"]["next"] == 0.0 for h in decoder)  # causal


@pytest.mark.parametrize("argv,message", [
    (["--json"], "--json needs --roles"),
    (["--roles", "--sequences", "0"], "--sequences must be >= 1, got 0"),
    (["--roles", "--repeat-length", "1"], "--repeat-length must be >= 2, got 1"),
    (["--roles", "--prune", "0.5"], "--prune does not apply with --roles"),
    (["--roles", "--repeat-length", "100"], "repeat_length 100 (twice: 200 tokens) does not fit"),
])
def test_heads_roles_errors_are_one_line(classifier_run, capsys, argv, message):
    assert main(["heads", str(classifier_run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
