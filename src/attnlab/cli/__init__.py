"""The ``attnlab`` command line: one subcommand per task, each a thin layer over the library.

Each subcommand is added by an ``_add_<name>(subparsers)`` function below and runs through its
``func``; the work itself lives in the library (the modules of this package only parse and
print).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnlab.cli import explain as cli_explain
from attnlab.cli import inspect as cli_inspect
from attnlab.cli import train as cli_train
from attnlab.cli import translation as cli_translation
from attnlab.errors import UsageError
from attnlab.io import CheckpointError
from attnlab.io.registry import model_type_of
from attnlab.train import TrainingInterrupted

__all__ = ["build_parser", "main"]

# Errors of bad input, printed as one line with exit code 2. Anything else (a TypeError, say)
# is a bug and keeps its traceback.
USER_ERRORS = (UsageError, CheckpointError, ValueError, FileNotFoundError, ImportError)


TASKS = ("classification", "translation")  # what `attnlab train --task` trains


class _ExactParser(argparse.ArgumentParser):
    """A parser that takes options only as spelt in full: an abbreviation would bind silently
    to the wrong option (``--seed 1`` read as ``--seeds 1``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})


def build_parser(task: str = "classification") -> argparse.ArgumentParser:
    """The ``attnlab`` parser with every subcommand; ``train`` has the options of ``task``."""
    parser = _ExactParser(
        prog="attnlab", description="Self-attention and multi-head attention for NLP."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_ExactParser)
    for register in _REGISTRY:
        register(sub, task)
    return parser


