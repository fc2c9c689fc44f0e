"""The heads experiment for translation: one attention head vs several at the same ``d_model``.

With ``d_k = d_model / h`` every head count has the same projections, so the same parameter
count; everything else (data, recipe, seeds) is held equal. The runs, reuse and report are the
common runner's (:mod:`attnlab.tasks.experiment`): each (heads, seed) trains into
``out/h{H}/seed{seed}/`` with :func:`~attnlab.tasks.translation.pipeline.train_translator`, then
its ``best/`` translates the test split (greedy unless ``beam``) and is scored with cased
sacreBLEU and chrF. The report sets the result beside Vaswani et al. (2017), Table 3 rows (A)
(:mod:`attnlab.tasks.translation.report`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnlab.errors import UsageError
from attnlab.io.atomic import write_text_atomic
from attnlab.io.run_folder import config_differences
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.tasks.experiment import ExperimentReport, run_variants, shared_settings
from attnlab.tasks.report import Metric, RunRecord, Variant
from attnlab.tasks.runs import RunControl
from attnlab.tasks.seeds import PairedDifference
from attnlab.tasks.translation.config import (
    DEFAULT_RECIPE,
    SMALL_RECIPE,
    TranslationDataConfig,
    recipe_options,
)
from attnlab.tasks.translation.launch import MODEL_FIXED
from attnlab.tasks.translation.metrics import TranslationMetrics
from attnlab.tasks.translation.pipeline import train_translator
from attnlab.tasks.translation.report import VASWANI_TABLE3, heads_findings
from attnlab.tasks.translation.use import evaluate_run
from attnlab.train import FitResult
from attnlab.train.config import TrainConfig

__all__ = ["HEADS", "TEST_SPLIT", "HeadsExperiment", "experiment_from_options",
           "run_heads_experiment"]

HEADS = (1, 4, 8)  # the head counts compared, as in Vaswani et al. (2017), Table 3 (A)
TEST_SPLIT = "test_2016_flickr"  # scored after training; never used for training or selection
METRICS = [  # the figures of a run, in table order
    Metric("dev_loss", "dev loss", 4, higher_is_better=False, compared=True),
    Metric("dev_bleu", "dev BLEU", 2),
    Metric("test_bleu", "test BLEU", 2, compared=True),
    Metric("test_chrf", "test chrF", 2, compared=True),
]


def experiment_from_options(
    out_dir: str | os.PathLike, *, data: dict[str, Any], model: dict[str, Any],
    train: dict[str, Any], heads: Sequence[int] = HEADS, seeds: int = 3, first_seed: int = 0,
    beam: int = 1, test_sentences: int | None = None, progress: bool = True,
    log: Callable[[str], None] = print,
) -> ExperimentReport:
    """Run the heads experiment with the options given (field -> value per group) on top of
    :data:`~attnlab.tasks.translation.config.SMALL_RECIPE`, itself on top of
    :data:`~attnlab.tasks.translation.config.DEFAULT_RECIPE`.

    Raises:
        UsageError: ``train`` sets ``seed`` or ``model`` sets ``n_heads`` (the experiment sets
            both itself).
    """
    if "seed" in train:
        raise UsageError("an experiment seeds its runs first_seed, first_seed + 1, ...; give "
                         "first_seed instead of a training seed")
    if "n_heads" in model:
        raise UsageError("the heads experiment sets n_heads itself; give the head counts to "
                         "compare as a list (--heads 1,4,8)")
    small = {group: {**DEFAULT_RECIPE[group], **SMALL_RECIPE[group]} for group in DEFAULT_RECIPE}
    data, model, train = recipe_options(small, data, model, train)
    train_config = TrainConfig(**{**train, "seed": first_seed})
    return run_heads_experiment(out_dir, TranslationDataConfig(**data), model, train_config,
                                heads=heads, seeds=seeds, beam=beam,
                                test_sentences=test_sentences, progress=progress, log=log)


def run_heads_experiment(
    out_dir: str | os.PathLike, data: TranslationDataConfig, model_options: dict[str, Any],
    train: TrainConfig, *, heads: Sequence[int] = HEADS, seeds: int = 3, beam: int = 1,
    test_sentences: int | None = None, progress: bool = True,
    log: Callable[[str], None] = print,
) -> ExperimentReport:
    """Train every head count in ``heads`` with seeds ``train.seed + 0 .. seeds - 1``, score
    each on the test split; write report.md, summary.json and curves.png into ``out_dir``.

    Args:
        out_dir: experiment folder.
        data, model_options, train: the settings shared by all runs (see
            :func:`~attnlab.tasks.translation.pipeline.train_translator`).
        heads: head counts; must hold 1 (the baseline of the paired differences).
        seeds: runs per head count (>= 2 to state a spread).
        beam: test translations by beam search of this width (1: greedy).
        test_sentences: score only the first N test sentences (None: all).
        progress: show each run's progress.
        log: where one line per finished run goes.

    Raises:
        UsageError: bad head counts (1 missing, one not dividing ``d_model``), ``seeds``,
            ``beam`` or ``test_sentences``.
    """
    heads = check_heads(heads, model_options)
    for name, value, low in (("seeds", seeds, 1), ("beam", beam, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    if test_sentences is not None and (not isinstance(test_sentences, int) or test_sentences < 1):
        raise UsageError(f"test_sentences must be None or an integer >= 1, got {test_sentences!r}")
    n_parameters = parameter_counts(heads, model_options, data.vocab_size)
    log(f"parameters per head count (vocabulary {data.vocab_size}): "
        + ", ".join(f"h={h}: {n:,}" for h, n in n_parameters.items()))
    task = HeadsExperiment(heads, data, model_options, train, beam, test_sentences, progress)
    return run_variants(task, out_dir, [train.seed + k for k in range(seeds)], log=log)


def check_heads(heads: Sequence[int], model_options: dict[str, Any]) -> tuple[int, ...]:
    """The head counts in ascending order, each dividing ``d_model``, 1 among them."""
    d_model = model_options.get("d_model", Seq2SeqConfig.__dataclass_fields__["d_model"].default)
    heads = tuple(heads)
    if (len(heads) < 2 or len(set(heads)) != len(heads) or 1 not in heads
            or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in heads)):
        raise UsageError(f"heads must be two or more distinct integers >= 1, 1 among them (the "
                         f"baseline), got {list(heads)}")
    wrong = [h for h in heads if d_model % h]
    if wrong:
        raise UsageError(f"every head count must divide d_model={d_model} (d_k = d_model / h), "
                         f"got heads {wrong}")
    return tuple(sorted(heads))


def parameter_counts(heads: Sequence[int], model_options: dict[str, Any], vocab_size: int
                     ) -> dict[int, int]:
    """Trainable parameters of the model of each head count (built once, on the CPU)."""
    counts = {h: Seq2SeqTransformer(Seq2SeqConfig(vocab_size=vocab_size, **{
        **model_options, "n_heads": h})).num_parameters() for h in heads}
    if len(set(counts.values())) != 1:
        raise UsageError(f"the head counts must have equal parameter counts at the same "
                         f"d_model, got {counts}")
    return counts


@dataclass
class HeadsExperiment:
    """The translation heads experiment as the runner sees it (an
    :class:`~attnlab.tasks.experiment.ExperimentTask`)."""

    heads: tuple[int, ...]  # head counts in ascending order, 1 first (the baseline)
    data: TranslationDataConfig  # shared by every run
    base: dict[str, Any]  # model options shared by every run (a variant adds n_heads)
    training: TrainConfig  # shared by every run; the seed is set per run
    beam: int = 1  # test translations by beam search of this width (1: greedy)
    test_sentences: int | None = None  # score only the first N test sentences (None: all)
    progress: bool = True  # show each run's progress
    variants: list[Variant] = field(init=False)
    title = "heads (translation)"
    metrics = METRICS
    main = "test_bleu"
    dev_curve = Metric("bleu", "dev BLEU (greedy)", 2)
    dev_metrics = TranslationMetrics

    def __post_init__(self) -> None:
        d_model = self.base.get("d_model", Seq2SeqConfig.__dataclass_fields__["d_model"].default)
        self.variants = [Variant(f"h{h}", {"n_heads": h}, f"{h} head{'s' * (h > 1)}",
                                 {"heads": str(h), "d_k": str(d_model // h)})
                         for h in self.heads]
        decoding = "greedy" if self.beam == 1 else f"beam {self.beam}"
        self.about = [
            f"Compared: one attention head vs {', '.join(map(str, self.heads[1:]))} at the same "
            f"d_model (d_k = d_model / h, hence the same parameter count). Dev BLEU: greedy "
            f"translations of the dev sentences translated during training. Test: `best/` of "
            f"each run on {TEST_SPLIT} ({self.test_sentences or 'all'} sentences, {decoding}), "
            f"cased sacreBLEU (13a) and chrF; never used for training or selection."]
        self.settings = {
            **shared_settings(self.data, self.base, self.training),
            "test": {"split": TEST_SPLIT, "beam": self.beam, "sentences": self.test_sentences},
            "Vaswani et al. (2017) Table 3 (A), BLEU by heads": VASWANI_TABLE3}

    def differences(self, run_dir: Path, variant: Variant, seed: int) -> list[str]:
        """Saved settings against these (the model's tokenizer-given fields as saved)."""
        saved = json.loads((run_dir / "last" / "config.json").read_text())
        model = Seq2SeqConfig(**{**{k: saved["model"][k] for k in MODEL_FIXED},
                                 **self.base, **variant.options})
        now = {"data": self.data.to_dict(), "model": model.to_dict(),
               "train": self.training.replace(seed=seed).to_dict()}
        return config_differences(saved, now)

    def train(self, run_dir: Path, variant: Variant, seed: int, *, resume: bool) -> None:
        train_translator(run_dir, self.data, {**self.base, **variant.options},
                         self.training.replace(seed=seed), RunControl(resume, self.progress))

    def measure(self, run_dir: Path, variant: Variant, seed: int, result: FitResult, *,
                fresh: bool) -> dict[str, Any]:
        """Dev figures of the best evaluation; test BLEU and chrF of ``best/``."""
        test = _test_score(run_dir, self.data, self.beam, self.test_sentences, reuse=not fresh)
        best = result.best_val
        return {"dev_loss": best.loss, "dev_bleu": best.bleu, "dev_chrf": best.chrf,
                "test_bleu": test["bleu"], "test_chrf": test["chrf"], "test_sentences": test["n"]}

    def findings(self, runs: dict[str, list[RunRecord]],
                 differences: list[PairedDifference]) -> list[str]:
        heads_of = {v.name: v.options["n_heads"] for v in self.variants}
        bleu = {heads_of[d.variant]: d for d in differences if d.metric == "test_bleu"}
        return heads_findings({heads_of[name]: rs for name, rs in runs.items()}, bleu)


def _test_score(run_dir: Path, data: TranslationDataConfig, beam: int,
                test_sentences: int | None, *, reuse: bool) -> dict[str, Any]:
    """Cased BLEU and chrF of ``best/`` on the test split (kept in ``test.json``: a reused run
    is not translated again for the same split, beam and sentences)."""
    asked = {"split": TEST_SPLIT, "beam": beam, "sentences": test_sentences}
    path = run_dir / "test.json"
    if reuse and path.exists():
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in asked} == asked:
            return saved
    found = evaluate_run(run_dir, data.source, TEST_SPLIT, source_lang=data.source_lang,
                         target_lang=data.target_lang, beam=beam, limit=test_sentences).score
    score = {**asked, "bleu": found.bleu, "chrf": found.chrf, "n": found.n}
    write_text_atomic(path, json.dumps(score) + "\n")
    return score
