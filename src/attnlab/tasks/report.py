"""The one report form of an experiment, whatever the task: the table over seeds, the paired
differences from the baseline, the verdict, ``curves.png`` and ``report.md``.

Legend of the table: mean ± sample standard deviation over seeds; ``n/a`` where a run has no
value (no test split) or, for the spread, where there is one seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnlab.io.atomic import write_text_atomic
from attnlab.tasks.seeds import PairedDifference, mean_by_step, mean_std

__all__ = ["VERDICT_RULE", "Metric", "RunRecord", "Variant", "difference_lines",
           "markdown_table", "paired_differences", "plot_curves", "verdict_line", "write_report"]

VERDICT_RULE = (
    "Rule of the verdict: a variant is ahead of the baseline (or behind it) when the mean of its "
    "paired differences (same seed, variant minus baseline) is larger in size than their sample "
    "standard deviation over seeds; otherwise there is no clear difference. With a few seeds this "
    "is a rough screen, not a significance test; with one seed the spread is not known: the "
    "difference is given, no verdict.")


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: a name and the model options that make it."""

    name: str  # folder and table name, e.g. "heads-4"
    options: dict[str, Any]  # the model options this arm sets (the rest are shared)
    words: str = ""  # the arm in the verdict, a plural noun phrase: "4 heads" (default: name)
    columns: dict[str, str] = field(default_factory=dict)  # table cells after the name

    @property
    def called(self) -> str:
        return self.words or self.name


@dataclass(frozen=True)
class Metric:
    """A figure of each run, and how the table, the differences and the verdict show it."""

    key: str  # its name in the run's metrics, e.g. "val_accuracy"
    label: str  # its words in the table and the findings, e.g. "val accuracy"
    digits: int = 3  # decimals shown
    scale: float = 1.0  # shown times this (100: a fraction in percent)
    unit: str = ""  # after a difference, e.g. "points"
    higher_is_better: bool = True
    compared: bool = False  # its paired differences from the baseline are reported

    @property
    def heading(self) -> str:
        return self.label + (" %" if self.scale == 100 else "")

    def show(self, value: float, sign: str = "") -> str:
        return f"{value * self.scale:{sign}.{self.digits}f}"


