"""Arguments and handlers of ``attnlab train``, ``evaluate``, ``predict`` and ``experiment``.

Options come from the config dataclasses (DataConfig, ClassifierConfig, TrainConfig), one per
field, so the defaults shown are the library's; unknown options are an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

__all__ = [
    "add_evaluate_arguments",
    "add_experiment_arguments",
    "add_predict_arguments",
    "add_train_arguments",
    "run_evaluate",
    "run_experiment",
    "run_predict",
    "run_train",
]

# Model fields set from the tokenizer and data, or fixed by the tokenizer's special tokens.
_MODEL_SKIP = ("vocab_size", "n_classes", "pad_token_id", "unk_token_id", "n_special_tokens")
_MODEL_RENAME = {"n_heads": "heads", "n_layers": "layers"}
_FINETUNE_RENAME = {"pooling": "head_pooling", "max_length": "max_length"}


def _add_config_groups(parser: argparse.ArgumentParser) -> None:
    from attnlab.cli.options import add_config_options
    from attnlab.models.classifier import ClassifierConfig
    from attnlab.tasks.classification.config import DataConfig
    from attnlab.train.config import TrainConfig

    add_config_options(parser.add_argument_group("data"), DataConfig, "data",
                       rename={"source": "data"})
    add_config_options(parser.add_argument_group("model"), ClassifierConfig, "model",
                       rename=_MODEL_RENAME, skip=_MODEL_SKIP)
    add_config_options(parser.add_argument_group("training"), TrainConfig, "train",
                       skip=("seed",) if parser.prog.endswith("experiment") else ())


def _configs(args: argparse.Namespace, saved=None):
    """(DataConfig, model options, TrainConfig) from the options given, on top of ``saved``."""
    from attnlab.cli.options import options_given
    from attnlab.tasks.classification.config import DataConfig
    from attnlab.train.config import TrainConfig

    data_opts = options_given(args, "data")
    model_opts = options_given(args, "model")
    train_opts = options_given(args, "train")
    if saved is None:
        return DataConfig(**data_opts), model_opts, TrainConfig(**train_opts)
    data, model, train = saved
    model = {k: v for k, v in model.items() if k not in _MODEL_SKIP}
    return (dataclasses.replace(data, **data_opts), {**model, **model_opts},
            train.replace(**train_opts))


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# --- train ------------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from attnlab.cli.options import add_config_options
    from attnlab.tasks.classification.config import FINETUNE_DEFAULTS, FinetuneConfig

    parser.add_argument("--out", required=True, type=Path,
                        help="run folder: best/, last/, metrics.jsonl, result.json")
    defaults = ", ".join(f"{k} {v}" for k, v in FINETUNE_DEFAULTS.items())
    parser.add_argument("--init", dest="finetune.init", default=argparse.SUPPRESS,
                        metavar="NAME_OR_DIR",
                        help="fine-tune this pretrained encoder (all-MiniLM-L6-v2, or a folder "
                             "with config.json, model.safetensors, tokenizer.json) with a new "
                             "head instead of training a classifier from scratch; the model "
                             f"options do not apply and the training defaults become: {defaults}")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --out from its last/ checkpoint "
                             "(settings from the checkpoint; options given must agree)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    _add_config_groups(parser)
    add_config_options(parser.add_argument_group("fine-tuning (with --init)"), FinetuneConfig,
                       "finetune", skip=("init",),
                       rename=_FINETUNE_RENAME)


def run_train(args: argparse.Namespace) -> int:
    from attnlab.cli.options import options_given
    from attnlab.tasks.classification.finetune import saved_finetune
    from attnlab.tasks.classification.pipeline import saved_configs, train_classifier
    from attnlab.train.distributed import cleanup_distributed

    finetune = options_given(args, "finetune")
    saved_init = saved_finetune(args.out) if args.resume else None
    if "init" in finetune or saved_init is not None:
        return _report(_finetune(args, finetune, saved_init), args.out)
    if finetune:
        raise ValueError(f"{_flags(finetune, _FINETUNE_RENAME)} apply to fine-tuning only; "
                         f"add --init NAME_OR_DIR")
    saved = saved_configs(args.out) if args.resume else None
    data, model_options, train = _configs(args, saved)
    try:
        run = train_classifier(args.out, data, model_options, train, resume=args.resume,
                               progress=not args.quiet)
    finally:
        cleanup_distributed()
    return _report(run, args.out)


def _finetune(args: argparse.Namespace, given: dict, saved_init):
    """Fine-tune ``--init`` (or resume a fine-tuned run) with the options given."""
    from attnlab.cli.options import options_given
    from attnlab.tasks.classification.config import FINETUNE_DEFAULTS, DataConfig, FinetuneConfig
    from attnlab.tasks.classification.finetune import finetune_classifier
    from attnlab.tasks.classification.pipeline import saved_configs
    from attnlab.train.config import TrainConfig
    from attnlab.train.distributed import cleanup_distributed

    model_options = options_given(args, "model")
    if model_options:
        raise ValueError(f"{_flags(model_options, _MODEL_RENAME)} configure a classifier "
                         f"trained from scratch; with --init the model is the pretrained "
                         f"encoder (see the fine-tuning options)")
    data_opts, train_opts = options_given(args, "data"), options_given(args, "train")
    if saved_init is not None:
        data, _, train = saved_configs(args.out)
        finetune = dataclasses.replace(saved_init, **given)
        data, train = dataclasses.replace(data, **data_opts), train.replace(**train_opts)
    else:
        finetune = FinetuneConfig(**given)
        data, train = DataConfig(**data_opts), TrainConfig(**{**FINETUNE_DEFAULTS, **train_opts})
    try:
        return finetune_classifier(args.out, finetune, data, train, resume=args.resume,
                                   progress=not args.quiet)
    finally:
        cleanup_distributed()


def _flags(options: dict, rename: dict[str, str]) -> str:
    return ", ".join("--" + rename.get(name, name).replace("_", "-") for name in options)


def _report(run, out: Path) -> int:
    if _is_main():
        r = run.result
        best = r.best_val
        print(f"trained {run.n_parameters:,} parameters for {r.global_step} steps in "
              f"{r.wall_time:.0f}s{' (stopped early)' if r.stopped_early else ''}"
              f"{' (time limit reached)' if r.out_of_time else ''}")
        if best is not None:
            print(f"best epoch {r.best_epoch} (step {r.best_step}): val loss {best.loss:.4f} "
                  f"accuracy {best.accuracy:.4f} f1 {best.f1:.4f}")
        print(f"saved to {out}/best and {out}/last")
    return 0


# --- evaluate ---------------------------------------------------------------------------------


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run folder (uses best/, else last/) or checkpoint")
    parser.add_argument("--data", default=None,
                        help="data set name or folder [default: the one the run was trained on]")
    parser.add_argument("--split", default="test", help="split to evaluate [default: test]")
    parser.add_argument("--batch-size", type=int, default=256, help="examples per batch")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with keys loss, accuracy, f1, n")


def run_evaluate(args: argparse.Namespace) -> int:
    from attnlab.tasks.classification.use import evaluate_run

    source = args.data or _trained_on(args.run)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    result = evaluate_run(args.run, source, args.split, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"{source} {args.split}: loss {result.loss:.4f}  accuracy {result.accuracy:.4f}  "
              f"f1 {result.f1:.4f}  n {result.n}")
    return 0


def _trained_on(run: Path) -> str:
    from attnlab.io.registry import checkpoint_dir

    config = json.loads((checkpoint_dir(run) / "config.json").read_text(encoding="utf-8"))
    source = (config.get("data") or {}).get("source")
    if not source:
        raise ValueError(f"{run} does not record its data set; pass --data")
    return source


# --- predict ----------------------------------------------------------------------------------


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run folder (uses best/, else last/) or checkpoint")
    parser.add_argument("texts", nargs="*", help="texts to classify")
    parser.add_argument("--file", type=Path, help="also classify each non-empty line of FILE")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {text, label, probability, probs}")


def run_predict(args: argparse.Namespace) -> int:
    from attnlab.tasks.classification.use import predict

    texts = list(args.texts)
    if args.file is not None:
        if not args.file.is_file():
            raise FileNotFoundError(f"--file not found: {args.file}")
        texts += [line.strip() for line in args.file.read_text(encoding="utf-8").splitlines()
                  if line.strip()]
    if not texts:
        raise ValueError("no texts: give them as arguments or with --file")
    predictions = predict(args.run, texts)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions]))
    else:
        width = max(len(p.label) for p in predictions)
        for p in predictions:
            print(f"{p.label:<{width}}  {p.probability:.3f}  {p.text}")
    return 0


# --- experiment -------------------------------------------------------------------------------


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    from attnlab.tasks.classification.experiment import EXPERIMENTS

    parser.add_argument("kind", choices=EXPERIMENTS,
                        help="heads: 1 head vs --heads heads; positional: none, sinusoidal, "
                             "learned, rotary")
    parser.add_argument("--out", required=True, type=Path,
                        help="experiment folder: one run folder per variant and seed, "
                             "report.md, summary.json, curves.png")
    parser.add_argument("--seeds", type=int, default=3, help="runs per variant [default: 3]")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds start here [default 0]")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_groups(parser)


def run_experiment(args: argparse.Namespace) -> int:
    from attnlab.tasks.classification.experiment import run_experiment as run

    data, model_options, train = _configs(args)
    train = train.replace(seed=args.first_seed)
    report = run(args.kind, args.out, data=data, model_options=model_options, train=train,
                 seeds=args.seeds, progress=not args.quiet,
                 log=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.table)
    print()
    for line in report.findings:
        print(f"- {line}")
    print(f"\nreport: {report.report_path}")
    return 0
