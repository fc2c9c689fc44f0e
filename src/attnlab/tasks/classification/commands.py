"""The classification task's commands: ``attnlab train``, ``evaluate``, ``predict`` and
``experiment`` of a classifier, and :data:`CLASSIFICATION`, the task object.

Options come from the config dataclasses (DataConfig, ClassifierConfig, TrainConfig,
FinetuneConfig), one per field, so the defaults shown are the library's; unknown options are an
error. The handlers only take the parsed options and print:
:mod:`attnlab.tasks.classification.launch` turns the options given into runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attnlab.errors import UsageError
from attnlab.inspect.attribution import METHODS
from attnlab.inspect.subject import load_subject
from attnlab.models.classifier import ClassifierConfig
from attnlab.tasks.classification.config import FINETUNE_DEFAULTS, DataConfig, FinetuneConfig
from attnlab.tasks.classification.experiment import EXPERIMENTS
from attnlab.tasks.classification.launch import (
    MODEL_FIXED,
    OPTION_NAMES,
    data_source_of,
    experiment_from_options,
    train_from_options,
)
from attnlab.tasks.classification.use import evaluate_run, predict
from attnlab.tasks.faithfulness import (
    Example,
    add_faithfulness_arguments,
    run_faithfulness_command,
    settings_of,
)
from attnlab.tasks.options import add_config_options, options_given
from attnlab.tasks.runs import add_run_folder_arguments, print_trained
from attnlab.tasks.task import Command, Task
from attnlab.text.files import check_utf8, read_text
from attnlab.text.reading import load_split
from attnlab.train.config import TrainConfig

__all__ = ["CLASSIFICATION", "add_config_groups"]


def add_config_groups(parser: argparse.ArgumentParser, *, with_seed: bool) -> None:
    """The data, model and training options; ``with_seed=False`` leaves out ``--seed`` (an
    experiment sets the seeds itself)."""
    add_config_options(parser.add_argument_group("data"), DataConfig, "data",
                       rename=OPTION_NAMES["data"])
    add_config_options(parser.add_argument_group("model"), ClassifierConfig, "model",
                       rename=OPTION_NAMES["model"], skip=MODEL_FIXED)
    add_config_options(parser.add_argument_group("training"), TrainConfig, "train",
                       rename=OPTION_NAMES["train"], skip=() if with_seed else ("seed",))


# --- train ------------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab train``: run folder, ``--init``, and one per config field."""
    add_run_folder_arguments(parser, " (settings from the checkpoint; options given must "
                                     "agree)")
    defaults = ", ".join(f"{k} {v}" for k, v in FINETUNE_DEFAULTS.items())
    parser.add_argument("--init", dest="finetune.init", default=argparse.SUPPRESS,
                        metavar="NAME_OR_DIR",
                        help="fine-tune this pretrained encoder (all-MiniLM-L6-v2, or a folder "
                             "with config.json, model.safetensors, tokenizer.json) with a new "
                             "head instead of training a classifier from scratch; the model "
                             f"options do not apply and the training defaults become: {defaults}")
    add_config_groups(parser, with_seed=True)
    add_config_options(parser.add_argument_group("fine-tuning (with --init)"), FinetuneConfig,
                       "finetune", skip=("init",), rename=OPTION_NAMES["finetune"])


def run_train(args: argparse.Namespace) -> int:
    """Train a model (tokenizer included) into a run folder; --task picks the task.

    Train a tokenizer on the training split and a TextClassifier with AdamW, warm-up and decay,
    evaluating on the dev split after each epoch; keep the best/ and last/ checkpoints. With
    --init, put a classification head on a pretrained BERT (all-MiniLM-L6-v2) and fine-tune it
    the same way, with its own tokenizer. Runs under torchrun for data parallelism. Other tasks:
    `attnlab train --task NAME --help`.

    Examples: attnlab train --data sst2 --heads 4 --layers 2 --d-model 128 --epochs 3 --out
    runs/h4; attnlab train --init all-MiniLM-L6-v2 --data sst2 --out runs/minilm
    """
    run = train_from_options(args.out, data=options_given(args, "data"),
                             model=options_given(args, "model"),
                             train=options_given(args, "train"),
                             finetune=options_given(args, "finetune"),
                             resume=args.resume, overwrite=args.overwrite,
                             progress=not args.quiet)
    print_trained(args.out, run.n_parameters, run.result)
    return 0


