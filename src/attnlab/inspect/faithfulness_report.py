"""What a faithfulness measurement says, in words, a table and a picture: ``report.md`` and
``curves.png`` from the object ``faithfulness.json`` holds (so either can be redrawn from the
file alone).

The verdict is stated with its rule: the most faithful method is the one with the highest
comprehensiveness (ERASER AOPC), named with its lead over the next; a method *beats random*
when its comprehensiveness exceeds the random floor's mean by more than twice the floor's
spread (the sample standard deviation over the random seeds).
"""

from __future__ import annotations

from matplotlib import colormaps
from matplotlib.figure import Figure

from attnlab.inspect.faithfulness import SCALARS

__all__ = ["ATTENTION_METHODS", "SPREADS", "beats_random", "curves_figure", "report_text",
           "verdict"]

ATTENTION_METHODS = ("attention", "rollout", "attention_grad")  # read off attention weights
SPREADS = 2.0  # beating random: more than this many of its seed standard deviations above it


def beats_random(result: dict, method: str, metric: str = "comprehensiveness"
                 ) -> tuple[bool, str]:
    """Whether ``method`` beats the random floor in ``metric`` beyond its spread (higher is
    better; for ``sufficiency`` lower), and the sentence that says so with the numbers."""
    floor = result["methods"]["random"]
    value, base = result["methods"][method][metric], floor[metric]
    spread = floor["spread"].get(metric)
    if value is None or base is None:
        return False, f"{method}: {metric} undefined"
    better = value - base if metric != "sufficiency" else base - value
    if spread is None:
        return better > 0, (f"{method} {value:.3f} vs random {base:.3f} (one seed: no spread "
                            f"to judge by)")
    beats = better > SPREADS * spread
    how = ("beats random beyond its spread" if beats else
           "does not beat random beyond its spread" if better > 0 else "is not above random")
    ratio = f"{better / spread:.1f} std" if spread > 0 else "a spread of 0"
    return beats, (f"{method} {how}: {metric} {value:.3f} vs random {base:.3f} ± {spread:.3f} "
                   f"(difference {better:+.3f}, {ratio})")


def verdict(result: dict) -> list[str]:
    """The findings: the most faithful method and its lead, the floor, attention vs random."""
    methods = result["methods"]
    ranked = _ranked(methods)
    floor = methods["random"]
    spread = floor["spread"].get("comprehensiveness")
    lines = [f"Random floor: comprehensiveness {floor['comprehensiveness']:.3f}"
             + (f" ± {spread:.3f} (sample std over {len(floor['seeds'])} seeds)"
                if spread is not None else " (one seed)")
             + f", sufficiency {floor['sufficiency']:.3f}."]
    if ranked:
        best = ranked[0]
        top = methods[best]["comprehensiveness"]
        if len(ranked) > 1:
            second = methods[ranked[1]]["comprehensiveness"]
            lead = (f", ahead of {ranked[1]} ({second:.3f}) by {top - second:.3f}"
                    + (f" ({(top - second) / abs(second):.0%} of it)" if second else ""))
        else:
            lead = ""
        lines.insert(0, f"Most faithful by comprehensiveness: **{best}** ({top:.3f}){lead}.")
    beating = [m for m in ranked if beats_random(result, m)[0]]
    lines.append("Beat random beyond its spread in comprehensiveness: "
                 + (", ".join(beating) if beating else "none") + ".")
    for method in ATTENTION_METHODS:
        if method in methods:
            lines.append(beats_random(result, method)[1] + ".")
            lines.append(beats_random(result, method, "sufficiency")[1] + ".")
    shown = [m for m in ("attention", "rollout") if m in methods]
    if shown:
        wins = [m for m in shown if m in beating]
        lines.append("Attention as explanation: " + (
            f"{' and '.join(wins)} beat{'s' if len(wins) == 1 else ''} random beyond its "
            f"spread" if wins else f"{' and '.join(shown)} do{'es' if len(shown) == 1 else ''} "
            f"not beat random beyond its spread") + " in comprehensiveness.")
    return lines


def _ranked(methods: dict) -> list[str]:
    """The methods other than random, the most comprehensive first."""
    return sorted((m for m in methods if m != "random"),
                  key=lambda m: methods[m]["comprehensiveness"], reverse=True)


