"""The induction experiment: a one-layer and a two-layer attention-only language model, equal in
width and heads, trained side by side over seeds while the repeated-random-token probe
(:mod:`attnlab.tasks.lm.probe`) watches them every ``probe_every`` steps.

An induction head needs two layers: a previous-token head writes "the token before me was A"
into each position, and a head of the next layer matches the current token A against it and
copies what followed the earlier A (Elhage et al. 2021; Olsson et al. 2022, who saw it form in a
sudden phase change). The experiment asks whether the two-layer model grows a head with an
induction score of at least :data:`INDUCTION_BAR` (and the repeated half's loss falls far
below the first half's) while the one-layer model does not, and when.

The runs, reuse and report are the common runner's (:mod:`attnlab.tasks.experiment`); each
(layers, seed) trains into ``out/layers-{N}/seed{seed}/`` with
:func:`~attnlab.tasks.lm.pipeline.train_lm`, keeping ``probe.jsonl``; the report adds
``induction.png`` (the probe's curves, one line per seed) and the phase change of each run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnlab.errors import UsageError
from attnlab.io.run_folder import config_differences
from attnlab.models.language_model import LMConfig
from attnlab.tasks.experiment import ExperimentReport, run_variants, shared_settings
from attnlab.tasks.lm.config import INDUCTION_RECIPE, LMDataConfig, recipe_options
from attnlab.tasks.lm.induction_report import CURVE_FIELDS, induction_findings, plot_probe
from attnlab.tasks.lm.metrics import LMMetrics
from attnlab.tasks.lm.pipeline import MODEL_FIXED, train_lm
from attnlab.tasks.lm.probe import INDUCTION_BAR, ProbeCallback, phase_change, read_probe
from attnlab.tasks.report import Metric, RunRecord, Variant
from attnlab.tasks.runs import RunControl
from attnlab.tasks.seeds import PairedDifference
from attnlab.train import FitResult
from attnlab.train.config import TrainConfig

__all__ = ["EXPERIMENTS", "LAYERS", "InductionExperiment", "experiment_from_options"]

EXPERIMENTS = ("induction",)  # kinds of `attnlab experiment KIND` the language model runs
LAYERS = (1, 2)  # the depths compared
METRICS = [  # the figures of a run (the probe at the end of training), in table order
    Metric("induction", "induction score", 3, compared=True),
    Metric("previous", "previous-token score", 3),
    Metric("first_half_loss", "first-half loss", 3, higher_is_better=False),
    Metric("repeat_loss", "repeated-half loss", 3, higher_is_better=False, compared=True),
    Metric("in_context", "in-context score", 3, higher_is_better=False),
    Metric("dev_loss", "valid loss", 3, higher_is_better=False),
]


def experiment_from_options(kind: str, out_dir: str | os.PathLike, *, data: dict[str, Any],
                            model: dict[str, Any], train: dict[str, Any], seeds: int = 3,
                            first_seed: int = 0, probe_every: int = 100, progress: bool = True,
                            log: Callable[[str], None] = print) -> ExperimentReport:
    """Run the ``induction`` experiment with the options given (field -> value per group) on
    top of :data:`~attnlab.tasks.lm.config.INDUCTION_RECIPE`.

    Raises:
        UsageError: another ``kind``; ``train`` sets ``seed`` or ``model`` sets ``n_layers``
            (the experiment sets both itself); bad ``seeds`` or ``probe_every``.
    """
    if kind not in EXPERIMENTS:
        raise UsageError(f"experiment must be one of {EXPERIMENTS}, got {kind!r}")
    if "seed" in train:
        raise UsageError("an experiment seeds its runs first_seed, first_seed + 1, ...; give "
                         "first_seed instead of a training seed")
    if "n_layers" in model:
        raise UsageError("the induction experiment compares 1 and 2 layers itself; leave out "
                         "--layers")
    for name, value in (("seeds", seeds), ("probe_every", probe_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be an integer >= 1, got {value!r}")
    data, model, train = recipe_options(INDUCTION_RECIPE, data, model, train)
    task = InductionExperiment(Path(out_dir), LMDataConfig(**data), model,
                               TrainConfig(**{**train, "seed": first_seed}), probe_every,
                               progress)
    return run_variants(task, out_dir, [first_seed + k for k in range(seeds)], log=log)


@dataclass
class InductionExperiment:
    """The induction experiment as the runner sees it (an
    :class:`~attnlab.tasks.experiment.ExperimentTask`)."""

    out_dir: Path  # the experiment folder (induction.png goes there)
    data: LMDataConfig  # shared by every run
    base: dict[str, Any]  # model options shared by every run (a variant adds n_layers)
    training: TrainConfig  # shared by every run; the seed is set per run
    probe_every: int = 100  # optimizer steps between two probes
    progress: bool = True  # show each run's progress
    variants: list[Variant] = field(init=False)
    title = "induction heads (language model)"
    metrics = METRICS
    main = "induction"
    dev_curve = Metric("bits", "valid bits per token unit", 3, higher_is_better=False)
    dev_metrics = LMMetrics

    def __post_init__(self) -> None:
        self.variants = [Variant(f"layers-{n}", {"n_layers": n}, f"{n}-layer models",
                                 {"layers": str(n)}) for n in LAYERS]
        share = self.data.repeat_share
        self.about = [
            f"Compared: attention-only language models of 1 and 2 layers, equal in width and "
            f"heads, on {self.data.source} ({self.data.tokenizer} tokens, context "
            f"{self.data.context}); {share:.0%} of the training windows are random tokens of the "
            f"whole vocabulary with a span repeated at a random later place"
            + (", the rest is the text itself." if share < 1 else "."),
            f"Probe every {self.probe_every} steps (and at the end): {self.data.context // 2} "
            f"random tokens repeated twice, 32 sequences; the induction score is the best "
            f"head's share of attention, from the second half, on the token after the current "
            f"token's earlier copy; the previous-token score the share on the token before; "
            f"losses in nats per token. Figures in the table: the probe at the end of "
            f"training. A phase change is the first probe with induction score >= "
            f"{INDUCTION_BAR}."]
        self.settings = {**shared_settings(self.data, self.base, self.training),
                         "probe": {"every": self.probe_every, "sequences": 32,
                                   "half": self.data.context // 2, "bar": INDUCTION_BAR}}

    def differences(self, run_dir: Path, variant: Variant, seed: int) -> list[str]:
        """Saved settings against these (the model's tokenizer-given fields as saved)."""
        saved = json.loads((run_dir / "last" / "config.json").read_text())
        model = LMConfig(**{**{k: saved["model"][k] for k in MODEL_FIXED},
                            **self.base, **variant.options})
        now = {"data": self.data.to_dict(), "model": model.to_dict(),
               "train": self.training.replace(seed=seed).to_dict()}
        return config_differences(saved, now)

    def train(self, run_dir: Path, variant: Variant, seed: int, *, resume: bool) -> None:
        half = self.data.context // 2
        probe = ProbeCallback(run_dir, self.data, every=self.probe_every, half=half, seed=seed)
        if not resume:
            (run_dir / probe.path.name).unlink(missing_ok=True)
        train_lm(run_dir, self.data, {**self.base, **variant.options},
                 self.training.replace(seed=seed),
                 RunControl(resume, self.progress, callbacks=[probe]))

    def measure(self, run_dir: Path, variant: Variant, seed: int, result: FitResult, *,
                fresh: bool) -> dict[str, Any]:
        """The last probe's figures, the phase change and the valid loss of the run."""
        records = read_probe(run_dir)
        if not records:
            raise UsageError(f"{run_dir}: no probe.jsonl; train it again (delete the folder)")
        last, change = records[-1], phase_change(records)
        return {"induction": last.induction, "induction_head": last.induction_head,
                "previous": last.previous, "previous_head": last.previous_head,
                "first_half_loss": last.first_half_loss, "repeat_loss": last.repeat_loss,
                "in_context": last.in_context, "dev_loss": result.best_val.loss,
                "phase_step": None if change is None else change.step,
                "phase_seconds": None if change is None else change.seconds,
                "probe_curve": [[getattr(r, name) for name in CURVE_FIELDS] for r in records]}

    def findings(self, runs: dict[str, list[RunRecord]],
                 differences: list[PairedDifference]) -> list[str]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        plot_probe(self.variants, runs, self.out_dir / "induction.png")
        return induction_findings(self.variants, runs, INDUCTION_BAR)
