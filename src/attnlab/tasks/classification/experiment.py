"""Controlled comparisons: the same classifier trained with one thing varied, over several seeds.

``heads``: one head vs ``H`` heads at the same ``d_model`` (so the same parameter count).
``positional``: none vs sinusoidal vs learned vs rotary positions.

Each (variant, seed) trains into ``out/<variant>/seed<k>/`` (finished runs are reused, interrupted
ones resumed); the results go to ``report.md`` (table, target, differences), ``summary.json`` and
``curves.png`` (training and validation curves).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlab.io.atomic import write_text_atomic
from attnlab.models.classifier import POSITIONAL, ClassifierConfig
from attnlab.tasks.classification.config import DataConfig
from attnlab.tasks.classification.metrics import EvalResult
from attnlab.tasks.classification.pipeline import differences_from_saved, train_classifier
from attnlab.tasks.classification.report import (
    CURVE_FIELDS,
    TARGET_ACCURACY,
    TARGET_LOSS,
    RunSummary,
    Variant,
    findings_of,
    markdown_table,
    write_report,
)
from attnlab.tasks.classification.use import evaluate_run
from attnlab.train import FitResult, MetricsLog
from attnlab.train.config import TrainConfig

__all__ = ["EXPERIMENTS", "ExperimentReport", "experiment_variants", "run_experiment"]

EXPERIMENTS = ("heads", "positional")


@dataclass
class ExperimentReport:
    """Everything the report shows, per variant in order (the first is the baseline)."""

    kind: str
    variants: list[Variant]
    runs: dict[str, list[RunSummary]]  # variant name -> one summary per seed
    report_path: Path
    table: str  # the markdown table (also printed)
    findings: list[str]  # the plain-language lines: target and differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": {"val_loss_below": TARGET_LOSS, "val_accuracy_above": TARGET_ACCURACY},
            "variants": [
                {"name": v.name, "options": v.options,
                 "runs": [{k: val for k, val in r.__dict__.items() if k not in CURVE_FIELDS}
                          for r in self.runs[v.name]]}
                for v in self.variants
            ],
            "findings": self.findings,
        }


def experiment_variants(kind: str, model_options: dict[str, Any]) -> list[Variant]:
    """The arms of experiment ``kind`` around ``model_options`` (the rest held fixed)."""
    if kind == "heads":
        default = ClassifierConfig.__dataclass_fields__["n_heads"].default
        heads = model_options.get("n_heads", default)
        if heads == 1:
            raise ValueError("the heads experiment compares 1 head with n_heads > 1; got n_heads=1")
        return [Variant("heads-1", {"n_heads": 1}), Variant(f"heads-{heads}", {"n_heads": heads})]
    if kind == "positional":
        return [Variant(f"positional-{p}", {"positional": p}) for p in POSITIONAL]
    raise ValueError(f"experiment must be one of {EXPERIMENTS}, got {kind!r}")


def run_experiment(
    kind: str,
    out_dir: str | os.PathLike,
    *,
    data: DataConfig | None = None,
    model_options: dict[str, Any] | None = None,
    train: TrainConfig | None = None,
    seeds: int = 3,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ExperimentReport:
    """Train every variant of ``kind`` with seeds ``train.seed + 0 .. seeds - 1``; write report.md,
    summary.json and curves.png into ``out_dir``.

    Args:
        kind: ``"heads"`` or ``"positional"``.
        out_dir: experiment folder.
        data, model_options, train: the settings shared by all arms (see
            :func:`~attnlab.tasks.classification.pipeline.train_classifier`).
        seeds: runs per variant (>= 2 to state a spread).
        progress: show each run's progress.
        log: where one line per finished run goes.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    data, train = data or DataConfig(), train or TrainConfig()
    base = dict(model_options or {})
    variants = experiment_variants(kind, base)
    clash = sorted(set(base) & {k for v in variants for k in v.options})
    if clash and kind != "heads":
        raise ValueError(f"the {kind} experiment sets {clash} itself; do not give them")
    out_dir = Path(out_dir)
    runs: dict[str, list[RunSummary]] = {}
    for variant in variants:
        runs[variant.name] = []
        for k in range(seeds):
            options = {**base, **variant.options}
            config = train.replace(seed=train.seed + k)
            summary = _train_or_reuse(out_dir / variant.name / f"seed{k}", data, options, config,
                                      variant.name, progress)
            runs[variant.name].append(summary)
            log(f"{variant.name} seed {config.seed}: val loss {summary.val_loss:.4f} "
                f"acc {summary.val_accuracy:.4f} (best epoch {summary.best_epoch}, "
                f"{summary.wall_time:.0f}s)")
    table = markdown_table(variants, runs)
    findings = findings_of(kind, variants, runs)
    report_path = write_report(out_dir, kind, variants, runs, table, findings, data, base, train)
    report = ExperimentReport(kind, variants, runs, report_path, table, findings)
    write_text_atomic(out_dir / "summary.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _train_or_reuse(run_dir: Path, data: DataConfig, options: dict[str, Any],
                    train: TrainConfig, name: str, progress: bool) -> RunSummary:
    same = False
    if (run_dir / "last").exists():
        try:
            same = not differences_from_saved(run_dir, data, options, train)
        except (FileNotFoundError, ValueError):
            same = False
    if same and (run_dir / "result.json").exists():
        result = FitResult.from_dict(json.loads((run_dir / "result.json").read_text()),
                                     EvalResult)
        n_params = json.loads((run_dir / "last" / "config.json").read_text())["n_parameters"]
    else:
        run = train_classifier(run_dir, data, options, train, resume=same, progress=progress)
        result, n_params = run.result, run.n_parameters
    summary = summarize_run(name, train.seed, n_params, result, run_dir / "metrics.jsonl")
    try:
        test = evaluate_run(run_dir, data.source, "test")
    except FileNotFoundError:  # the data set has no test split
        return summary
    return dataclasses.replace(summary, test_loss=test.loss, test_accuracy=test.accuracy)


def summarize_run(name: str, seed: int, n_parameters: int, result: FitResult,
                  metrics_path: Path | None = None) -> RunSummary:
    """A :class:`RunSummary` of a finished fit (read at its best evaluation)."""
    if result.best_epoch is None:
        raise ValueError(f"{name} seed {seed}: the run was never evaluated")
    best = next(r for r in result.history if r.epoch == result.best_epoch)  # train figures
    val = result.best_val  # the best evaluation, perhaps mid-epoch (eval_steps)
    steps, evals = [], []
    if metrics_path is not None and metrics_path.exists():
        records = MetricsLog.read(metrics_path)
        steps = [(r["step"], r["loss"]) for r in records if r["type"] == "step"]
        evals = [(r["step"], r["loss"], r["accuracy"]) for r in records if r["type"] == "eval"]
    return RunSummary(
        variant=name, seed=seed, n_parameters=n_parameters, best_epoch=best.epoch,
        best_step=result.best_step,
        train_loss=best.train_loss, train_accuracy=best.train_stats["accuracy"],
        val_loss=val.loss, val_accuracy=val.accuracy, val_f1=val.f1,
        wall_time=result.wall_time, epochs=[r.to_dict() for r in result.history], steps=steps,
        evals=evals,
    )


