"""The report of an experiment: the arms and their runs, the table over seeds, the findings
in plain words, the curves, and ``report.md``.

Legend of the table: mean ± sample standard deviation over seeds.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnlab.io.atomic import write_text_atomic
from attnlab.models.classifier import ClassifierConfig
from attnlab.tasks.classification.config import DataConfig
from attnlab.tasks.seeds import mean_by_step, mean_std
from attnlab.train.config import TrainConfig

__all__ = [
    "CURVE_FIELDS",
    "TARGET_ACCURACY",
    "TARGET_LOSS",
    "RunSummary",
    "Variant",
    "findings_of",
    "markdown_table",
    "plot_curves",
    "write_report",
]

TARGET_LOSS = 0.40  # the target: dev loss below this ...
TARGET_ACCURACY = 0.78  # ... and dev accuracy above this
CURVE_FIELDS = ("epochs", "steps", "evals")  # RunSummary fields left out of summary.json


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: a name and the model options that make it."""

    name: str  # folder and table name, e.g. "heads-4"
    options: dict[str, Any]  # ClassifierConfig fields that differ between arms


@dataclass
class RunSummary:
    """One trained (variant, seed), read at its best evaluation (lowest dev loss).

    The test figures are those of the same weights (``best/``) on the test split, when the data
    set has one; they play no part in training or selection."""

    variant: str
    seed: int
    n_parameters: int
    best_epoch: int
    best_step: int | None
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_f1: float
    wall_time: float  # seconds of training (all epochs, evaluation included)
    epochs: list[dict[str, Any]] = field(repr=False)  # EpochRecord dicts
    steps: list[tuple[int, float]] = field(repr=False)  # (step, training loss) from the log
    evals: list[tuple[int, float, float]] = field(  # (step, val loss, val accuracy), the log
        default_factory=list, repr=False)
    test_loss: float | None = None
    test_accuracy: float | None = None

    @property
    def meets_target(self) -> bool:
        return self.val_loss < TARGET_LOSS and self.val_accuracy > TARGET_ACCURACY


