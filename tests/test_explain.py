"""explain_attention and ``attnlab explain``: hand-worked examples, the CLI end to end."""

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

import attnlab.cli
from attnlab.attention import explain_attention, scaled_dot_product_attention
from attnlab.cli import main
from attnlab.errors import UsageError


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


# Worked by hand: softmax(Q Kᵀ · scale) V. E.g. the first: scores [1, 0] · 1/√2 = [0.7071, 0],
# weights [e^0.7071, 1] / (e^0.7071 + 1) = [0.6698, 0.3302], output 0.6698·[1,2] + 0.3302·[3,4].
HAND_WORKED = [
    ([[1, 0]], [[1, 0], [0, 1]], [[1, 2], [3, 4]], 1 / math.sqrt(2), [[1.6605, 2.6605]]),
    ([[1, 0, 0]], [[1, 0, 0], [0, 1, 0]], [[1, 2], [3, 4]], 1 / math.sqrt(3),
     [[1.7191, 2.7191]]),
    ([[1, 0, 1]], [[1, 0, 1], [0, 1, 0], [1, 1, 0]], [[1, 2], [3, 4], [5, 6]], 1 / math.sqrt(3),
     [[2.5325, 3.5325]]),
    # scores [1, -10]: the second key gets e^-11 / (1 + e^-11) = 1.67e-5 of the weight.
    ([[1, 0]], [[1, 0], [-10, 1]], [[10, 20], [30, 40]], 1.0, [[10.0003, 20.0003]]),
]


@pytest.mark.parametrize("q, k, v, scale, expected", HAND_WORKED)
def test_hand_worked_examples(q, k, v, scale, expected):
    q, k, v = _t(q), _t(k), _t(v)
    steps = explain_attention(q, k, v, scale=scale)
    assert round(steps.scale, 12) == round(scale, 12)
    torch.testing.assert_close(steps.output, _t(expected), atol=5e-5, rtol=0)
    # The default scale is 1/sqrt(d_k): the same result without passing it (except scale 1).
    if scale != 1.0:
        torch.testing.assert_close(explain_attention(q, k, v).output, steps.output)


