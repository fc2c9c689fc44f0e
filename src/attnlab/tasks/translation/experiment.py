"""The heads experiment for translation: one attention head vs several at the same ``d_model``.

With ``d_k = d_model / h`` every head count has the same projections, so the same parameter
count; everything else (data, recipe, seeds) is held equal. Each (heads, seed) trains into
``out/h{H}-s{seed}/`` with :func:`~attnlab.tasks.translation.pipeline.train_translator`
(finished runs are reused, interrupted ones resumed), then its ``best/`` translates the test
split (greedy unless ``beam``) and is scored with cased sacreBLEU and chrF. The report
(:mod:`attnlab.tasks.translation.report`) sets the result beside Vaswani et al. (2017),
Table 3 rows (A).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attnlab.errors import UsageError
from attnlab.io.atomic import write_text_atomic
from attnlab.io.run_folder import claim_run_folder, config_differences
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.tasks.translation.config import (
    DEFAULT_RECIPE,
    SMALL_RECIPE,
    TranslationDataConfig,
    recipe_options,
)
from attnlab.tasks.translation.launch import MODEL_FIXED
from attnlab.tasks.translation.pipeline import train_translator
from attnlab.tasks.translation.report import (
    HeadsReport,
    RunSummary,
    TestScore,
    build_report,
)
from attnlab.tasks.translation.training import TranslationMetrics, score_bleu
from attnlab.tasks.translation.use import load_translator, translate
from attnlab.text import load_parallel_split
from attnlab.train import FitResult, MetricsLog
from attnlab.train.config import TrainConfig

__all__ = ["HEADS", "TEST_SPLIT", "experiment_from_options", "run_heads_experiment"]

HEADS = (1, 4, 8)  # the head counts compared, as in Vaswani et al. (2017), Table 3 (A)
TEST_SPLIT = "test_2016_flickr"  # scored after training; never used for training or selection


def experiment_from_options(
    out_dir: str | os.PathLike, *, data: dict[str, Any], model: dict[str, Any],
    train: dict[str, Any], heads: Sequence[int] = HEADS, seeds: int = 3, first_seed: int = 0,
    beam: int = 1, test_sentences: int | None = None, progress: bool = True,
    log: Callable[[str], None] = print,
) -> HeadsReport:
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
) -> HeadsReport:
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
    """
    heads = check_heads(heads, model_options)
    for name, value, low in (("seeds", seeds, 1), ("beam", beam, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if test_sentences is not None and (not isinstance(test_sentences, int) or test_sentences < 1):
        raise ValueError(f"test_sentences must be None or an integer >= 1, got {test_sentences!r}")
    n_parameters = parameter_counts(heads, model_options, data.vocab_size)
    log(f"parameters per head count (vocabulary {data.vocab_size}): "
        + ", ".join(f"h={h}: {n:,}" for h, n in n_parameters.items()))
    out_dir = Path(out_dir)
    runs: dict[int, list[RunSummary]] = {}
    for h in heads:
        runs[h] = []
        for k in range(seeds):
            config = train.replace(seed=train.seed + k)
            run_dir = out_dir / f"h{h}-s{config.seed}"
            summary = _train_and_score(run_dir, data, {**model_options, "n_heads": h}, config,
                                       beam, test_sentences, progress, log)
            runs[h].append(summary)
            log(f"h={h} seed {config.seed}: dev loss {summary.dev_loss:.4f}, test BLEU "
                f"{summary.test_bleu:.2f} chrF {summary.test_chrf:.2f} ({summary.steps} steps, "
                f"{summary.wall_time:.0f}s)")
    counts = {r.n_parameters for rs in runs.values() for r in rs}
    if len(counts) != 1:
        raise RuntimeError(f"the head counts were meant to have equal parameter counts, got "
                           f"{ {h: rs[0].n_parameters for h, rs in runs.items()} }")
    settings = {"data": data.to_dict(), "model": model_options, "train": train.to_dict(),
                "test_split": TEST_SPLIT, "beam": beam, "test_sentences": test_sentences}
    report = build_report(out_dir, runs, settings)
    write_text_atomic(out_dir / "summary.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def check_heads(heads: Sequence[int], model_options: dict[str, Any]) -> tuple[int, ...]:
    """The head counts in ascending order, each dividing ``d_model``, 1 among them."""
    d_model = model_options.get("d_model", Seq2SeqConfig.__dataclass_fields__["d_model"].default)
    heads = tuple(heads)
    if (len(heads) < 2 or len(set(heads)) != len(heads) or 1 not in heads
            or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in heads)):
        raise ValueError(f"heads must be two or more distinct integers >= 1, 1 among them (the "
                         f"baseline), got {list(heads)}")
    wrong = [h for h in heads if d_model % h]
    if wrong:
        raise ValueError(f"every head count must divide d_model={d_model} (d_k = d_model / h), "
                         f"got heads {wrong}")
    return tuple(sorted(heads))


def parameter_counts(heads: Sequence[int], model_options: dict[str, Any], vocab_size: int
                     ) -> dict[int, int]:
    """Trainable parameters of the model of each head count (built once, on the CPU)."""
    counts = {h: Seq2SeqTransformer(Seq2SeqConfig(vocab_size=vocab_size, **{
        **model_options, "n_heads": h})).num_parameters() for h in heads}
    if len(set(counts.values())) != 1:
        raise ValueError(f"the head counts must have equal parameter counts at the same "
                         f"d_model, got {counts}")
    return counts


def _train_and_score(run_dir: Path, data: TranslationDataConfig, options: dict[str, Any],
                     train: TrainConfig, beam: int, test_sentences: int | None, progress: bool,
                     log: Callable[[str], None]) -> RunSummary:
    """Train (or reuse, or resume) one run, then score its ``best/`` on the test split."""
    state, differ = _saved_state(run_dir, data, options, train)
    if differ:
        log(f"{run_dir.name}: retraining, its saved settings differ: {', '.join(differ[:3])}")
    if state == "finished":
        result = FitResult.from_dict(json.loads((run_dir / "result.json").read_text()),
                                     TranslationMetrics)
        n_parameters = json.loads((run_dir / "last" / "config.json").read_text())["n_parameters"]
    else:
        with claim_run_folder(run_dir, resume=state == "interrupted", overwrite=True):
            run = train_translator(run_dir, data, options, train,
                                   resume=state == "interrupted", progress=progress)
        result, n_parameters = run.result, run.n_parameters
    test = _test_score(run_dir, data, beam, test_sentences, reuse=state == "finished")
    return summarize_run(options["n_heads"], train.seed, n_parameters, result, test,
                         run_dir / "metrics.jsonl")


def _saved_state(run_dir: Path, data: TranslationDataConfig, options: dict[str, Any],
                 train: TrainConfig) -> tuple[str, list[str]]:
    """``("finished" | "interrupted" | "new", differences)`` of what ``run_dir`` holds: a run
    with these very settings, finished or not, or none (differences: why a saved one is not)."""
    config_path = run_dir / "last" / "config.json"
    if not config_path.exists():
        return "new", []
    saved = json.loads(config_path.read_text())
    model = Seq2SeqConfig(**{**{k: saved["model"][k] for k in MODEL_FIXED}, **options})
    now = {"data": data.to_dict(), "model": model.to_dict(), "train": train.to_dict()}
    differ = config_differences(saved, now)
    if differ:
        return "new", differ
    return ("finished" if (run_dir / "result.json").exists() else "interrupted"), []


def _test_score(run_dir: Path, data: TranslationDataConfig, beam: int,
                test_sentences: int | None, *, reuse: bool) -> TestScore:
    """Cased BLEU and chrF of ``best/`` on the test split (kept in ``test.json``: a reused run
    is not translated again for the same split, beam and sentences)."""
    asked = {"split": TEST_SPLIT, "beam": beam, "sentences": test_sentences}
    path = run_dir / "test.json"
    if reuse and path.exists():
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in asked} == asked:
            return TestScore(saved["bleu"], saved["chrf"], saved["n"])
    pairs = load_parallel_split(data.source, TEST_SPLIT, source_lang=data.source_lang,
                                target_lang=data.target_lang)
    rows = slice(None) if test_sentences is None else slice(test_sentences)
    sources, references = pairs.sources[rows], pairs.targets[rows]
    hypotheses = [t.translation for t in translate(load_translator(run_dir), sources,
                                                   beam=beam)]
    bleu, chrf = score_bleu(hypotheses, references)
    score = TestScore(bleu, chrf, len(hypotheses))
    write_text_atomic(path, json.dumps({**asked, **dataclasses.asdict(score)}) + "\n")
    return score


def summarize_run(heads: int, seed: int, n_parameters: int, result: FitResult, test: TestScore,
                  metrics_path: Path) -> RunSummary:
    """A :class:`RunSummary` of a finished fit, read at its best evaluation (lowest dev loss)."""
    if result.best_val is None:
        raise ValueError(f"h={heads} seed {seed}: the run was never evaluated")
    records = MetricsLog.read(metrics_path) if metrics_path.exists() else []
    best = result.best_val
    return RunSummary(
        heads=heads, seed=seed, n_parameters=n_parameters, steps=result.global_step,
        best_step=result.best_step, dev_loss=best.loss, dev_bleu=best.bleu, dev_chrf=best.chrf,
        test_bleu=test.bleu, test_chrf=test.chrf, test_sentences=test.n,
        wall_time=result.wall_time, out_of_time=result.out_of_time,
        train_curve=[(r["step"], r["loss"]) for r in records if r["type"] == "step"],
        evals=[(r["step"], r["loss"], r.get("bleu")) for r in records if r["type"] == "eval"],
    )
