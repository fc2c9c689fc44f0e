"""``attnlab faithfulness``, shared by the tasks: attribute a split's examples with every method,
measure how faithful each method is, and write ``faithfulness.json``, ``curves.png`` and
``report.md``.

Each task gives the examples (a classifier: texts, the target being the predicted label as in
ERASER; a translator: sources with their references, force-decoded) and its defaults; the
metrics are :mod:`attnlab.inspect.faithfulness`'s. The ``random`` method runs with several seeds
(the floor and its spread) and ``leave_one_out`` always runs (the reference of Kendall τ).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attnlab.errors import InputError, UsageError
from attnlab.inspect.attribution import METHODS, attribute
from attnlab.inspect.faithfulness import (
    BINS,
    CURVE,
    MEASURES,
    InputFaithfulness,
    Prober,
    measure_input,
    random_floor,
    summarise,
)
from attnlab.inspect.faithfulness_report import curves_figure, report_text
from attnlab.io.atomic import write_bytes_atomic, write_text_atomic

__all__ = ["ALWAYS", "OUTPUT", "Example", "FaithfulnessSettings", "add_faithfulness_arguments",
           "check_out", "measure_faithfulness", "run_faithfulness_command", "settings_of",
           "write_outputs"]

OUTPUT = "faithfulness.json"  # marks a folder as a faithfulness output; the views read it
ALWAYS = ("random", "leave_one_out")  # the floor and the reference of Kendall τ
REMOVAL = ("deletion: the removed tokens are taken out of the sequence (not masked, not "
           "replaced by [PAD]), the same for every method; special tokens (and a translation's "
           "target prefix) are never removed")


@dataclass(frozen=True)
class Example:
    """One input of the split."""

    text: str
    reference: str | None = None  # translation: the target sentence force-decoded
    gold: str | None = None  # classification: the gold label's name (agreement reported)


@dataclass(frozen=True)
class FaithfulnessSettings:
    """How faithfulness is measured."""

    methods: tuple[str, ...]  # attribution methods; ALWAYS added
    steps: int = 50  # integrated gradients: points on the path
    seeds: int = 5  # random: seeds 0 .. seeds-1, for the floor's spread
    measure: str = "probability"  # or "log_probability": m in comprehensiveness/sufficiency
    beam: int = 1  # NAOPC bound search beam (1: greedy; 0: no NAOPC)
    bins: tuple[int, ...] = BINS  # AOPC bins, % of removable tokens
    curve: tuple[int, ...] = CURVE  # curve steps, %

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise InputError(f"--methods: unknown method {unknown[0]!r}; known: "
                             f"{', '.join(METHODS)}")
        for name, value, least in (("--steps", self.steps, 1), ("--seeds", self.seeds, 1),
                                   ("--naopc-beam", self.beam, 0)):
            if value < least:
                raise InputError(f"{name} must be >= {least}, got {value}")
        if self.measure not in MEASURES:
            raise InputError(f"--measure must be one of {', '.join(MEASURES)}, got "
                             f"{self.measure!r}")

    @property
    def all_methods(self) -> tuple[str, ...]:
        """The methods run: those asked for, then :data:`ALWAYS`, each once."""
        return tuple(dict.fromkeys((*self.methods, *ALWAYS)))


@dataclass
class _Attributed:
    """Every method's attributions of the examples, and the seconds each took."""

    rows: dict[str, list] = field(default_factory=dict)  # run name -> Attribution per example
    seconds: dict[str, float] = field(default_factory=dict)