def test_softmax_of_a_score_row_hand_worked():
    # softmax([0.5, 1, 0.2]): e^0.2 / (e^0.5 + e^1 + e^0.2) = 1.2214 / 5.5875 = 0.2186
    steps = explain_attention(_t([[1.0]]), _t([[0.5], [1.0], [0.2]]), _t([[1.0], [2.0], [3.0]]),
                              scale=1.0)
    torch.testing.assert_close(steps.scaled_scores, _t([[0.5, 1.0, 0.2]]))
    assert round(steps.weights[0, 2].item(), 4) == 0.2186
    torch.testing.assert_close(steps.weights, _t([[0.2950, 0.4864, 0.2186]]), atol=5e-5, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_steps_are_consistent_and_match_scaled_dot_product_attention(causal):
    q, k, v = (torch.randn(2, 4, e, dtype=torch.float64) for e in (5, 5, 3))
    mask = torch.rand(4, 4) > 0.3
    mask[:, 0] = True
    steps = explain_attention(q, k, v, mask, is_causal=causal)
    reference = scaled_dot_product_attention(q, k, v, mask, is_causal=causal)
    torch.testing.assert_close(steps.output, reference.output)
    torch.testing.assert_close(steps.scores, q @ k.transpose(-2, -1))
    allowed = mask & torch.ones(4, 4, dtype=torch.bool).tril() if causal else mask
    expected_scaled = (steps.scores / math.sqrt(5)).masked_fill(~allowed, -math.inf)
    torch.testing.assert_close(steps.scaled_scores, expected_scaled)
    torch.testing.assert_close(steps.weights, torch.softmax(expected_scaled, -1))
    torch.testing.assert_close(steps.row_sums, torch.ones(2, 4, dtype=torch.float64))
    torch.testing.assert_close(steps.output, steps.weights @ v)
    listed = steps.to_dict()["scaled_scores"]  # JSON-ready: blocked keys are None
    assert [[[x is not None for x in row] for row in b] for b in listed] == \
        allowed.expand(2, 4, 4).tolist()


# ---------------------------------------------------------------- CLI

EXAMPLE = ["--q", "[[1,0,1]]", "--k", "[[1,0,1],[0,1,0],[1,1,0]]", "--v", "[[1,2],[3,4],[5,6]]"]


def test_cli_prints_every_step_with_shapes(capsys):
    assert main(["explain", *EXAMPLE]) == 0
    out = capsys.readouterr().out
    for text in ("(L=1 × d_k=3)", "(S=3 × d_v=2)", "1. scores = Q Kᵀ  (1 × 3)",
                 "[ 2.0000  0.0000  1.0000 ]", "1/sqrt(3) = 0.5774",
                 "[ 1.1547  0.0000  0.5774 ]", "[ 0.5329  0.1679  0.2992 ]",
                 "each row sums to 1: row sums = [1.0000]", "4. output = weights V  (1 × 2)",
                 "[ 2.5325  3.5325 ]"):
        assert text in out, text


def test_cli_json_with_mask_scale_causal_and_decimals(capsys):
    argv = ["explain", "--q", "[[1,0],[0,1]]", "--k", "[[1,0],[-10,1]]",
            "--v", "[[10,20],[30,40]]", "--scale", "1", "--mask", "[[1,1],[1,0]]", "--causal",
            "--json", "--decimals", "3"]
    assert main(argv) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["scale"] == 1.0 and obj["scale_rule"] == "given"
    assert obj["mask"] == [[1, 0], [1, 0]]  # causal AND the given mask
    assert obj["scores"] == [[1.0, -10.0], [0.0, 1.0]]
    assert obj["scaled_scores"] == [[1.0, None], [0.0, None]]
    assert obj["weights"] == [[1.0, 0.0], [1.0, 0.0]]
    assert obj["output"] == [[10.0, 20.0], [10.0, 20.0]]
    assert obj["shapes"]["weights"] == [2, 2] and obj["row_sums"] == [1.0, 1.0]


def test_cli_json_rounds_the_fourth_hand_worked_example(capsys):
    argv = ["explain", "--q", "[[1,0]]", "--k", "[[1,0],[-10,1]]", "--v", "[[10,20],[30,40]]",
            "--scale", "1", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["output"] == [[10.0003, 20.0003]]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--q", "[[1,0,1]", "--k", "[[1]]", "--v", "[[1]]"], "--q: not valid JSON"),
        (["--q", "[[1]]", "--k", "[[1],[1,2]]", "--v", "[[1]]"], "--k: ragged matrix"),
        (["--q", "[[1]]", "--k", "[[1]]", "--v", "[1]"], "--v: expected a non-empty matrix"),
        (["--q", "[[1]]", "--k", "[[1]]", "--v", '[["a"]]'], "--v: entries must be"),
        (["--q", "[[1,2]]", "--k", "[[1]]", "--v", "[[1]]"], "--k rows must have"),
        (["--q", "[[1]]", "--k", "[[1],[2]]", "--v", "[[1]]"], "--v must have as many rows"),
        (["--q", "[[1]]", "--k", "[[1]]", "--v", "[[1]]", "--mask", "[[1,1]]"],
         "--mask must be L × S = 1 × 1"),
        (["--q", "[[1]]", "--k", "[[1]]", "--v", "[[1]]", "--mask", "[[3]]"], "--mask entries"),
    ],
)
def test_cli_bad_input_is_a_one_line_error(capsys, argv, message):
    assert main(["explain", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("attnlab explain: error: ") and message in captured.err
    assert captured.err.count("\n") == 1


def test_cli_subprocess_error_has_exit_code_2_and_no_traceback():
    bad = subprocess.run([sys.executable, "-m", "attnlab.cli", "explain", "--q", "[[1,",
                          "--k", "[[1]]", "--v", "[[1]]"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("attnlab explain: error: --q: not valid JSON")


def test_cli_only_bad_input_becomes_exit_code_2(monkeypatch, capsys):
    """A UsageError is the user's: one line, exit 2. A TypeError or a ValueError from inside
    the library is a bug: it propagates."""
    def usage(args):
        raise UsageError("--q is wrong")

    def bug(args):
        raise TypeError("unsupported operand")

    def internal(args):
        raise ValueError("zip() argument 2 is shorter than argument 1")

    command = attnlab.cli.INSPECTION["explain"]
    monkeypatch.setitem(attnlab.cli.INSPECTION, "explain", replace(command, run=usage))
    assert main(["explain", *EXAMPLE]) == 2
    assert capsys.readouterr().err == "attnlab explain: error: --q is wrong\n"
    for handler, error in ((bug, TypeError), (internal, ValueError)):
        monkeypatch.setitem(attnlab.cli.INSPECTION, "explain", replace(command, run=handler))
        with pytest.raises(error):
            main(["explain", *EXAMPLE])


def test_a_library_value_error_is_a_traceback_and_exit_1():
    """Run as a user runs it: an internal ValueError prints its traceback and exits 1."""
    program = ("import dataclasses, sys, attnlab.cli as cli\n"
               "def broken(args):\n"
               "    raise ValueError('zip() argument 2 is shorter than argument 1')\n"
               "cli.INSPECTION['explain'] = dataclasses.replace(cli.INSPECTION['explain'], "
               "run=broken)\n"
               f"sys.exit(cli.main(['explain', *{EXAMPLE!r}]))\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "ValueError: zip() argument 2 is shorter" in done.stderr


# ---------------------------------------------------------------- overflow (issue 14)

@pytest.mark.parametrize("argv, message", [
    (["--q", "[[1e308]]", "--k", "[[1e308],[1]]", "--v", "[[1],[2]]"], "Q Kᵀ overflows"),
    (["--q", "[[1e200]]", "--k", "[[1e100],[1]]", "--v", "[[1],[2]]", "--scale", "1e100"],
     "scores · scale overflows"),
    (["--q", "[[1]]", "--k", "[[1],[1]]", "--v", "[[1e308],[1e308]]", "--scale", "1"], None),
])
def test_cli_overflow_is_an_error_not_nan(capsys, argv, message):
    code = main(["explain", *argv])
    captured = capsys.readouterr()
    if message is None:  # large but representable: fine
        assert code == 0 and "nan" not in captured.out and "inf" not in captured.out
        return
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("attnlab explain: error: ") and message in captured.err
    assert "float64" in captured.err and captured.err.count("\n") == 1


def test_explain_attention_refuses_non_finite_results():
    with pytest.raises(ValueError, match="overflows"):
        explain_attention(_t([[1e308]]), _t([[1e308], [1.0]]), _t([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="not finite"):
        explain_attention(_t([[math.nan]]), _t([[1.0]]), _t([[1.0]]))
    # a blocked key is -inf on purpose: still fine
    steps = explain_attention(_t([[1.0]]), _t([[1.0], [2.0]]), _t([[1.0], [2.0]]),
                              torch.tensor([[True, False]]))
    assert steps.weights.tolist() == [[1.0, 0.0]]
