"""``attnlab train / evaluate / predict / experiment`` on SST-2 (slices, small models)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics

import pytest
import torch

from attnlab.cli import build_parser, main
from attnlab.errors import UsageError
from attnlab.io import load_checkpoint
from attnlab.models.classifier import ClassifierConfig
from attnlab.tasks.classification.config import DataConfig, FinetuneConfig
from attnlab.tasks.classification.launch import experiment_from_options, train_from_options
from attnlab.tasks.runs import RunControl
from attnlab.train import MetricsLog
from attnlab.train.config import TrainConfig

# A small model on the first 10,000 training phrases: ~900 steps, well under a minute.
SLICE = ["--data", "sst2", "--train-limit", "10000", "--d-model", "32", "--d-ff", "64",
         "--heads", "2", "--layers", "1", "--dropout", "0.1", "--epochs", "3",
         "--batch-size", "32", "--lr", "1e-2", "--log-every", "50", "--quiet"]
TINY = ["--data", "sst2", "--train-limit", "400", "--d-model", "16", "--d-ff", "32",
        "--layers", "1", "--epochs", "2", "--batch-size", "32", "--lr", "1e-2", "--quiet"]


@pytest.fixture(scope="module")
def sst2_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("sst2") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *SLICE, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def test_train_on_a_slice_of_sst2_beats_chance(sst2_run):
    result = json.loads((sst2_run / "result.json").read_text())
    assert result["best_val"]["accuracy"] > 0.70  # chance is ~0.51 on the dev split
    assert result["best_val"]["n"] == 872
    assert result["global_step"] == 3 * (10000 // 32)
    config = load_checkpoint(sst2_run / "best").config
    assert config["model"]["n_heads"] == 2 and config["model"]["d_model"] == 32
    assert config["train"]["lr"] == 1e-2 and config["data"]["train_limit"] == 10000
    assert config["labels"] == ["negative", "positive"]
    assert (sst2_run / "best" / "tokenizer.json").is_file()
    records = MetricsLog.read(sst2_run / "metrics.jsonl")
    evals = [r for r in records if r["type"] == "eval"]  # every 100 steps and at epoch ends
    assert [r["step"] for r in evals] == [100, 200, 300, 312, 400, 500, 600, 624, 700, 800,
                                          900, 936]
    assert result["best_val"]["loss"] == min(r["loss"] for r in evals)


def test_evaluate_json_reproduces_the_best_epoch(sst2_run, capsys):
    assert main(["evaluate", str(sst2_run), "--data", "sst2", "--split", "dev", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"loss", "accuracy", "f1", "n"}
    best = json.loads((sst2_run / "result.json").read_text())["best_val"]
    assert got["n"] == 872
    assert got["accuracy"] == pytest.approx(best["accuracy"], abs=1e-12)
    assert got["loss"] == pytest.approx(best["loss"], rel=1e-5)


def test_evaluate_text_on_test_split(sst2_run, capsys):
    assert main(["evaluate", str(sst2_run), "--split", "test"]) == 0  # data from the run
    out = capsys.readouterr().out
    assert out.startswith("sst2 test: loss ") and "accuracy" in out and out.rstrip().endswith(
        "n 1821")


def test_predict_json_and_text(sst2_run, capsys, tmp_path):
    texts = ["a gorgeous , witty , wonderful film", "a dull , boring and awful mess"]
    assert main(["predict", str(sst2_run), *texts, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [p["text"] for p in got] == texts
    for p in got:
        assert set(p) == {"text", "label", "probability", "probs"}
        assert sum(p["probs"].values()) == pytest.approx(1.0)
        assert p["probability"] == max(p["probs"].values()) >= 0.5
    assert [p["label"] for p in got] == ["positive", "negative"]
    file = tmp_path / "texts.txt"
    file.write_text("first line\n\nsecond line\n")
    assert main(["predict", str(sst2_run), "third", "--file", str(file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(maxsplit=2)[2] for line in lines] == ["third", "first line", "second line"]
    assert all(line.split()[0] in ("positive", "negative") for line in lines)


def test_predict_and_evaluate_errors(sst2_run, tmp_path, capsys):
    assert main(["predict", str(sst2_run)]) == 2
    assert "no texts" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_unknown_and_bad_options_fail(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", "x", "--num-heads", "4"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --num-heads" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--out", "x", "--lr", "fast"])
    assert "--lr expects float, got 'fast'" in capsys.readouterr().err
    assert main(["train", "--out", "x", "--schedule", "step"]) == 2
    assert "schedule must be one of" in capsys.readouterr().err


def test_option_help_is_the_field_metadata(capsys):
    for cls in (DataConfig, ClassifierConfig, TrainConfig, FinetuneConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    for cls, name in ((TrainConfig, "lr"), (ClassifierConfig, "n_heads"),
                      (DataConfig, "train_limit"), (FinetuneConfig, "head_dropout")):
        field = cls.__dataclass_fields__[name]
        assert f"{field.metadata['help']} [default: {field.default}]" in out


def test_experiment_has_no_seed_option():
    """An experiment seeds its runs itself (--first-seed); only train has --seed."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))

    def dests(command):
        return {action.dest for action in sub.choices[command]._actions}

    assert "train.seed" in dests("train") and "train.lr" in dests("experiment")
    assert "train.seed" not in dests("experiment")


