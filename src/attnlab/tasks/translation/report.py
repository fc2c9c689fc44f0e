"""The report of the translation heads experiment: the table over seeds, the paired differences
against one head, the comparison with Vaswani et al. (2017) Table 3, the curves, ``report.md``.

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
from attnlab.models.seq2seq import Seq2SeqConfig
from attnlab.tasks.seeds import mean_by_step, mean_std

__all__ = ["VASWANI_TABLE3", "HeadsReport", "PairedDifference", "RunSummary", "TestScore",
           "build_report", "paired_differences", "vaswani_line"]

# Vaswani et al. (2017), Table 3 rows (A): BLEU of the base model on newstest2013 (En-De dev)
# with h heads, d_k = d_v = 512 / h.
VASWANI_TABLE3 = {1: 24.9, 4: 25.5, 8: 25.8}
COMPARED = (("test_bleu", "test BLEU", 2), ("test_chrf", "test chrF", 2),
            ("dev_loss", "dev loss", 4))  # (RunSummary field, words, digits) of each difference
CURVE_FIELDS = ("train_curve", "evals")  # RunSummary fields left out of summary.json


@dataclass(frozen=True)
class TestScore:
    """Cased sacreBLEU and chrF of a run's ``best/`` on the test split."""

    bleu: float
    chrf: float
    n: int  # sentences translated


@dataclass
class RunSummary:
    """One trained (heads, seed), read at its best evaluation (lowest dev loss); the test
    figures are those of the same weights (``best/``)."""

    heads: int
    seed: int
    n_parameters: int
    steps: int  # optimizer steps done (a time limit may end runs at different steps)
    best_step: int | None  # steps done at the best evaluation
    dev_loss: float  # per target token, no label smoothing
    dev_bleu: float | None  # greedy, on the dev sentences translated during training
    dev_chrf: float | None
    test_bleu: float
    test_chrf: float
    test_sentences: int
    wall_time: float  # seconds of training, evaluations included
    out_of_time: bool  # training ended at the time limit
    train_curve: list[tuple[int, float]] = field(default_factory=list, repr=False)  # (step, loss)
    evals: list[tuple[int, float, float | None]] = field(  # (step, dev loss, dev BLEU)
        default_factory=list, repr=False)


@dataclass(frozen=True)
class PairedDifference:
    """``heads`` minus one head on ``metric``, seed by seed (same seed, same data order)."""

    heads: int
    metric: str  # a RunSummary field
    per_seed: dict[int, float]  # seed -> difference
    mean: float
    std: float  # sample standard deviation over seeds (nan for one seed)

    @property
    def larger_than_spread(self) -> bool:
        return not math.isnan(self.std) and abs(self.mean) > self.std


@dataclass
class HeadsReport:
    """Everything the report shows."""

    runs: dict[int, list[RunSummary]]  # head count -> one summary per seed
    differences: list[PairedDifference]
    table: str  # the markdown table (also printed)
    findings: list[str]  # the plain-language lines
    report_path: Path
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "heads", "task": "translation", "settings": self.settings,
            "variants": [{"name": f"h{h}", "heads": h, "runs": [
                {k: v for k, v in r.__dict__.items() if k not in CURVE_FIELDS} for r in rs]}
                for h, rs in self.runs.items()],
            "paired_differences": [
                {"heads": d.heads, "baseline_heads": 1, "metric": d.metric,
                 "per_seed": {str(s): v for s, v in d.per_seed.items()}, "mean": d.mean,
                 "std": None if math.isnan(d.std) else d.std} for d in self.differences],
            "vaswani_table3": {str(h): b for h, b in VASWANI_TABLE3.items()},
            "findings": self.findings,
        }


def paired_differences(runs: dict[int, list[RunSummary]]) -> list[PairedDifference]:
    """Each head count > 1 minus one head, on each compared metric, over the seeds both have."""
    base = {r.seed: r for r in runs[1]}
    found = []
    for h, rs in runs.items():
        if h == 1:
            continue
        for metric, _, _ in COMPARED:
            per_seed = {r.seed: getattr(r, metric) - getattr(base[r.seed], metric)
                        for r in rs if r.seed in base}
            mean, std = mean_std(list(per_seed.values()))
            found.append(PairedDifference(h, metric, per_seed, mean, std))
    return found


