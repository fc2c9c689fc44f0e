"""What the induction experiment adds to the common report: the phase change of each run, the
goal (a two-layer induction head, none in one layer) checked plainly, and ``induction.png``,
the probe's curves over training with one line per seed (averaging over seeds would blur a
sudden change that comes at different steps)."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import mean

from attnlab.tasks.report import RunRecord, Variant

__all__ = ["CURVE_FIELDS", "induction_findings", "plot_probe"]

# The columns of a run's "probe_curve" (its probe records, in step order).
CURVE_FIELDS = ("step", "seconds", "induction", "previous", "first_half_loss", "repeat_loss",
                "in_context")
PANELS = (("induction", "induction score (best head)"),
          ("repeat_loss", "repeated-half loss (nats)"),
          ("in_context", "in-context score (nats)"))


def _column(record: RunRecord, name: str) -> list[tuple[float, float]]:
    """(step, value) of one probe field over the run, without missing values."""
    i, step = CURVE_FIELDS.index(name), CURVE_FIELDS.index("step")
    return [(row[step], row[i]) for row in record.metrics.get("probe_curve", [])
            if row[i] is not None]


def plot_probe(variants: list[Variant], runs: dict[str, list[RunRecord]], path: Path) -> None:
    """``induction.png``: each probe figure against optimizer steps, one line per seed, one
    colour per variant; the first half's loss dotted in the loss panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, variant in enumerate(variants):
        for k, record in enumerate(runs[variant.name]):
            label = variant.name if k == 0 else None
            for ax, (name, _) in zip(axes, PANELS, strict=True):
                points = _column(record, name)
                if points:
                    ax.plot(*zip(*points, strict=True), color=colors[i % len(colors)], lw=1,
                            label=label)
            first = _column(record, "first_half_loss")
            if first:
                axes[1].plot(*zip(*first, strict=True), ":", color=colors[i % len(colors)], lw=1)
    for ax, (_, title) in zip(axes, PANELS, strict=True):
        ax.set(title=title, xlabel="optimizer step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _phase_line(variant: Variant, records: list[RunRecord], bar: float) -> str:
    """One variant's runs: how many grew an induction head, when, and the two halves' loss."""
    changed = [r for r in records if r.metrics.get("phase_step") is not None]
    last = [r.metrics["induction"] for r in records]
    line = (f"{variant.name}: an induction head (score >= {bar}) in {len(changed)} of "
            f"{len(records)} seeds; final best-head scores "
            + ", ".join(f"{x:.3f}" for x in last))
    if changed:
        steps = [r.metrics["phase_step"] for r in changed]
        seconds = [r.metrics["phase_seconds"] for r in changed]
        line += (f"; first reached at steps {', '.join(map(str, steps))} (about "
                 f"{mean(seconds):.0f} s of training on this CPU)")
    first = mean(r.metrics["first_half_loss"] for r in records)
    repeat = mean(r.metrics["repeat_loss"] for r in records)
    return line + f"; loss of the repeated half {repeat:.3f} against {first:.3f} for the first"


def induction_findings(variants: list[Variant], runs: dict[str, list[RunRecord]],
                       bar: float) -> list[str]:
    """The phase line of each variant and the goal: every two-layer seed grows an induction
    head, its repeated half's loss under half the first half's, and no one-layer seed does."""
    lines = [_phase_line(v, runs[v.name], bar) for v in variants]
    one, two = (runs[v.name] for v in variants)
    two_ok = all(r.metrics["induction"] >= bar
                 and r.metrics["repeat_loss"] < 0.5 * r.metrics["first_half_loss"] for r in two)
    one_none = all(r.metrics["induction"] < bar for r in one)
    seconds = [r.wall_time for r in (*one, *two) if not math.isnan(r.wall_time)]
    lines.append(
        f"goal (a two-layer induction head, none in one layer): "
        f"{'met' if two_ok and one_none else 'not met'} — two layers: "
        f"{'every seed' if two_ok else 'not every seed'} reached {bar} with the repeated "
        f"half's loss under half the first half's; one layer: "
        f"{'no seed' if one_none else 'some seed'} reached {bar}; "
        f"{max(seconds) / 60:.1f} min of training per model at most")
    return lines