# --- evaluate ---------------------------------------------------------------------------------


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab evaluate``."""
    parser.add_argument("run", type=Path, help="run folder (uses best/, else last/) or checkpoint")
    parser.add_argument("--data", default=None,
                        help="data set name or folder [default: the one the run was trained on]")
    parser.add_argument("--split", default="test", help="split to evaluate [default: test]")
    parser.add_argument("--batch-size", type=int, default=256, help="examples per batch")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with keys loss, accuracy, f1, n")


def run_evaluate(args: argparse.Namespace) -> int:
    """A trained run on a split: its task's figures (loss, accuracy and F1; BLEU and chrF).

    Evaluate a run's best checkpoint on a split and print its figures: for a classifier, loss,
    accuracy and macro F1. The options below are a classifier's; `attnlab evaluate RUN --help`
    shows those of RUN's task (a translation run: --beam, --out).

    Example: attnlab evaluate runs/h4 --data sst2 --split test --json
    """
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    source, split = args.data or data_source_of(args.run), args.split
    result = evaluate_run(args.run, source, split, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"{source} {split}: loss {result.loss:.4f}  accuracy {result.accuracy:.4f}  "
              f"f1 {result.f1:.4f}  n {result.n}")
    return 0


# --- predict ----------------------------------------------------------------------------------


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab predict``."""
    parser.add_argument("run", type=Path, help="run folder (uses best/, else last/) or checkpoint")
    parser.add_argument("texts", nargs="*", help="texts to classify")
    parser.add_argument("--file", type=Path, help="also classify each non-empty line of FILE")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {text, label, probability, probs}")


def run_predict(args: argparse.Namespace) -> int:
    """Label and probability of each text (classification runs).

    Classify texts given as arguments and/or lines of --file; print the label and probability of
    each.

    Example: attnlab predict runs/h4 "a gorgeous, witty film" --json
    """
    texts = [check_utf8(text, f"TEXT {n}") for n, text in enumerate(args.texts, start=1)]
    if args.file is not None:
        if not args.file.is_file():
            raise UsageError(f"--file not found: {args.file}")
        texts += [line.strip() for line in read_text(args.file).splitlines() if line.strip()]
    if not texts:
        raise UsageError("no texts: give them as arguments or with --file")
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
    """The options of ``attnlab experiment``: kind, folder, seeds, and one per config field."""
    parser.add_argument("kind", choices=EXPERIMENTS,
                        help="heads: 1 head vs --heads heads; positional: none, sinusoidal, "
                             "learned, rotary")
    parser.add_argument("--out", required=True, type=Path,
                        help="experiment folder: one run folder per variant and seed, "
                             "report.md, summary.json, curves.png")
    parser.add_argument("--seeds", type=int, default=3, help="runs per variant [default: 3]")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds start here [default 0]")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_groups(parser, with_seed=False)


def run_experiment(args: argparse.Namespace) -> int:
    """Single- vs multi-head, or positional encodings, over seeds.

    Train each variant with several seeds, everything else equal; write report.md (table,
    target, paired differences, verdict), summary.json and curves.png, and print the table and
    findings. Other tasks: `attnlab experiment --task NAME --help`.

    Example: attnlab experiment heads --data sst2 --seeds 3 --out runs/exp-heads
    """
    report = experiment_from_options(
        args.kind, args.out, data=options_given(args, "data"),
        model=options_given(args, "model"), train=options_given(args, "train"),
        seeds=args.seeds, first_seed=args.first_seed, progress=not args.quiet,
        log=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.describe())
    return 0


# --- faithfulness -----------------------------------------------------------------------------


def add_faithfulness_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``attnlab faithfulness`` for a classifier: every method by default."""
    add_faithfulness_arguments(parser, split="dev", methods=METHODS, measure="probability")


def run_faithfulness(args: argparse.Namespace) -> int:
    """How faithful each attribution method is: ERASER AOPC, curves, NAOPC, Kendall τ, random.

    Attribute each text of a split with every method (random with several seeds); the target
    explained is the label the model predicts, as ERASER does. Remove each method's top tokens
    (deleted from the sequence; specials never): comprehensiveness and sufficiency as AOPC over
    the bins 1, 5, 10, 20, 50 %, deletion and insertion curves, the normalised AOPC, Kendall τ
    against leave-one-out. Writes faithfulness.json, curves.png and report.md (which method is
    most faithful, and whether attention beats random) to --out.

    Example: attnlab faithfulness runs/h4 --data sst2 --split dev --limit 200
    """
    settings = settings_of(args)
    subject = load_subject(args.run)
    if subject.labels is None:
        raise UsageError(f"faithfulness explains a classifier's label; {args.run} has no "
                         f"classification head")
    source = args.data or data_source_of(args.run)
    data = load_split(source, args.split)
    examples = [Example(text, gold=subject.labels[label] if label < len(subject.labels)
                        else None) for text, label in zip(data.texts, data.labels, strict=True)]
    return run_faithfulness_command(args, settings, subject, examples, data=source,
                                    target="the predicted label (as ERASER)")


CLASSIFICATION = Task(
    name="classification",
    summary="classification (SST-2 and the like): a Transformer classifier, or a fine-tuned "
            "pretrained encoder",
    model_types=("classifier", "bert-sequence-classifier"),
    commands={
        "train": Command.of(run_train, add_train_arguments),
        "evaluate": Command.of(run_evaluate, add_evaluate_arguments, takes_run=True),
        "predict": Command.of(run_predict, add_predict_arguments, takes_run=True),
        "experiment": Command.of(run_experiment, add_experiment_arguments),
        "faithfulness": Command.of(run_faithfulness, add_faithfulness_options, takes_run=True),
    },
    open_subject=load_subject,
    experiments=EXPERIMENTS,
)