def measure_faithfulness(subject, examples: Sequence[Example], settings: FaithfulnessSettings,
                         *, about: dict, log: Callable[[str], None] = lambda line: None
                         ) -> dict:
    """Attribute ``examples`` with every method and measure each; the result as
    ``faithfulness.json`` holds it (``about``: model, data, split, target, shown as given)."""
    if not examples:
        raise InputError("no examples to measure (an empty split, or --limit 0)")
    start = time.perf_counter()
    prepared = [subject.decisions(e.text, reference=e.reference) for e in examples]
    attributing = time.perf_counter()
    log(f"faithfulness: {len(prepared)} inputs prepared in {attributing - start:.1f} s")
    attributed = _attribute_all(subject, prepared, settings, log)
    measuring = time.perf_counter()
    per_run, skipped, rows = _measure_all(prepared, attributed, settings, log)
    finished = time.perf_counter()
    methods = {}
    seeds = list(range(settings.seeds))
    for name in settings.all_methods:
        if name == "random":
            mean, spread = random_floor([summarise(per_run[f"random@{s}"], settings.curve)
                                         for s in seeds])
            entry = {**mean, "seeds": seeds, "spread": spread}
            seconds = sum(attributed.seconds[f"random@{s}"] for s in seeds) / len(seeds)
        else:
            entry = summarise(per_run[name], settings.curve).to_dict()
            seconds = attributed.seconds[name]
        methods[name] = {**entry, "seconds": seconds,
                         "seconds_per_input": seconds / len(examples)}
    agreement = [e.gold == d.targets[0] for e, d in zip(examples, prepared, strict=True)
                 if e.gold is not None]
    return {
        **about, "n": len(examples) - skipped, "skipped_no_removable_token": skipped,
        "removal": REMOVAL, "measure": settings.measure, "bins": list(settings.bins),
        "bin_tokens": "ceil(k * n / 100) of the n removable tokens (at least 1)",
        "aopc": f"mean over the {len(settings.bins)} bins (ERASER's released scorer)",
        "naopc": (f"(AOPC - lo) / (hi - lo) per input; lo/hi: beam search (beam "
                  f"{settings.beam}) over orderings, widened to every method's ordering"
                  if settings.beam else "not computed (--naopc-beam 0)"),
        "curve": list(settings.curve), "steps": settings.steps, "random_seeds": seeds,
        "accuracy_of_targets": (sum(agreement) / len(agreement)) if agreement else None,
        "methods": methods, "probability_rows": rows,
        "seconds": {"preparation": attributing - start, "attribution": measuring - attributing,
                    "measurement": finished - measuring, "total": finished - start},
    }


def _attribute_all(subject, prepared: Sequence, settings: FaithfulnessSettings,
                   log: Callable[[str], None]) -> _Attributed:
    """Every method (random once per seed) over every prepared input, timed."""
    runs = [(m, 0) for m in settings.all_methods if m != "random"]
    runs += [("random", seed) for seed in range(settings.seeds)]
    out = _Attributed()
    for method, seed in runs:
        name = f"random@{seed}" if method == "random" else method
        began = time.perf_counter()
        out.rows[name] = attribute(subject, list(prepared), method=method, steps=settings.steps,
                                   seed=seed)
        out.seconds[name] = time.perf_counter() - began
        log(f"faithfulness: {name}: {len(prepared)} inputs attributed in "
            f"{out.seconds[name]:.1f} s")
    return out


def _measure_all(prepared: Sequence, attributed: _Attributed, settings: FaithfulnessSettings,
                 log: Callable[[str], None]
                 ) -> tuple[dict[str, list[InputFaithfulness]], int, int]:
    """Per run name, each input's figures; the inputs skipped (no removable token); the rows
    evaluated."""
    per_run: dict[str, list[InputFaithfulness]] = {name: [] for name in attributed.rows}
    skipped = rows = 0
    began, every = time.perf_counter(), max(1, len(prepared) // 10)
    for i, decisions in enumerate(prepared):
        prober = Prober(decisions.probability)
        measured = measure_input({name: got[i].scores for name, got in attributed.rows.items()},
                                 decisions.removable, prober, bins=settings.bins,
                                 curve=settings.curve, measure=settings.measure,
                                 reference="leave_one_out", beam=settings.beam)
        rows += prober.rows
        if measured is None:
            skipped += 1
        else:
            for name, figures in measured.items():
                per_run[name].append(figures)
        if (i + 1) % every == 0 or i + 1 == len(prepared):
            log(f"faithfulness: measured {i + 1}/{len(prepared)} inputs "
                f"({time.perf_counter() - began:.1f} s)")
    return per_run, skipped, rows


# --- the output folder ------------------------------------------------------------------------


def check_out(out: Path) -> None:
    """Refuse, before any work, an output that is a file, or a non-empty folder that holds no
    earlier faithfulness output (:data:`OUTPUT`): it is never overwritten by accident."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / OUTPUT).is_file():
        found = sorted(p.name for p in out.iterdir())
        raise UsageError(f"--out {out} already holds other files ({', '.join(found[:3])}"
                         f"{', ...' if len(found) > 3 else ''}) and no {OUTPUT}; give an empty "
                         f"or new folder")


def write_outputs(result: dict, out: Path) -> dict[str, Path]:
    """``curves.png``, ``report.md`` and, last, ``faithfulness.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"curves": out / "curves.png", "report": out / "report.md", "json": out / OUTPUT}
    png = io.BytesIO()
    curves_figure(result).savefig(png, dpi=120, format="png")
    write_bytes_atomic(paths["curves"], png.getvalue())
    write_text_atomic(paths["report"], report_text(result, curves=paths["curves"].name))
    write_text_atomic(paths["json"], json.dumps(result, indent=2, allow_nan=False))
    return paths