def _number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(result: dict) -> list[str]:
    """The Markdown table: one row per method, the most comprehensive first, random last."""
    methods = result["methods"]
    order = _ranked(methods)
    lines = ["| method | comprehensiveness ↑ | sufficiency ↓ | NAOPC comp. ↑ | NAOPC suff. ↓ "
             "| τ vs leave-one-out | deletion AUC ↓ | insertion AUC ↑ | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in [*order, "random"]:
        m = methods[name]
        spread = m.get("spread", {})
        cells = [_number(m[key]) + (f" ± {spread[key]:.3f}" if spread.get(key) is not None
                                    else "") for key in SCALARS]
        lines.append(f"| {name} | {' | '.join(cells)} | {m['seconds']:.1f} |")
    return lines


def report_text(result: dict, *, curves: str | None = "curves.png", brief: bool = False) -> str:
    """``report.md``: what was measured and how, the table, the findings and the time;
    ``brief``: the table and findings only (what the command prints)."""
    seconds = result["seconds"]
    findings = [f"- {line}" for line in verdict(result)]
    timing = (f"Total time {seconds['total']:.1f} s (preparation "
              f"{seconds.get('preparation', 0.0):.1f} s, attribution "
              f"{seconds['attribution']:.1f} s, measurement {seconds['measurement']:.1f} s) for "
              f"{result['n']} inputs: {1000 * seconds['total'] / max(result['n'], 1):.0f} ms per "
              f"input. A method's seconds: its attributions of all inputs (random: per seed).")
    if brief:
        return "\n".join([*table(result), "", *findings, "", timing])
    accuracy = result.get("accuracy_of_targets")
    text = [
        f"# Faithfulness of attributions: {result.get('model', '')}",
        "",
        f"Data: {result.get('data')} ({result.get('split')}), {result['n']} inputs"
        + (f" ({result['skipped_no_removable_token']} without a removable token left out)"
           if result.get("skipped_no_removable_token") else "") + ". "
        f"Target explained: {result.get('target', '')}."
        + (f" The targets agree with the gold labels on {accuracy:.1%} of the inputs."
           if accuracy is not None else ""),
        "",
        "How it is measured:",
        "",
        f"- Removal: {result['removal']}.",
        f"- Comprehensiveness: m(x) − m(x without the top k % of tokens by the method's score); "
        f"sufficiency: m(x) − m(only the top k %); m = the target's "
        f"{result['measure'].replace('_', '-')}. AOPC over the bins "
        f"{', '.join(map(str, result['bins']))} %: {result['aopc']}; a bin holds "
        f"{result['bin_tokens']} (DeYoung et al. 2020).",
        f"- Normalised AOPC (Edin et al. 2024): {result['naopc']}.",
        "- Kendall τ-b of each method's token scores against leave-one-out's, per input "
        "(inputs where either is constant left out), averaged.",
        f"- Random: seeds {', '.join(map(str, result['random_seeds']))}; the ± is the sample "
        f"standard deviation over them. A method beats random when it exceeds the floor by more "
        f"than {SPREADS:g} of them.",
        f"- Deletion/insertion curves: target probability with the top "
        f"{', '.join(map(str, result['curve']))} % deleted / alone present, averaged over the "
        f"inputs; AUC over shares 0–1.",
        "",
        *table(result),
        "",
        "## Findings",
        "",
        *findings,
        "",
        timing,
        "",
    ]
    if curves:
        text += [f"![deletion and insertion curves]({curves})", ""]
    return "\n".join(text)


def curves_figure(result: dict) -> Figure:
    """Deletion and insertion curves side by side, one line per method (random dashed)."""
    fig = Figure(figsize=(10, 4))
    steps = result["curve"]
    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i != 7]  # 7: tab10's gray
    colours = {name: palette[i % len(palette)]
               for i, name in enumerate(m for m in result["methods"] if m != "random")}
    colours["random"] = "black"
    for ax, key, title in zip(fig.subplots(1, 2), ("deletion_curve", "insertion_curve"),
                              ("deletion: top tokens removed", "insertion: top tokens alone"),
                              strict=True):
        for name, m in result["methods"].items():
            ax.plot(steps, m[key], label=name, marker=".", color=colours[name],
                    linestyle="--" if name == "random" else "-")
        ax.set_xlabel("removable tokens, by the method's ranking (%)")
        ax.set_ylabel("target probability (mean)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{result.get('model', '')} on {result.get('data')} {result.get('split')}"
                 f" ({result['n']} inputs)", fontsize=9)
    fig.tight_layout()
    return fig