def _pm(values: list[float | None], digits: int) -> str:
    if not values or None in values:
        return "n/a"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {'n/a' if math.isnan(std) else f'{std:.{digits}f}'}"


def markdown_table(runs: dict[int, list[RunSummary]], d_model: int) -> str:
    """One row per head count, mean ± std over seeds."""
    head = ("| variant | heads | d_k | parameters | steps | dev loss | dev BLEU | test BLEU "
            "| test chrF | wall time (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for h, rs in runs.items():
        steps = sorted({r.steps for r in rs})
        lines.append(
            f"| h{h} | {h} | {d_model // h} | {rs[0].n_parameters:,} "
            f"| {'/'.join(map(str, steps))} | {_pm([r.dev_loss for r in rs], 4)} "
            f"| {_pm([r.dev_bleu for r in rs], 2)} | {_pm([r.test_bleu for r in rs], 2)} "
            f"| {_pm([r.test_chrf for r in rs], 2)} | {_pm([r.wall_time for r in rs], 0)} |")
    return "\n".join(lines)


def difference_lines(differences: list[PairedDifference]) -> list[str]:
    """One line per head count: its paired differences from one head, weighed by their spread."""
    lines = []
    for h in sorted({d.heads for d in differences}):
        parts, n = [], 0
        for d in (x for x in differences if x.heads == h):
            _, words, digits = next(c for c in COMPARED if c[0] == d.metric)
            spread = "n/a" if math.isnan(d.std) else f"{d.std:.{digits}f}"
            weight = ("one seed: no spread" if math.isnan(d.std) else
                      f"{'larger' if d.larger_than_spread else 'no larger'} than its spread")
            parts.append(f"{words} {d.mean:+.{digits}f} ± {spread} ({weight})")
            n = len(d.per_seed)
        bleu = next(d for d in differences if d.heads == h and d.metric == "test_bleu")
        wins = sum(v > 0 for v in bleu.per_seed.values())
        lines.append(f"h={h} minus h=1, paired over {n} seeds (mean ± std): {'; '.join(parts)}; "
                     f"higher test BLEU in {wins} of {n} seeds (dev loss: lower is better).")
    return lines


def vaswani_line(runs: dict[int, list[RunSummary]], differences: list[PairedDifference]
                 ) -> str:
    """Our single-head gap beside Vaswani et al.'s, said the way the numbers go."""
    paper = ", ".join(f"h={h} {b}" for h, b in VASWANI_TABLE3.items())
    best_h = max(VASWANI_TABLE3, key=VASWANI_TABLE3.get)
    paper_gap = VASWANI_TABLE3[best_h] - VASWANI_TABLE3[1]
    means = {h: statistics.fmean(r.test_bleu for r in rs) for h, rs in runs.items()}
    ours = ", ".join(f"h={h} {b:.2f}" for h, b in means.items())
    multi = max((h for h in means if h != 1), key=means.get)
    gap = means[multi] - means[1]  # best multi-head minus one head
    diff = next(d for d in differences if d.heads == multi and d.metric == "test_bleu")
    direction = ("like the paper, single-head attention is worse" if gap > 0 else
                 "unlike the paper, single-head attention is no worse")
    if math.isnan(diff.std):
        verdict = (f"from one seed only, so without a spread to judge it by: {direction} in our "
                   f"run (a gap of {abs(gap):.2f} against the paper's {paper_gap:.1f} BLEU); run "
                   f"more seeds before concluding")
    elif not diff.larger_than_spread:
        verdict = ("within the spread over seeds: our run does not show single-head attention "
                   "doing worse (nor better); it neither confirms nor contradicts the paper")
    elif gap > 0:
        verdict = ("larger than the spread over seeds: like the paper, our run finds single-head "
                   f"attention worse, by {'more' if gap > paper_gap else 'less'} than its "
                   f"{paper_gap:.1f} BLEU")
    else:
        verdict = ("larger than the spread over seeds, and the other way: in our run single-head "
                   "attention does better than any multi-head variant, unlike the paper")
    spread = "n/a" if math.isnan(diff.std) else f"{diff.std:.2f}"
    return (f"Vaswani et al. (2017), Table 3 rows (A) (base model, newstest2013 En-De): "
            f"{paper} BLEU: one head is {paper_gap:.1f} BLEU worse than the best (h={best_h}). "
            f"Ours (mean test BLEU over seeds): {ours}: the best multi-head variant (h={multi}) "
            f"minus one head is {gap:+.2f} BLEU (paired over seeds {diff.mean:+.2f} ± "
            f"{spread}), {verdict}. Other data, language direction and model size: compare "
            f"the sign and size of the gap, not the BLEU itself.")


def build_report(out_dir: Path, runs: dict[int, list[RunSummary]], settings: dict[str, Any]
                 ) -> HeadsReport:
    """Differences, table and findings of ``runs``; curves.png and report.md in ``out_dir``."""
    differences = paired_differences(runs)
    d_model = settings["model"].get("d_model",
                                    Seq2SeqConfig.__dataclass_fields__["d_model"].default)
    table = markdown_table(runs, d_model)
    findings = [*difference_lines(differences), vaswani_line(runs, differences)]
    steps = {h: sorted({r.steps for r in rs}) for h, rs in runs.items()}
    if len({tuple(s) for s in steps.values()}) > 1:
        findings.append("The runs did not all train the same number of steps (the time limit "
                        "ends them): " + ", ".join(f"h={h} {'/'.join(map(str, s))}"
                                                   for h, s in steps.items()) + ".")
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(runs, out_dir / "curves.png")
    path = write_text_atomic(out_dir / "report.md", _markdown(runs, table, findings, settings))
    return HeadsReport(runs, differences, table, findings, path, settings)


def _markdown(runs: dict[int, list[RunSummary]], table: str, findings: list[str],
              settings: dict[str, Any]) -> str:
    seeds = sorted({r.seed for rs in runs.values() for r in rs})
    sentences = settings["test_sentences"] or "all"
    decoding = "greedy" if settings["beam"] == 1 else f"beam {settings['beam']}"
    text = [
        "# Experiment: heads (translation)", "",
        f"Compared: one attention head vs {', '.join(str(h) for h in runs if h != 1)} at the "
        f"same d_model (d_k = d_model / h, hence the same parameter count); everything else "
        f"equal. Seeds {', '.join(map(str, seeds))}; numbers are mean ± sample std over seeds, "
        f"read at each run's best evaluation (lowest dev loss; dev BLEU of greedy translations "
        f"of the dev sentences translated during training). Test: `best/` of each run on "
        f"{settings['test_split']} ({sentences} sentences, {decoding}), cased sacreBLEU "
        f"(13a) and chrF; never used for training or selection.", "",
        f"- data: `{json.dumps(settings['data'])}`",
        f"- model options: `{json.dumps(settings['model'])}` (variants set `n_heads`)",
        f"- training: `{json.dumps({k: v for k, v in settings['train'].items() if k != 'seed'})}`",
        "", table, "", "## Findings", "", *[f"- {line}" for line in findings], "",
        "## Curves", "", "![dev loss and dev BLEU](curves.png)", "",
        "Against optimizer steps, mean over seeds. Left: training loss (dashed, label-smoothed "
        "when label_smoothing > 0) and dev loss (solid, plain cross-entropy per target token); "
        "right: dev BLEU at each evaluation.", ""]
    return "\n".join(text)


def plot_curves(runs: dict[int, list[RunSummary]], path: Path) -> None:
    """Dev loss (and training loss) and dev BLEU against steps, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, bleu_ax) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (h, rs) in enumerate(runs.items()):
        color, name = colors[i % len(colors)], f"h{h}"
        train = mean_by_step([p for r in rs for p in r.train_curve])
        if train[0]:
            loss_ax.plot(*train, "--", color=color, lw=1, label=f"{name} train")
        dev = mean_by_step([(s, loss) for r in rs for s, loss, _ in r.evals])
        if dev[0]:
            loss_ax.plot(*dev, "-", color=color, marker="o", ms=4, label=f"{name} dev")
        bleu = mean_by_step([(s, b) for r in rs for s, _, b in r.evals if b is not None])
        if bleu[0]:
            bleu_ax.plot(*bleu, "-", color=color, marker="o", ms=4, label=f"{name} dev")
    loss_ax.set(title="loss", xlabel="optimizer step", ylabel="cross-entropy per token")
    bleu_ax.set(title="dev BLEU (greedy)", xlabel="optimizer step", ylabel="BLEU")
    for ax in (loss_ax, bleu_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