# --- the command, shared by the tasks ---------------------------------------------------------


def add_faithfulness_arguments(parser: argparse.ArgumentParser, *, split: str,
                               methods: Sequence[str], measure: str) -> None:
    """The options of ``attnlab faithfulness``, with a task's defaults."""
    parser.add_argument("run", type=Path, help="a run folder (best/, else last/)")
    parser.add_argument("--data", default=None,
                        help="data set name or folder [default: the one the run was trained on]")
    parser.add_argument("--split", default=split, help=f"split measured [default: {split}]")
    parser.add_argument("--methods", nargs="+", default=list(methods), metavar="METHOD",
                        help=f"attribution methods, space- or comma-separated, among "
                             f"{', '.join(METHODS)}; {' and '.join(ALWAYS)} always run "
                             f"[default: {' '.join(methods)}]")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="measure only the first N examples [default: all]")
    parser.add_argument("--steps", type=int, default=50,
                        help="integrated gradients: points on the path [default: 50]")
    parser.add_argument("--seeds", type=int, default=5,
                        help="random: seeds, for the floor's spread [default: 5]")
    parser.add_argument("--measure", choices=[m.replace("_", "-") for m in MEASURES],
                        default=measure.replace("_", "-"),
                        help=f"what comprehensiveness and sufficiency measure the drop of "
                             f"[default: {measure.replace('_', '-')}]")
    parser.add_argument("--naopc-beam", type=int, default=1, metavar="B",
                        help="beam of the search for each input's lowest and highest AOPC, "
                             "which normalise it (1: greedy; 0: no normalised AOPC) [default: 1]")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for faithfulness.json, curves.png, report.md [default: "
                             "RUN/faithfulness]")
    parser.add_argument("--json", action="store_true", help="print faithfulness.json's object")


def settings_of(args: argparse.Namespace) -> FaithfulnessSettings:
    """The settings the options give; bad values are one line naming the option."""
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    methods = tuple(m for given in args.methods for m in given.split(",") if m)
    if not methods:
        raise UsageError("--methods is empty; give at least one method")
    return FaithfulnessSettings(methods=methods, steps=args.steps, seeds=args.seeds,
                                measure=args.measure.replace("-", "_"), beam=args.naopc_beam)


def run_faithfulness_command(args: argparse.Namespace, settings: FaithfulnessSettings,
                             subject, examples: Sequence[Example], *, data: str | os.PathLike,
                             target: str) -> int:
    """Measure the first ``--limit`` examples of a split of ``data``, explaining ``target``;
    write the folder, print the JSON (``--json``) or the report's summary."""
    out = args.out if args.out is not None else args.run / "faithfulness"
    check_out(out)
    if args.limit is not None:
        examples = examples[:args.limit]
    about = {"model": subject.name, "task": subject.task, "data": str(data),
             "split": args.split, "target": target}
    result = measure_faithfulness(subject, examples, settings, about=about,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    paths = write_outputs(result, out)
    if args.json:
        print(json.dumps(result, allow_nan=False))
    else:
        print(report_text(result, curves=None, brief=True))
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
