"""The ``attnlab`` command line: one subcommand per task, each a thin layer over the library.

Each subcommand is added by an ``_add_<name>(subparsers)`` function below and runs through its
``func``; the work itself lives in the library (the modules of this package only parse and
print).
"""

from __future__ import annotations

import argparse
import sys

from attnlab.cli import explain as cli_explain
from attnlab.cli import inspect as cli_inspect
from attnlab.cli import train as cli_train
from attnlab.errors import UsageError
from attnlab.io import CheckpointError

__all__ = ["build_parser", "main"]

# Errors of bad input, printed as one line with exit code 2. Anything else (a TypeError, say)
# is a bug and keeps its traceback.
USER_ERRORS = (UsageError, CheckpointError, ValueError, FileNotFoundError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    """The ``attnlab`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="attnlab", description="Self-attention and multi-head attention for NLP."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRY:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); its exit code, 2 for bad input."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"attnlab {args.command}: error: {err}", file=sys.stderr)
        return 2


def _add_explain(sub) -> None:
    parser = sub.add_parser(
        "explain", help="attention on small matrices, step by step",
        description="Show each step of softmax(Q Kᵀ · scale + mask) V on matrices given as JSON.",
        epilog="example: attnlab explain --q '[[1,0,1]]' --k '[[1,0,1],[0,1,0],[1,1,0]]' "
               "--v '[[1,2],[3,4],[5,6]]'",
    )
    cli_explain.add_arguments(parser)
    parser.set_defaults(func=cli_explain.run)


def _add_show(sub) -> None:
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


def _add_heads(sub) -> None:
    parser = sub.add_parser(
        "heads", help="importance, statistics and pruning curve of every head",
        description="Per layer and head: importance (Michel et al. 2019), entropy, attention "
                    "distance, accuracy with that head masked; accuracy against the share of "
                    "heads pruned. Writes report.md, pruning_curve.png and heads.json.",
        epilog="example: attnlab heads runs/sst2 --data sst2",
    )
    cli_inspect.add_heads_arguments(parser)
    parser.set_defaults(func=cli_inspect.run_heads)


def _add_serve(sub) -> None:
    parser = sub.add_parser(
        "serve", help="live attention explorer in the browser",
        description="Serve a page to type a sentence and see the prediction, the rollout and "
                    "every head; JSON API at POST /api/attend.",
        epilog="example: attnlab serve runs/sst2 --port 8000",
    )
    cli_inspect.add_serve_arguments(parser)
    parser.set_defaults(func=cli_inspect.run_serve)


def _add_train(sub) -> None:
    parser = sub.add_parser(
        "train", help="train a Transformer classifier (tokenizer included) into a run folder, "
                      "or fine-tune a pretrained encoder (--init)",
        description="Train a tokenizer on the training split and a TextClassifier with AdamW, "
                    "warm-up and decay, evaluating on the dev split after each epoch; keep the "
                    "best/ and last/ checkpoints. With --init, put a classification head on a "
                    "pretrained BERT (all-MiniLM-L6-v2) and fine-tune it the same way, with its "
                    "own tokenizer. Runs under torchrun for data parallelism.",
        epilog="examples: attnlab train --data sst2 --heads 4 --layers 2 --d-model 128 "
               "--epochs 3 --out runs/h4; attnlab train --init all-MiniLM-L6-v2 --data sst2 "
               "--out runs/minilm",
    )
    cli_train.add_train_arguments(parser)
    parser.set_defaults(func=cli_train.run_train)


def _add_evaluate(sub) -> None:
    parser = sub.add_parser(
        "evaluate", help="loss, accuracy and F1 of a trained run on a split",
        description="Evaluate a run folder's best checkpoint on a labelled split.",
        epilog="example: attnlab evaluate runs/h4 --data sst2 --split test --json",
    )
    cli_train.add_evaluate_arguments(parser)
    parser.set_defaults(func=cli_train.run_evaluate)


def _add_predict(sub) -> None:
    parser = sub.add_parser(
        "predict", help="label and probability of each text",
        description="Classify texts given as arguments and/or lines of --file.",
        epilog='example: attnlab predict runs/h4 "a gorgeous, witty film" --json',
    )
    cli_train.add_predict_arguments(parser)
    parser.set_defaults(func=cli_train.run_predict)


def _add_experiment(sub) -> None:
    parser = sub.add_parser(
        "experiment", help="single- vs multi-head, or positional encodings, over seeds",
        description="Train each variant with several seeds, everything else equal; write "
                    "report.md (table, target, differences), summary.json and curves.png.",
        epilog="example: attnlab experiment heads --data sst2 --seeds 3 --out runs/exp-heads",
    )
    cli_train.add_experiment_arguments(parser)
    parser.set_defaults(func=cli_train.run_experiment)


# Subcommands, in the order `attnlab --help` lists them.
_REGISTRY = [
    _add_explain,
    _add_train, _add_evaluate, _add_predict, _add_experiment,
    _add_show, _add_heads, _add_serve,
]

if __name__ == "__main__":
    sys.exit(main())