@dataclass
class RunRecord:
    """One trained (variant, seed), read at its best evaluation (lowest dev loss)."""

    variant: str
    seed: int
    n_parameters: int
    steps: int  # optimizer steps done (a time limit may end runs at different steps)
    best_step: int | None  # steps done at the best evaluation
    best_epoch: int | None
    wall_time: float  # seconds of training, evaluations included
    out_of_time: bool  # training ended at the time limit
    metrics: dict[str, Any]  # the task's figures, by key (None where not measured)
    train_curve: list[tuple[int, float]] = field(default_factory=list, repr=False)  # step, loss
    evals: list[tuple[int, float, float | None]] = field(  # (step, dev loss, dev curve value)
        default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The figures, curves left out (summary.json)."""
        fixed = {k: v for k, v in self.__dict__.items()
                 if k not in ("metrics", "train_curve", "evals")}
        return {**fixed, **self.metrics}


def _pm(values: list[Any], metric: Metric) -> str:
    if not values or None in values:
        return "n/a"
    mean, std = mean_std(values)
    return f"{metric.show(mean)} ± {'n/a' if math.isnan(std) else metric.show(std)}"


def markdown_table(variants: list[Variant], metrics: list[Metric],
                   runs: dict[str, list[RunRecord]]) -> str:
    """One row per variant, mean ± std over seeds."""
    extra = list(variants[0].columns)
    head = ["variant", *extra, "parameters", *(m.heading for m in metrics),
            "best step / steps", "wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seconds = Metric("wall_time", "wall time", digits=0)
    for v in variants:
        rs = runs[v.name]
        cells = [v.name, *(v.columns.get(c, "") for c in extra), f"{rs[0].n_parameters:,}",
                 *(_pm([r.metrics.get(m.key) for r in rs], m) for m in metrics),
                 ", ".join(f"{r.best_step}/{r.steps}" for r in rs),
                 _pm([r.wall_time for r in rs], seconds)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(variants: list[Variant], metrics: list[Metric],
                       runs: dict[str, list[RunRecord]]) -> list[PairedDifference]:
    """Each variant after the first minus the first, on each compared metric, over the seeds
    both have a value for."""
    baseline = variants[0].name
    base = {r.seed: r.metrics for r in runs[baseline]}
    found = []
    for v in variants[1:]:
        for m in (m for m in metrics if m.compared):
            per_seed = {r.seed: r.metrics[m.key] - base[r.seed][m.key] for r in runs[v.name]
                        if r.seed in base and None not in (r.metrics[m.key], base[r.seed][m.key])}
            if per_seed:
                found.append(PairedDifference(v.name, baseline, m.key, per_seed,
                                              m.higher_is_better))
    return found


def _difference(d: PairedDifference, m: Metric) -> str:
    """``+1.50 ± 0.70 points`` (scaled like the metric; no spread for one seed)."""
    spread = "" if math.isnan(d.std) else f" ± {m.show(d.std)}"
    return m.show(d.mean, "+") + spread + (f" {m.unit}" if m.unit else "")


def difference_lines(differences: list[PairedDifference], metrics: list[Metric],
                     main: str) -> list[str]:
    """One line per variant: its paired differences from the baseline, each weighed by its
    spread, and in how many seeds it is ahead on the main metric."""
    by_key = {m.key: m for m in metrics}
    lines = []
    for name in dict.fromkeys(d.variant for d in differences):
        mine = [d for d in differences if d.variant == name]
        parts = [f"{by_key[d.metric].label} {_difference(d, by_key[d.metric])} ("
                 + ("one seed: spread not known" if math.isnan(d.std) else
                    f"{'larger' if d.larger_than_spread else 'no larger'} than its spread") + ")"
                 for d in mine]
        lead = next((d for d in mine if d.metric == main), mine[0])  # main, when measured
        n = len(lead.per_seed)
        lines.append(f"{name} minus {lead.baseline}, paired over {n} seed(s) (mean ± std): "
                     f"{'; '.join(parts)}; ahead on {by_key[lead.metric].label} in "
                     f"{lead.ahead_in} of {n} seeds.")
    return lines


def verdict_line(variants: list[Variant], differences: list[PairedDifference],
                 main: Metric) -> str:
    """``VERDICT (...): 4 heads are ahead of 1 head: +1.5 ± 1.0 points, ahead in 3 of 3 seeds``,
    one clause per variant after the baseline, by :data:`VERDICT_RULE`."""
    called = {v.name: v.called for v in variants}
    clauses = []
    for d in (d for d in differences if d.metric == main.key):
        who, base = called[d.variant], called[d.baseline]
        figures = f"{_difference(d, main)}, ahead in {d.ahead_in} of {len(d.per_seed)} seeds"
        if d.standing == "unknown":
            clauses.append(f"{who} vs {base}: {_difference(d, main)} from one seed; the spread "
                           f"over seeds is not known, so no verdict")
        elif d.standing == "unclear":
            clauses.append(f"{who} vs {base}: no clear difference: {figures}")
        else:
            relation = "ahead of" if d.standing == "ahead" else "behind"
            clauses.append(f"{who} are {relation} {base}: {figures}")
    better = "higher" if main.higher_is_better else "lower"
    return (f"VERDICT ({main.label}, {better} is better): "
            + ("; ".join(clauses) or "no seed with values of both to compare") + ".")


def write_report(out_dir: Path, title: str, about: list[str], settings: dict[str, Any],
                 table: str, findings: list[str], curve_label: str) -> Path:
    """``report.md``: what is compared, the settings, the table, the findings (the verdict
    last), the rule of the verdict and the curves (``curves.png`` beside it)."""
    text = [f"# Experiment: {title}", "", *about, "",
            "Everything else is the same. Numbers are mean ± sample std over seeds, each run "
            "read at its best evaluation (lowest dev loss).", "",
            *[f"- {name}: `{json.dumps(value)}`" for name, value in settings.items()], "",
            table, "", "## Findings", "", *[f"- {line}" for line in findings], "",
            VERDICT_RULE, "", "## Curves", "", "![training and dev curves](curves.png)", "",
            "Against optimizer steps, mean over seeds. Left: training loss (dashed; "
            "label-smoothed when label_smoothing > 0) and dev loss at each evaluation (solid, "
            f"plain cross-entropy); right: {curve_label} at each evaluation.", ""]
    return write_text_atomic(out_dir / "report.md", "\n".join(text))


def plot_curves(variants: list[Variant], runs: dict[str, list[RunRecord]], curve: Metric,
                path: Path) -> None:
    """Training and dev loss (left) and the task's dev metric ``curve`` (right) against
    optimizer steps, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, dev_ax) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, v in enumerate(variants):
        color, rs = colors[i % len(colors)], runs[v.name]
        lines = ((loss_ax, "--", [p for r in rs for p in r.train_curve], "train"),
                 (loss_ax, "-", [(s, loss) for r in rs for s, loss, _ in r.evals], "dev"),
                 (dev_ax, "-", [(s, curve.scale * x) for r in rs for s, _, x in r.evals
                                if x is not None], "dev"))
        for ax, style, points, split in lines:
            steps, means = mean_by_step(points)
            if steps:
                ax.plot(steps, means, style, color=color, lw=1, marker="o" if style == "-"
                        else None, ms=4, label=f"{v.name} {split}")
    loss_ax.set(title="loss", xlabel="optimizer step", ylabel="cross-entropy")
    dev_ax.set(title=curve.label, xlabel="optimizer step", ylabel=curve.heading)
    for ax in (loss_ax, dev_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