def _pm(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    mean, std = mean_std([v * scale for v in values])
    spread = "n/a" if math.isnan(std) else f"{std:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread}"


def _pm_or_na(values: list[float | None], scale: float = 1.0, digits: int = 3) -> str:
    return "n/a" if None in values else _pm(values, scale, digits)


def markdown_table(variants: list[Variant], runs: dict[str, list[RunSummary]]) -> str:
    """The per-variant table, mean ± std over seeds."""
    head = ("| variant | heads | positions | parameters | train loss | train acc % | val loss "
            "| val acc % | val F1 | best epoch (step) | test loss | test acc % | wall time (s) "
            "| target |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for v in variants:
        rs = runs[v.name]
        cfg = {**{f.name: f.default for f in ClassifierConfig.__dataclass_fields__.values()},
               **v.options}
        met = sum(r.meets_target for r in rs)
        mean_loss = statistics.fmean(r.val_loss for r in rs)
        mean_acc = statistics.fmean(r.val_accuracy for r in rs)
        target = "met" if mean_loss < TARGET_LOSS and mean_acc > TARGET_ACCURACY else "not met"
        lines.append(
            f"| {v.name} | {cfg['n_heads']} | {cfg['positional']} | {rs[0].n_parameters:,} "
            f"| {_pm([r.train_loss for r in rs])} | {_pm([r.train_accuracy for r in rs], 100, 1)} "
            f"| {_pm([r.val_loss for r in rs])} | {_pm([r.val_accuracy for r in rs], 100, 1)} "
            f"| {_pm([r.val_f1 for r in rs])} "
            f"| {', '.join(f'{r.best_epoch} ({r.best_step})' for r in rs)} "
            f"| {_pm_or_na([r.test_loss for r in rs])} "
            f"| {_pm_or_na([r.test_accuracy for r in rs], 100, 1)} "
            f"| {_pm([r.wall_time for r in rs], digits=0)} | {target} ({met}/{len(rs)} seeds) |"
        )
    return "\n".join(lines)


def findings_of(kind: str, variants: list[Variant], runs: dict[str, list[RunSummary]]
                ) -> list[str]:
    """The plain-language lines: each arm against the target, each arm against the first."""
    lines = []
    for v in variants:
        rs = runs[v.name]
        loss, acc = mean_std([r.val_loss for r in rs])[0], mean_std([r.val_accuracy for r in rs])[0]
        ok = loss < TARGET_LOSS and acc > TARGET_ACCURACY
        lines.append(
            f"Target (val loss < {TARGET_LOSS:.2f} and val acc > {TARGET_ACCURACY:.0%}) for "
            f"{v.name}: {'MET' if ok else 'NOT MET'} on the mean (val loss {loss:.4f}, val acc "
            f"{acc:.2%}); {sum(r.meets_target for r in rs)} of {len(rs)} seeds meet it."
        )
    baseline = variants[0]
    base_runs = {r.seed: r for r in runs[baseline.name]}
    for v in variants[1:]:
        pairs = [(r, base_runs[r.seed]) for r in runs[v.name] if r.seed in base_runs]
        d_acc = [100 * (r.val_accuracy - b.val_accuracy) for r, b in pairs]
        d_loss = [r.val_loss - b.val_loss for r, b in pairs]
        (ma, sa), (ml, sl) = mean_std(d_acc), mean_std(d_loss)
        wins = sum(d > 0 for d in d_acc)
        if ma > 0 and ml < 0:
            verb = "beats"
        elif ma <= 0 and ml >= 0:
            verb = "does not beat"
        else:  # better on one measure, worse on the other
            verb = "is mixed against"
        spread = ("a single seed gives no spread" if math.isnan(sa) else
                  f"the accuracy difference is {_versus(ma, sa)} than its spread over seeds, "
                  f"the loss difference {_versus(ml, sl)}")
        lines.append(
            f"{v.name} {verb} {baseline.name}: val accuracy {ma:+.2f} ± "
            f"{'n/a' if math.isnan(sa) else f'{sa:.2f}'} points, val loss {ml:+.4f} ± "
            f"{'n/a' if math.isnan(sl) else f'{sl:.4f}'} (mean ± std of the paired difference "
            f"over {len(pairs)} seeds; higher accuracy in {wins} of {len(pairs)}); {spread}."
        )
    return lines


def _versus(mean: float, std: float) -> str:
    return "larger" if abs(mean) > std else "no larger"


def write_report(out_dir: Path, kind: str, variants: list[Variant],
                   runs: dict[str, list[RunSummary]], table: str, findings: list[str],
                   data: DataConfig, base: dict[str, Any], train: TrainConfig) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(variants, runs, out_dir / "curves.png")
    n_seeds = max(len(rs) for rs in runs.values())
    what = {"heads": "one attention head vs several at the same d_model",
            "positional": "positional information: none, sinusoidal, learned, rotary"}[kind]
    text = [
        f"# Experiment: {kind}",
        "",
        f"Compared: {what}. Everything else is the same; each variant is trained with "
        f"{n_seeds} seed(s) (seeds {train.seed}..{train.seed + n_seeds - 1}); numbers are "
        f"mean ± sample std over seeds, read at each run's best evaluation (lowest dev loss; "
        f"the dev split is evaluated every {train.eval_steps or 'no'} steps and at each "
        f"epoch's end{_ema_words(train)}). Test columns: the same weights on the test split, "
        f"never used for training or selection.",
        "",
        f"- data: `{json.dumps(data.to_dict())}`",
        f"- model options: `{json.dumps(base)}` (variants set "
        f"`{sorted({k for v in variants for k in v.options})}`)",
        f"- training: `{json.dumps({k: v for k, v in train.to_dict().items() if k != 'seed'})}`",
        "",
        table,
        "",
        "## Findings",
        "",
        *[f"- {line}" for line in findings],
        "",
        "## Curves",
        "",
        "![training and validation curves](curves.png)",
        "",
        "Against optimizer steps, mean over seeds. Left: training loss (dashed; the "
        "label-smoothed loss that is minimised, when label_smoothing > 0) and dev loss at each "
        "evaluation (solid, plain cross-entropy); right: running training accuracy at each "
        "epoch's end (dashed, open markers) and dev accuracy at each evaluation (solid). "
        "Dotted: the target.",
        "",
    ]
    return write_text_atomic(out_dir / "report.md", "\n".join(text))


def _ema_words(train: TrainConfig) -> str:
    if train.ema_decay is None:
        return ""
    return (f"; the weights evaluated and kept are an exponential moving average of the "
            f"trained ones, decay {train.ema_decay}")


def plot_curves(variants: list[Variant], runs: dict[str, list[RunSummary]], path: Path) -> None:
    """Loss and accuracy against optimizer steps, mean over seeds: training loss per logged
    window and each epoch's running training accuracy (dashed, open markers), every dev
    evaluation (solid, filled; mid-epoch ones too with ``eval_steps``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, v in enumerate(variants):
        color = colors[i % len(colors)]
        rs = runs[v.name]
        train_loss = mean_by_step([(step, loss) for r in rs for step, loss in r.steps])
        if train_loss[0]:
            loss_ax.plot(*train_loss, "--", color=color, lw=1, label=f"{v.name} train")
        train_acc = mean_by_step([(e["step"], 100 * e["train_accuracy"])
                                   for r in rs for e in r.epochs])
        if train_acc[0]:
            acc_ax.plot(*train_acc, "--", color=color, marker="o",
                        markerfacecolor="white", label=f"{v.name} train")
        evals = [e for r in rs for e in r.evals]
        for ax, column, scale in ((loss_ax, 1, 1.0), (acc_ax, 2, 100.0)):
            points = mean_by_step([(e[0], scale * e[column]) for e in evals])
            if points[0]:
                ax.plot(*points, "-", color=color, marker="o", ms=4, label=f"{v.name} val")
    loss_ax.set(title="loss", xlabel="optimizer step", ylabel="cross-entropy")
    loss_ax.axhline(TARGET_LOSS, color="grey", lw=0.8, ls=":")
    acc_ax.set(title="accuracy", xlabel="optimizer step", ylabel="accuracy (%)")
    acc_ax.axhline(100 * TARGET_ACCURACY, color="grey", lw=0.8, ls=":")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
