"""What the translation heads report adds to the common one (:mod:`attnlab.tasks.report`): the
comparison with Vaswani et al. (2017) Table 3, the check that every head count has the same
parameters, and a word when the time limit ended the runs at different steps."""

from __future__ import annotations

import math
import statistics

from attnlab.tasks.report import RunRecord
from attnlab.tasks.seeds import PairedDifference

__all__ = ["VASWANI_TABLE3", "heads_findings", "vaswani_line"]

# Vaswani et al. (2017), Table 3 rows (A): BLEU of the base model on newstest2013 (En-De dev)
# with h heads, d_k = d_v = 512 / h.
VASWANI_TABLE3 = {1: 24.9, 4: 25.5, 8: 25.8}


def heads_findings(runs: dict[int, list[RunRecord]],
                   bleu_differences: dict[int, PairedDifference]) -> list[str]:
    """The task's findings: parameters, the paper, steps (``runs`` and the paired test BLEU
    differences from one head by head count)."""
    counts = {h: rs[0].n_parameters for h, rs in runs.items()}
    lines = [f"Parameters: {next(iter(counts.values())):,} for every head count, as "
             f"d_k = d_model / h makes them." if len(set(counts.values())) == 1 else
             f"Parameters DIFFER between head counts ({counts}): the comparison is not at "
             f"equal size.", vaswani_line(runs, bleu_differences)]
    steps = {h: sorted({r.steps for r in rs}) for h, rs in runs.items()}
    if len({tuple(s) for s in steps.values()}) > 1:
        lines.append("The runs did not all train the same number of steps (the time limit "
                     "ends them): " + ", ".join(f"h={h} {'/'.join(map(str, s))}"
                                                for h, s in steps.items()) + ".")
    return lines


def vaswani_line(runs: dict[int, list[RunRecord]],
                 bleu_differences: dict[int, PairedDifference]) -> str:
    """Our single-head gap beside Vaswani et al.'s, said the way the numbers go."""
    paper = ", ".join(f"h={h} {b}" for h, b in VASWANI_TABLE3.items())
    best_h = max(VASWANI_TABLE3, key=VASWANI_TABLE3.get)
    paper_gap = VASWANI_TABLE3[best_h] - VASWANI_TABLE3[1]
    means = {h: statistics.fmean(r.metrics["test_bleu"] for r in rs) for h, rs in runs.items()}
    ours = ", ".join(f"h={h} {b:.2f}" for h, b in means.items())
    multi = max((h for h in means if h != 1), key=means.get)
    gap = means[multi] - means[1]  # best multi-head minus one head
    diff = bleu_differences[multi]
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
