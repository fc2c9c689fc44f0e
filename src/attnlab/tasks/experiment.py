"""One experiment runner for every task: variants × seeds, each trained into its own folder,
then one report (:mod:`attnlab.tasks.report`).

A task describes its experiment with an :class:`ExperimentTask` (its variants, how to train or
resume one run, what to measure of it, its extra findings); :func:`run_variants` never asks
which task it is. Each (variant, seed) trains into ``out/<variant>/seed<seed>/``:

- no run there, or one saved with other settings: trained afresh (the log says why);
- a run with these settings that did not finish: resumed;
- a finished run with these settings: reused (only measured).

Then ``report.md`` (table, paired differences, the task's findings, the VERDICT line),
``summary.json`` and ``curves.png`` go into ``out/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from attnlab.errors import UsageError
from attnlab.io.atomic import write_text_atomic
from attnlab.io.run_folder import claim_run_folder
from attnlab.tasks.report import (
    Metric,
    RunRecord,
    Variant,
    difference_lines,
    markdown_table,
    paired_differences,
    plot_curves,
    verdict_line,
    write_report,
)
from attnlab.tasks.seeds import PairedDifference
from attnlab.train import FitResult, MetricsLog
from attnlab.train.config import TrainConfig

__all__ = ["ExperimentReport", "ExperimentTask", "Metric", "RunRecord", "Variant",
           "run_variants", "shared_settings"]


class ExperimentTask(Protocol):
    """What a task tells the runner about its experiment."""

    title: str  # the report's heading, e.g. "heads (translation)"
    about: list[str]  # the report's opening lines: what is compared, what is measured
    settings: dict[str, Any]  # shared settings and reference figures (report and summary)
    variants: list[Variant]  # the arms; the first is the baseline of the differences
    metrics: list[Metric]  # the figures of a run, in table order
    main: str  # the key of the metric the verdict is on
    dev_curve: Metric  # the field of metrics.jsonl's eval records plotted beside the loss
    dev_metrics: type  # the class of FitResult.best_val (to read result.json back)

    def differences(self, run_dir: Path, variant: Variant, seed: int) -> list[str]:
        """How the settings saved in ``run_dir/last`` differ from this run's (empty: same)."""

    def train(self, run_dir: Path, variant: Variant, seed: int, *, resume: bool) -> None:
        """Train (``resume``: continue) the run into ``run_dir``, which the runner holds."""

    def measure(self, run_dir: Path, variant: Variant, seed: int, result: FitResult, *,
                fresh: bool) -> dict[str, Any]:
        """The run's figures by metric key (``fresh``: it was trained just now, so nothing
        measured before may be reused)."""

    def findings(self, runs: dict[str, list[RunRecord]],
                 differences: list[PairedDifference]) -> list[str]:
        """The task's own lines in the findings (targets, a paper's figures, ...)."""


@dataclass
class ExperimentReport:
    """Everything the report shows; ``findings`` ends with the VERDICT line."""

    title: str
    variants: list[Variant]  # in order; the first is the baseline
    runs: dict[str, list[RunRecord]]  # variant name -> one record per seed
    differences: list[PairedDifference]  # each variant minus the baseline, per compared metric
    table: str  # the markdown table (also printed)
    findings: list[str]  # plain-language lines, the verdict last
    report_path: Path
    settings: dict[str, Any]

    @property
    def verdict(self) -> str:
        return self.findings[-1]

    def describe(self) -> str:
        """What ``attnlab experiment`` prints: the table, the findings, where the report is."""
        return "\n".join([self.table, "", *(f"- {line}" for line in self.findings), "",
                          f"report: {self.report_path}"])

    def to_dict(self) -> dict[str, Any]:
        """summary.json: the settings, every run's figures, the differences, the findings."""
        return {
            "title": self.title, "settings": self.settings,
            "variants": [{"name": v.name, "options": v.options,
                          "runs": [r.to_dict() for r in self.runs[v.name]]}
                         for v in self.variants],
            "paired_differences": [
                {"variant": d.variant, "baseline": d.baseline, "metric": d.metric,
                 "per_seed": {str(s): x for s, x in d.per_seed.items()}, "mean": d.mean,
                 "std": None if math.isnan(d.std) else d.std, "ahead_in": d.ahead_in,
                 "standing": d.standing} for d in self.differences],
            "findings": self.findings, "verdict": self.verdict,
        }


