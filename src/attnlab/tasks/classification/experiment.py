"""Controlled comparisons: the same classifier trained with one thing varied, over several seeds.

``heads``: one head vs ``H`` heads at the same ``d_model`` (so the same parameter count).
``positional``: none vs sinusoidal vs learned vs rotary positions.

The runs, reuse and report are the common runner's (:mod:`attnlab.tasks.experiment`); this
module says what a classification run is: how it trains, what is measured of it (train, dev and
test figures at its best evaluation) and the target its report checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnlab.errors import UsageError
from attnlab.models.classifier import POSITIONAL, ClassifierConfig
from attnlab.tasks.classification.config import DataConfig
from attnlab.tasks.classification.metrics import EvalResult
from attnlab.tasks.classification.pipeline import differences_from_saved, train_classifier
from attnlab.tasks.classification.report import TARGET_ACCURACY, TARGET_LOSS, target_lines
from attnlab.tasks.classification.use import evaluate_run
from attnlab.tasks.experiment import ExperimentReport, run_variants, shared_settings
from attnlab.tasks.report import Metric, RunRecord, Variant
from attnlab.tasks.runs import RunControl
from attnlab.tasks.seeds import PairedDifference
from attnlab.train import FitResult
from attnlab.train.config import TrainConfig

__all__ = ["EXPERIMENTS", "ClassifierExperiment", "ExperimentReport", "experiment_variants",
           "run_experiment"]

EXPERIMENTS = ("heads", "positional")
WHAT = {"heads": "one attention head vs several at the same d_model",
        "positional": "positional information: none, sinusoidal, learned, rotary"}
METRICS = [  # the figures of a run, in table order
    Metric("train_loss", "train loss", 4, higher_is_better=False),
    Metric("train_accuracy", "train accuracy", 2, scale=100),
    Metric("val_loss", "val loss", 4, higher_is_better=False, compared=True),
    Metric("val_accuracy", "val accuracy", 2, scale=100, unit="points", compared=True),
    Metric("val_f1", "val F1", 3),
    Metric("test_loss", "test loss", 4, higher_is_better=False),
    Metric("test_accuracy", "test accuracy", 2, scale=100),
]


def experiment_variants(kind: str, model_options: dict[str, Any]) -> list[Variant]:
    """The arms of experiment ``kind`` around ``model_options`` (the rest held fixed)."""
    heads, positional = (model_options.get(name, ClassifierConfig.__dataclass_fields__[name]
                                           .default) for name in ("n_heads", "positional"))
    if kind == "heads":
        if heads == 1:
            raise UsageError("the heads experiment compares 1 head with n_heads > 1; got n_heads=1")
        return [Variant(f"heads-{h}", {"n_heads": h}, f"{h} head{'s' * (h > 1)}",
                        {"heads": str(h), "positions": positional}) for h in (1, heads)]
    if kind == "positional":
        return [Variant(f"positional-{p}", {"positional": p},
                        "no positions" if p == "none" else f"{p} positions",
                        {"heads": str(heads), "positions": p}) for p in POSITIONAL]
    raise UsageError(f"experiment must be one of {EXPERIMENTS}, got {kind!r}")


@dataclass
class ClassifierExperiment:
    """A classification experiment as the runner sees it (an
    :class:`~attnlab.tasks.experiment.ExperimentTask`)."""

    kind: str  # one of EXPERIMENTS
    data: DataConfig  # shared by every run
    base: dict[str, Any]  # model options shared by every run (a variant adds its own)
    training: TrainConfig  # shared by every run; the seed is set per run
    progress: bool = True  # show each run's progress
    variants: list[Variant] = field(init=False)
    metrics = METRICS
    main = "val_accuracy"
    dev_curve = Metric("accuracy", "dev accuracy", 2, scale=100)
    dev_metrics = EvalResult

    def __post_init__(self) -> None:
        self.variants = experiment_variants(self.kind, self.base)
        self.title = self.kind
        self.about = [
            f"Compared: {WHAT[self.kind]}. The dev split is evaluated every "
            f"{self.training.eval_steps or 'no'} steps and at each epoch's end"
            f"{_ema_words(self.training)}. Test columns: the same weights (`best/`) on the test "
            f"split, never used for training or selection."]
        self.settings = {**shared_settings(self.data, self.base, self.training), "target": {
            "val_loss_below": TARGET_LOSS, "val_accuracy_above": TARGET_ACCURACY}}

    def _options(self, variant: Variant) -> dict[str, Any]:
        return {**self.base, **variant.options}

    def differences(self, run_dir: Path, variant: Variant, seed: int) -> list[str]:
        return differences_from_saved(run_dir, self.data, self._options(variant),
                                      self.training.replace(seed=seed))

    def train(self, run_dir: Path, variant: Variant, seed: int, *, resume: bool) -> None:
        train_classifier(run_dir, self.data, self._options(variant),
                         self.training.replace(seed=seed), RunControl(resume, self.progress))

    def measure(self, run_dir: Path, variant: Variant, seed: int, result: FitResult, *,
                fresh: bool) -> dict[str, Any]:
        """Training figures of the best epoch, dev figures of the best evaluation (perhaps
        mid-epoch), test figures of ``best/`` (None without a test split)."""
        best = next(r for r in result.history if r.epoch == result.best_epoch)
        val = result.best_val
        figures = {"train_loss": best.train_loss, "train_accuracy": best.train_stats["accuracy"],
                   "val_loss": val.loss, "val_accuracy": val.accuracy, "val_f1": val.f1,
                   "test_loss": None, "test_accuracy": None}
        try:
            test = evaluate_run(run_dir, self.data.source, "test")
        except FileNotFoundError:  # the data set has no test split
            return figures
        return {**figures, "test_loss": test.loss, "test_accuracy": test.accuracy}

    def findings(self, runs: dict[str, list[RunRecord]],
                 differences: list[PairedDifference]) -> list[str]:
        return target_lines(runs)


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

    Raises:
        UsageError: a bad ``kind`` or ``seeds``, ``n_heads=1`` for ``heads``, or model options
            that the variants set themselves.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"seeds must be an integer >= 1, got {seeds!r}")
    train = train or TrainConfig()
    task = ClassifierExperiment(kind, data or DataConfig(), dict(model_options or {}), train,
                                progress)
    clash = sorted(set(task.base) & {k for v in task.variants for k in v.options})
    if clash and kind != "heads":
        raise UsageError(f"the {kind} experiment sets {clash} itself; do not give them")
    return run_variants(task, out_dir, [train.seed + k for k in range(seeds)], log=log)


def _ema_words(train: TrainConfig) -> str:
    if train.ema_decay is None:
        return ""
    return (f"; the weights evaluated and kept are an exponential moving average of the "
            f"trained ones, decay {train.ema_decay}")
