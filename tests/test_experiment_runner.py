"""The common experiment runner (:mod:`attnlab.tasks.experiment`) on fake runs: a task whose
training writes a run folder with made-up figures, so that the paired differences, the verdict
and the reuse, resume and retraining of runs are checked without training anything."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from attnlab.tasks.classification.metrics import EvalResult
from attnlab.tasks.experiment import Metric, Variant, run_variants
from attnlab.tasks.report import verdict_line
from attnlab.tasks.seeds import PairedDifference
from attnlab.train import FitResult


class FakeTask:
    """Variants ``base`` and ``multi``; "training" writes last/config.json, metrics.jsonl and
    result.json; the figures are ``scores[variant][seed]`` (accuracy) and ``1 - score / 100``
    (a loss, lower is better)."""

    title = "fake"
    about = ["Compared: two made-up arms."]
    metrics = [Metric("acc", "accuracy", 2, unit="points", compared=True),
               Metric("loss", "loss", 4, higher_is_better=False, compared=True)]
    main = "acc"
    dev_curve = Metric("accuracy", "dev accuracy", 2, scale=100)
    dev_metrics = EvalResult

    def __init__(self, scores: dict[str, list[float]], lr: float = 0.1) -> None:
        self.scores, self.lr = scores, lr
        self.variants = [Variant(name, {"arm": name}, f"{name} arms", {"arm": name})
                         for name in scores]
        self.settings = {"training": {"lr": lr}}
        self.trained: list[tuple[str, int, bool]] = []  # (variant, seed, resume) per call

    def differences(self, run_dir, variant, seed):
        saved = json.loads((run_dir / "last" / "config.json").read_text())["train"]["lr"]
        return [] if saved == self.lr else [f"train.lr (saved {saved}, now {self.lr})"]

    def train(self, run_dir: Path, variant, seed, *, resume):
        self.trained.append((variant.name, seed, resume))
        (run_dir / "last").mkdir(parents=True, exist_ok=True)
        (run_dir / "last" / "config.json").write_text(json.dumps(
            {"n_parameters": 1000, "train": {"lr": self.lr}}))
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
            {"type": "step", "step": 5, "loss": 0.9}, {"type": "step", "step": 10, "loss": 0.7},
            {"type": "eval", "step": 10, "loss": 0.6, "accuracy": 0.7})))
        best = EvalResult(loss=0.6, accuracy=0.7, f1=0.7, n=10)
        result = FitResult(history=[], best_epoch=1, best_val=best, global_step=10,
                           stopped_early=False, wall_time=2.0, best_step=10)
        (run_dir / "result.json").write_text(json.dumps(result.to_dict()))

    def measure(self, run_dir, variant, seed, result, *, fresh):
        score = self.scores[variant.name][seed]
        return {"acc": score, "loss": 1 - score / 100}

    def findings(self, runs, differences):
        return ["A finding of the task."]


def test_paired_differences_are_the_mean_and_sample_std_of_per_seed_differences(tmp_path):
    task = FakeTask({"base": [70.0, 72.0, 71.0], "multi": [71.5, 73.0, 73.5]})
    report = run_variants(task, tmp_path, [0, 1, 2], log=lambda line: None)
    per_seed = [1.5, 1.0, 2.5]  # multi minus base, seed by seed
    mean = sum(per_seed) / 3  # 1.6667
    std = math.sqrt(sum((d - mean) ** 2 for d in per_seed) / 2)  # 0.7638, n - 1 in the divisor
    summary = json.loads((tmp_path / "summary.json").read_text())
    acc = next(d for d in summary["paired_differences"] if d["metric"] == "acc")
    assert acc["per_seed"] == pytest.approx({"0": 1.5, "1": 1.0, "2": 2.5})
    assert (acc["mean"], acc["std"], acc["ahead_in"]) == pytest.approx((mean, std, 3))
    loss = next(d for d in summary["paired_differences"] if d["metric"] == "loss")
    assert loss["mean"] == pytest.approx(-mean / 100) and loss["ahead_in"] == 3  # lower: ahead
    text = (tmp_path / "report.md").read_text()
    assert "multi minus base, paired over 3 seed(s) (mean ± std): accuracy +1.67 ± 0.76 " \
           "points (larger than its spread); loss -0.0167 ± 0.0076 (larger than its spread); " \
           "ahead on accuracy in 3 of 3 seeds." in text
    assert report.findings[-1] == report.verdict == (
        "VERDICT (accuracy, higher is better): multi arms are ahead of base arms: "
        "+1.67 ± 0.76 points, ahead in 3 of 3 seeds.")
    assert report.verdict in text and "Rule of the verdict" in text
    assert "A finding of the task." in report.findings
    # The table: mean ± std over seeds per variant, the task's columns after the name.
    assert f"| base | base | 1,000 | {statistics.fmean([70, 72, 71]):.2f} ± 1.00 |" in report.table
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["seed"] for r in summary["variants"][1]["runs"]] == [0, 1, 2]


def _difference(per_seed: list[float], higher_is_better: bool = True) -> PairedDifference:
    return PairedDifference("multi", "base", "acc", dict(enumerate(per_seed)), higher_is_better)


@pytest.mark.parametrize("per_seed, higher, says", [
    ([1.0, 2.0, 1.5], True, "multi arms are ahead of base arms: +1.50 ± 0.50 points, ahead in "
                            "3 of 3 seeds"),
    ([-1.0, -2.0, -1.5], True, "multi arms are behind base arms: -1.50 ± 0.50 points, ahead in "
                               "0 of 3 seeds"),
    ([-1.0, -2.0, -1.5], False, "multi arms are ahead of base arms: -1.50 ± 0.50 points, ahead "
                                "in 3 of 3 seeds"),  # a loss: lower is better
    ([1.0, -0.8, 0.1], True, "multi arms vs base arms: no clear difference: +0.10 ± 0.90 points, "
                             "ahead in 2 of 3 seeds"),
    ([1.5], True, "multi arms vs base arms: +1.50 points from one seed; the spread over seeds "
                  "is not known, so no verdict"),
])
def test_the_verdict_follows_the_rule(per_seed, higher, says):
    variants = [Variant("base", {}, "base arms"), Variant("multi", {}, "multi arms")]
    metric = Metric("acc", "accuracy", 2, unit="points", higher_is_better=higher, compared=True)
    line = verdict_line(variants, [_difference(per_seed, higher)], metric)
    assert line.startswith("VERDICT (accuracy, ") and says in line, line


def test_standing_by_the_rule():
    assert _difference([1.0, 3.0]).standing == "ahead"  # mean 2 > std 1.41
    assert _difference([-1.0, 3.0]).standing == "unclear"  # mean 1 < std 2.83
    assert _difference([0.0, 0.0]).standing == "unclear"
    assert _difference([-1.0, -3.0]).standing == "behind"
    assert _difference([2.0]).standing == "unknown" and math.isnan(_difference([2.0]).std)


def test_a_single_seed_states_no_spread(tmp_path):
    report = run_variants(FakeTask({"base": [70.0], "multi": [72.0]}), tmp_path, [0],
                          log=lambda line: None)
    assert "the spread over seeds is not known" in report.verdict
    assert "(one seed: spread not known)" in report.findings[0]
    assert "| 70.00 ± n/a |" in report.table


def test_finished_runs_are_reused_and_changed_settings_retrained(tmp_path):
    scores = {"base": [70.0, 71.0], "multi": [72.0, 71.5]}
    first = FakeTask(scores)
    run_variants(first, tmp_path, [0, 1], log=lambda line: None)
    assert sorted(first.trained) == [(v, s, False) for v in ("base", "multi") for s in (0, 1)]
    assert (tmp_path / "multi" / "seed1" / "result.json").is_file()
    again, lines = FakeTask(scores), []
    report = run_variants(again, tmp_path, [0, 1], log=lines.append)
    assert again.trained == []  # nothing trained again
    assert all("(reused)" in line for line in lines) and len(lines) == 4
    assert report.runs["multi"][1].metrics["acc"] == 71.5
    changed, lines = FakeTask(scores, lr=0.5), []
    run_variants(changed, tmp_path, [0, 1], log=lines.append)
    assert sorted(changed.trained) == [(v, s, False) for v in ("base", "multi") for s in (0, 1)]
    assert "base seed 0: retraining, its saved settings differ: train.lr (saved 0.1, now 0.5)" \
        in lines


def test_an_interrupted_run_is_resumed(tmp_path):
    task = FakeTask({"base": [70.0], "multi": [72.0]})
    run_variants(task, tmp_path, [0], log=lambda line: None)
    (tmp_path / "multi" / "seed0" / "result.json").unlink()  # stopped before the end
    task.trained.clear()
    run_variants(task, tmp_path, [0], log=lambda line: None)
    assert task.trained == [("multi", 0, True)]


def test_the_main_metric_must_be_compared(tmp_path):
    task = FakeTask({"base": [70.0], "multi": [72.0]})
    task.main = "nothing"
    with pytest.raises(ValueError, match="main metric"):
        run_variants(task, tmp_path, [0])
    assert not any(tmp_path.iterdir())