def run_variants(task: ExperimentTask, out_dir: str | Path, seeds: Sequence[int], *,
                 log: Callable[[str], None] = print) -> ExperimentReport:
    """Train (or resume, or reuse) every variant of ``task`` with every seed in ``seeds``
    under ``out_dir``; write report.md, summary.json and curves.png there."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be one or more distinct seeds, got {list(seeds)}")
    if not any(m.key == task.main and m.compared for m in task.metrics):
        raise ValueError(f"the main metric {task.main!r} must be one of the compared metrics")
    out_dir = Path(out_dir)
    runs = {variant.name: [_train_or_reuse(task, out_dir / variant.name / f"seed{seed}",
                                           variant, seed, log) for seed in seeds]
            for variant in task.variants}
    return _report(task, out_dir, runs, {**task.settings, "seeds": list(seeds)})


def shared_settings(data: Any, model_options: dict[str, Any], train: TrainConfig
                    ) -> dict[str, Any]:
    """The settings every run shares, as the report lists them (the seed, set per run, left
    out); ``data`` is the task's data config."""
    return {"data": data.to_dict(), "model options": model_options,
            "training": {k: v for k, v in train.to_dict().items() if k != "seed"}}


def _train_or_reuse(task: ExperimentTask, run_dir: Path, variant: Variant, seed: int,
                    log: Callable[[str], None]) -> RunRecord:
    """Train afresh, resume or reuse the run in ``run_dir`` (module docstring); its record."""
    state = "new"
    if (run_dir / "last").exists():
        try:
            differ = task.differences(run_dir, variant, seed)
        except (OSError, ValueError, KeyError, TypeError) as error:  # unreadable, or too old
            differ = [f"cannot read them ({error})"]
        if differ:
            log(f"{variant.name} seed {seed}: retraining, its saved settings differ: "
                + ", ".join(differ[:3]) + (", ..." if len(differ) > 3 else ""))
        else:
            state = "finished" if (run_dir / "result.json").exists() else "interrupted"
    if state != "finished":
        with claim_run_folder(run_dir, resume=state == "interrupted", overwrite=True):
            task.train(run_dir, variant, seed, resume=state == "interrupted")
    result = FitResult.from_dict(json.loads((run_dir / "result.json").read_text()),
                                 task.dev_metrics)
    if result.best_val is None:
        raise UsageError(f"{variant.name} seed {seed}: the run was never evaluated; give "
                         f"settings that evaluate the dev split at least once")
    metrics = task.measure(run_dir, variant, seed, result, fresh=state != "finished")
    record = _record(run_dir, variant.name, seed, result, metrics, task.dev_curve.key)
    reused = " (reused)" if state == "finished" else ""
    log(f"{variant.name} seed {seed}{reused}: {_figures(task.metrics, record)}")
    return record


def _record(run_dir: Path, name: str, seed: int, result: FitResult, metrics: dict[str, Any],
            curve_key: str) -> RunRecord:
    """A run's figures, with its training loss and dev curves from ``metrics.jsonl``."""
    config = json.loads((run_dir / "last" / "config.json").read_text())
    log_path = run_dir / "metrics.jsonl"
    records = MetricsLog.read(log_path) if log_path.exists() else []
    return RunRecord(
        variant=name, seed=seed, n_parameters=config["n_parameters"],
        steps=result.global_step, best_step=result.best_step, best_epoch=result.best_epoch,
        wall_time=result.wall_time, out_of_time=result.out_of_time, metrics=metrics,
        train_curve=[(r["step"], r["loss"]) for r in records if r["type"] == "step"],
        evals=[(r["step"], r["loss"], r.get(curve_key)) for r in records if r["type"] == "eval"],
    )


def _figures(metrics: list[Metric], record: RunRecord) -> str:
    """The log line of a finished run: its figures, steps and time."""
    shown = [f"{m.label} {m.show(record.metrics[m.key])}" for m in metrics
             if record.metrics.get(m.key) is not None]
    return (", ".join(shown) + f" (best step {record.best_step} of {record.steps}, "
            f"{record.wall_time:.0f}s)")


def _report(task: ExperimentTask, out_dir: Path, runs: dict[str, list[RunRecord]],
            settings: dict[str, Any]) -> ExperimentReport:
    """Differences, table, findings and verdict of ``runs``; report.md, curves.png and
    summary.json in ``out_dir``."""
    differences = paired_differences(task.variants, task.metrics, runs)
    main = next(m for m in task.metrics if m.key == task.main)
    table = markdown_table(task.variants, task.metrics, runs)
    findings = [*difference_lines(differences, task.metrics, task.main),
                *task.findings(runs, differences),
                verdict_line(task.variants, differences, main)]
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(task.variants, runs, task.dev_curve, out_dir / "curves.png")
    path = write_report(out_dir, task.title, task.about, settings, table, findings,
                        task.dev_curve.label)
    report = ExperimentReport(task.title, task.variants, runs, differences, table, findings,
                              path, settings)
    write_text_atomic(out_dir / "summary.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return report