def test_wrong_option_combinations_are_usage_errors(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(UsageError, match="^--d-model, --heads configure a classifier trained "):
        train_from_options(out, data={}, model={"d_model": 64, "n_heads": 2}, train={},
                           finetune={"init": "all-MiniLM-L6-v2"})
    with pytest.raises(UsageError, match="^--head-pooling apply to fine-tuning only; add --init"):
        train_from_options(out, data={}, model={}, train={}, finetune={"pooling": "pooler"})
    with pytest.raises(UsageError, match="first_seed"):
        experiment_from_options("heads", out, data={}, model={}, train={"seed": 1})
    assert not out.exists()


def test_resume_from_the_cli(tmp_path, capsys, one_thread, data_dir):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--save-every", "5", "--max-steps", "12", "--out", str(out)]) == 0
    first = load_checkpoint(out / "last").weights
    # Resuming a finished run trains nothing more; a changed setting is refused.
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    again = load_checkpoint(out / "last").weights
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert main(["train", "--out", str(out), "--resume", "--lr", "0.5"]) == 2
    assert "lr (saved 0.01, now 0.5)" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--heads", "2"]) == 2
    assert "model.n_heads (saved 4, now 2)" in capsys.readouterr().err


def test_classifier_resume_is_exact(tmp_path, one_thread, data_dir):
    """The real TextClassifier (dropout, word dropout) on SST-2: crash after step 15 with a
    checkpoint at step 10, resume, and end with the uninterrupted run's weights."""
    from attnlab.tasks.classification.config import DataConfig
    from attnlab.tasks.classification.pipeline import train_classifier
    from attnlab.train import Callback, TrainConfig

    class Crash(Callback):
        def on_step_end(self, trainer, info):
            if info.step == 15:
                raise RuntimeError("simulated crash")

    data = DataConfig(train_limit=400)
    options = dict(d_model=16, d_ff=32, n_layers=1, dropout=0.2, word_dropout=0.2)
    train = TrainConfig(epochs=2, batch_size=32, save_every=10)  # 24 steps
    quiet = RunControl(progress=False)
    full = train_classifier(tmp_path / "full", data, options, train, quiet)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_classifier(tmp_path / "cut", data, options, train,
                         RunControl(progress=False, callbacks=[Crash()]))
    resumed = train_classifier(tmp_path / "cut", data, options, train,
                               RunControl(resume=True, progress=False))
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.result.best_val == full.result.best_val


def test_an_option_left_out_means_its_default_not_the_saved_value(tmp_path, one_thread,
                                                                   data_dir):
    """Resuming, or reusing a run in an experiment, compares the whole model: leaving an
    option out asks for its default, so a run saved with another value is not taken as equal."""
    from attnlab.models import ClassifierConfig
    from attnlab.tasks.classification.pipeline import (
        DataConfig,
        differences_from_saved,
        train_classifier,
    )
    from attnlab.train import TrainConfig

    default = ClassifierConfig.__dataclass_fields__["positional"].default
    other = "learned" if default != "learned" else "sinusoidal"
    data = DataConfig(train_limit=200)
    options = dict(d_model=16, d_ff=32, n_layers=1)
    train = TrainConfig(batch_size=32, max_steps=2, ema_decay=None)
    train_classifier(tmp_path / "run", data, {**options, "positional": other}, train,
                     RunControl(progress=False))
    assert differences_from_saved(tmp_path / "run", data, {**options, "positional": other}) == []
    expected = f"model.positional (saved {other!r}, now {default!r})"
    assert differences_from_saved(tmp_path / "run", data, options) == [expected]
    with pytest.raises(ValueError, match=re.escape(expected)):
        train_classifier(tmp_path / "run", data, options, train,
                         RunControl(resume=True, progress=False))


def _mean_from_runs(folder, variant, key):
    values = []
    for seed_dir in sorted((folder / variant).iterdir()):
        result = json.loads((seed_dir / "result.json").read_text())
        values.append(result["best_val"][key])
    return statistics.fmean(values), len(values)


def test_experiment_heads_report(tmp_path, capsys, one_thread, data_dir):
    out = tmp_path / "exp"
    assert main(["experiment", "heads", *TINY, "--heads", "2", "--seeds", "2",
                 "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    # The paired (same-seed) differences of heads-2 - heads-1, their spread and the verdict.
    base, other = ({r["seed"]: r for r in v["runs"]} for v in summary["variants"])
    d_acc = [100 * (other[s]["val_accuracy"] - base[s]["val_accuracy"]) for s in (0, 1)]
    d_loss = [other[s]["val_loss"] - base[s]["val_loss"] for s in (0, 1)]
    (acc, acc_sd), (loss, loss_sd) = ((statistics.fmean(d), statistics.stdev(d))
                                      for d in (d_acc, d_loss))
    ahead = sum(d > 0 for d in d_acc)
    standing = ("2 heads are ahead of 1 head" if acc > acc_sd else
                "2 heads are behind 1 head" if -acc > acc_sd else
                "2 heads vs 1 head: no clear difference")
    verdict = (f"VERDICT (val accuracy, higher is better): {standing}: {acc:+.2f} ± "
               f"{acc_sd:.2f} points, ahead in {ahead} of 2 seeds.")
    for text in (stdout, report):
        assert "| heads-1 | 1 |" in text and "| heads-2 | 2 |" in text
        assert (f"heads-2 minus heads-1, paired over 2 seed(s) (mean ± std): val loss "
                f"{loss:+.4f} ± {loss_sd:.4f} ({'larger' if abs(loss) > loss_sd else 'no larger'}"
                f" than its spread); val accuracy {acc:+.2f} ± {acc_sd:.2f} points ("
                f"{'larger' if abs(acc) > acc_sd else 'no larger'} than its spread); ahead on "
                f"val accuracy in {ahead} of 2 seeds.") in text
        assert "Target (val loss < 0.40 and val acc > 78%) for heads-1:" in text
        assert f"- {verdict}\n" in text  # the last finding
    assert summary["verdict"] == summary["findings"][-1] == verdict
    assert "Rule of the verdict" in report
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for variant in summary["variants"]:
        runs = variant["runs"]
        mean, n = _mean_from_runs(out, variant["name"], "accuracy")
        assert n == len(runs) == 2
        assert statistics.fmean(r["val_accuracy"] for r in runs) == pytest.approx(mean)
        assert f"{100 * mean:.2f} ± " in report  # the table shows the same mean
    params = [v["runs"][0]["n_parameters"] for v in summary["variants"]]
    assert params[0] == params[1]  # same d_model: heads split it, parameters stay equal
    # Test columns: best/ of each run on the test split, as `attnlab evaluate` gives them.
    first = summary["variants"][0]["runs"][0]
    capsys.readouterr()
    assert main(["evaluate", str(out / "heads-1" / "seed0"), "--data", "sst2", "--split", "test",
                 "--json"]) == 0
    test = json.loads(capsys.readouterr().out)
    assert (first["test_loss"], first["test_accuracy"]) == pytest.approx(
        (test["loss"], test["accuracy"]), abs=1e-9)
    assert first["best_step"] is not None and "| test loss | test accuracy % |" in report
    # A second call reuses the finished runs instead of training again.
    stamp = (out / "heads-1" / "seed0" / "result.json").stat().st_mtime_ns
    assert main(["experiment", "heads", *TINY, "--heads", "2", "--seeds", "2",
                 "--out", str(out)]) == 0
    assert (out / "heads-1" / "seed0" / "result.json").stat().st_mtime_ns == stamp
    assert "heads-1 seed 0 (reused): " in capsys.readouterr().err


def test_experiment_positional_variants(tmp_path, capsys, one_thread, data_dir):
    out = tmp_path / "exp"
    assert main(["experiment", "positional", *TINY, "--seeds", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [v["name"] for v in summary["variants"]] == [
        "positional-none", "positional-sinusoidal", "positional-learned", "positional-rotary"]
    report = (out / "report.md").read_text()
    assert "| positional-rotary | 4 | rotary |" in report
    assert "(one seed: spread not known)" in report
    assert summary["verdict"].startswith("VERDICT (val accuracy, higher is better): "
                                         "sinusoidal positions vs no positions: ")
    assert summary["verdict"].count("the spread over seeds is not known, so no verdict") == 3
    assert main(["experiment", "positional", *TINY, "--positional", "learned",
                 "--out", str(out)]) == 2


@pytest.mark.slow
def test_default_model_reaches_target_accuracy(tmp_path, data_dir):
    """The default settings (ClassifierConfig + TrainConfig defaults) on all of SST-2."""
    out = tmp_path / "default"
    assert main(["train", "--data", "sst2", "--out", str(out), "--quiet"]) == 0
    best = json.loads((out / "result.json").read_text())["best_val"]
    assert best["accuracy"] >= 0.78, best


# ---------------------------------------------------------------- data that is not SST-2 (issue 14)

TOY = ["--d-model", "16", "--d-ff", "32", "--layers", "1", "--heads", "2", "--epochs", "1",
       "--batch-size", "4", "--quiet"]


def _toy_rows(n=24):
    return [(f"a {'good' if i % 2 else 'dull'} film number {i}", i % 2) for i in range(n)]


def test_data_naming_one_file_is_refused(tmp_path, capsys, one_thread):
    path = tmp_path / "all.tsv"
    path.write_text("label\tsentence\n" + "".join(f"{y}\t{t}\n" for t, y in _toy_rows()))
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), *TOY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "train" in err and "dev" in err and "folder" in err
    assert not (out / "tokenizer.json").exists() and not (out / "last").exists()  # nothing trained


def test_a_text_without_tokens_names_file_and_line(tmp_path, capsys, one_thread):
    rows = _toy_rows()
    rows[3] = ("\u0301\u0301", 1)  # only combining marks: line 5 of the file
    (tmp_path / "train.tsv").write_text(
        "label\tsentence\n" + "".join(f"{y}\t{t}\n" for t, y in rows))
    (tmp_path / "dev.tsv").write_text(
        "label\tsentence\n" + "".join(f"{y}\t{t}\n" for t, y in _toy_rows(8)))
    assert main(["train", "--data", str(tmp_path), *TOY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'train.tsv'}:5:" in err and "no tokens" in err


def test_text_and_label_column_options(tmp_path, capsys, one_thread):
    for split, n in (("train", 24), ("dev", 8), ("test", 8)):
        (tmp_path / f"{split}.csv").write_text(
            "id,review,y\n" + "".join(f"{i},{t},{y}\n" for i, (t, y) in enumerate(_toy_rows(n))))
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path), *TOY, "--out", str(out)]) == 2
    assert "no text column" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), *TOY, "--text-column", "review",
                 "--label-column", "y", "--out", str(out)]) == 0
    data = load_checkpoint(out / "last").config["data"]
    assert data["text_column"] == "review" and data["label_column"] == "y"
    capsys.readouterr()
    # evaluate reads the split with the columns the run was trained with
    assert main(["evaluate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 8


def test_abbreviated_options_are_refused_not_bound_to_a_longer_one(capsys):
    # argparse would read --seed as --seeds (the experiment's option): a silent wrong choice
    with pytest.raises(SystemExit) as stop:
        main(["experiment", "heads", "--seed", "1", "--out", "unused"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --seed 1" in capsys.readouterr().err


def test_a_small_data_set_gets_smaller_batches_unless_one_is_given(tmp_path, capsys, one_thread,
                                                                    data_dir):
    """Without --batch-size, 640 phrases are trained in batches of 32 (20 steps an epoch, not
    5 of 128); config.json keeps "none", so a rerun or --resume plans the same batches."""
    small = ["--data", "sst2", "--train-limit", "640", "--d-model", "16", "--d-ff", "32",
             "--layers", "1", "--epochs", "1", "--eval-steps", "1000"]
    assert main(["train", *small, "--out", str(tmp_path / "auto")]) == 0
    assert "batches of 32: 640 training examples" in capsys.readouterr().err
    assert json.loads((tmp_path / "auto" / "result.json").read_text())["global_step"] == 20
    assert load_checkpoint(tmp_path / "auto" / "last").config["train"]["batch_size"] is None
    assert main(["train", "--out", str(tmp_path / "auto"), "--resume", "--quiet"]) == 0
    assert main(["train", *small, "--batch-size", "128", "--out", str(tmp_path / "given")]) == 0
    assert "batches of" not in capsys.readouterr().err
    assert json.loads((tmp_path / "given" / "result.json").read_text())["global_step"] == 5