def task_of(argv: list[str]) -> str:
    """The ``--task`` of a ``train`` command line (its options depend on it)."""
    pre = _ExactParser(add_help=False)
    pre.add_argument("--task", choices=TASKS, default="classification")
    return pre.parse_known_args(argv)[0].task


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); its exit code, 2 for bad input."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(task_of(argv)).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"attnlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        where = "saved last/ — resume with --resume" if stop.saved else "nothing saved"
        print(f"interrupted at step {stop.step}; {where}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"attnlab {args.command}: interrupted", file=sys.stderr)
        return 130


def _add_explain(sub, task: str) -> None:
    parser = sub.add_parser(
        "explain", help="attention step by step: one head of a model on a sentence, or "
                        "small typed matrices",
        description="Show each step of softmax(Q Kᵀ · scale + mask) V: for one head of a model "
                    "(RUN TEXT --layer --head --token), a row per key token with q·k, the "
                    "scaled score, the mask and the weight, then the output; or on matrices "
                    "given as JSON (--q --k --v).",
        epilog='examples: attnlab explain all-MiniLM-L6-v2 "a gripping , funny film" --layer 1 '
               "--head 2 --token film; attnlab explain runs/de-en \"Ein Hund rennt.\" "
               "--attention cross --layer 0 --head 1 --token dog; attnlab explain --q "
               "'[[1,0,1]]' --k '[[1,0,1],[0,1,0],[1,1,0]]' --v '[[1,2],[3,4],[5,6]]'",
    )
    cli_explain.add_arguments(parser)
    parser.set_defaults(func=cli_explain.run)


def _add_show(sub, task: str) -> None:
    parser = sub.add_parser(
        "show", help="draw a model's attention on sentences (PNG, HTML explorer)",
        description="Print the prediction and rollout relevance of each sentence; draw a heat "
                    "map (--layer and --head), a grid of a layer's heads (--layer), or the "
                    "rollout (neither) to --out; write an HTML explorer with --html.",
        epilog='example: attnlab show all-MiniLM-L6-v2 "a gripping film" --layer 2 '
               "--out fig.png --html view.html",
    )
    cli_inspect.add_show_arguments(parser)
    parser.set_defaults(func=cli_inspect.run_show)


def _add_heads(sub, task: str) -> None:
    parser = sub.add_parser(
        "heads", help="importance, statistics and pruning curve of every head",
        description="Per layer and head: importance (Michel et al. 2019), entropy, attention "
                    "distance, accuracy with that head masked; accuracy against the share of "
                    "heads pruned. Writes report.md, pruning_curve.png and heads.json.",
        epilog="example: attnlab heads runs/sst2 --data sst2",
    )
    cli_inspect.add_heads_arguments(parser)
    parser.set_defaults(func=cli_inspect.run_heads)


def _add_serve(sub, task: str) -> None:
    parser = sub.add_parser(
        "serve", help="live attention explorer in the browser",
        description="Serve a page to type a sentence and see the prediction, the rollout and "
                    "every head; JSON API at POST /api/attend.",
        epilog="example: attnlab serve runs/sst2 --port 8000",
    )
    cli_inspect.add_serve_arguments(parser)
    parser.set_defaults(func=cli_inspect.run_serve)


def _add_train(sub, task: str) -> None:
    parser = sub.add_parser(
        "train", help="train a Transformer classifier (tokenizer included) into a run folder, "
                      "or fine-tune a pretrained encoder (--init)",
        description="Train a tokenizer on the training split and a TextClassifier with AdamW, "
                    "warm-up and decay, evaluating on the dev split after each epoch; keep the "
                    "best/ and last/ checkpoints. With --init, put a classification head on a "
                    "pretrained BERT (all-MiniLM-L6-v2) and fine-tune it the same way, with its "
                    "own tokenizer. With --task translation, train a joint subword tokenizer "
                    "and an encoder-decoder Transformer on parallel text instead (see "
                    "`attnlab train --task translation --help`). Runs under torchrun for data "
                    "parallelism.",
        epilog="examples: attnlab train --data sst2 --heads 4 --layers 2 --d-model 128 "
               "--epochs 3 --out runs/h4; attnlab train --init all-MiniLM-L6-v2 --data sst2 "
               "--out runs/minilm; attnlab train --task translation --data multi30k "
               "--source de --target en --out runs/de-en",
    )
    parser.add_argument("--task", choices=TASKS, default="classification",
                        help="classification (SST-2 and the like) or translation (parallel "
                             "text); the options below are those of this task")
    if task == "translation":
        cli_translation.add_train_arguments(parser)
        parser.set_defaults(func=cli_translation.run_train)
    else:
        cli_train.add_train_arguments(parser)
        parser.set_defaults(func=cli_train.run_train)


def _add_evaluate(sub, task: str) -> None:
    parser = sub.add_parser(
        "evaluate", help="a trained run on a split: loss, accuracy and F1, or BLEU and chrF",
        description="Evaluate a run folder's best checkpoint on a split: a classifier's loss, "
                    "accuracy and macro F1, or a translator's cased sacreBLEU and chrF.",
        epilog="examples: attnlab evaluate runs/h4 --data sst2 --split test --json; "
               "attnlab evaluate runs/de-en --split test_2016_flickr --beam 5",
    )
    cli_train.add_evaluate_arguments(parser)
    parser.add_argument("--beam", type=int, default=1,
                        help="translation: beam size (1: greedy) [default: 1]")
    parser.add_argument("--out", type=Path,
                        help="translation: write the hypotheses to this file, one a line")
    parser.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate as the run's model type asks: a translator or a classifier."""
    if model_type_of(args.run) == "seq2seq":
        return cli_translation.run_evaluate(args)
    if args.beam != 1 or args.out is not None:
        raise UsageError("--beam and --out apply to translation runs only")
    return cli_train.run_evaluate(args)


def _add_translate(sub, task: str) -> None:
    parser = sub.add_parser(
        "translate", help="translate texts with a translation run",
        description="Translate texts given as arguments, lines of --file, or standard input "
                    "(greedy, or beam search with --beam).",
        epilog='example: attnlab translate runs/de-en "Ein Hund rennt durch den Schnee." '
               "--beam 5",
    )
    cli_translation.add_translate_arguments(parser)
    parser.set_defaults(func=cli_translation.run_translate)


def _add_predict(sub, task: str) -> None:
    parser = sub.add_parser(
        "predict", help="label and probability of each text",
        description="Classify texts given as arguments and/or lines of --file.",
        epilog='example: attnlab predict runs/h4 "a gorgeous, witty film" --json',
    )
    cli_train.add_predict_arguments(parser)
    parser.set_defaults(func=cli_train.run_predict)


def _add_experiment(sub, task: str) -> None:
    parser = sub.add_parser(
        "experiment", help="single- vs multi-head, or positional encodings, over seeds",
        description="Train each variant with several seeds, everything else equal; write "
                    "report.md (table, target, differences), summary.json and curves.png. "
                    "With --task translation: one head vs 4 vs 8 of a translator on the small "
                    "recipe, scored by test BLEU and chrF, beside Vaswani et al. (2017) "
                    "Table 3 (see `attnlab experiment heads --task translation --help`).",
        epilog="examples: attnlab experiment heads --data sst2 --seeds 3 --out runs/exp-heads; "
               "attnlab experiment heads --task translation --seeds 3 --out runs/exp-mt-heads",
    )
    parser.add_argument("--task", choices=TASKS, default="classification",
                        help="classification (SST-2 and the like) or translation (parallel "
                             "text); the options below are those of this task")
    if task == "translation":
        cli_translation.add_experiment_arguments(parser)
        parser.set_defaults(func=cli_translation.run_experiment)
    else:
        cli_train.add_experiment_arguments(parser)
        parser.set_defaults(func=cli_train.run_experiment)


# Subcommands, in the order `attnlab --help` lists them.
_REGISTRY = [
    _add_explain,
    _add_train, _add_evaluate, _add_predict, _add_translate, _add_experiment,
    _add_show, _add_heads, _add_serve,
]

if __name__ == "__main__":
    sys.exit(main())
