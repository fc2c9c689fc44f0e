"""The ``attnlab`` command line: one subcommand per task, each a thin layer over the library.

Each subcommand registers itself with ``add_<name>_parser(subparsers)`` below and runs through
its ``func``; the work itself lives in the library modules.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnlab", description="Self-attention and multi-head attention for NLP."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRY:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"attnlab {args.command}: error: {err}", file=sys.stderr)
        return 2


def _add_explain(sub) -> None:
    from attnlab import cli_explain

    parser = sub.add_parser(
        "explain", help="attention on small matrices, step by step",
        description="Show each step of softmax(Q Kᵀ · scale + mask) V on matrices given as JSON.",
        epilog="example: attnlab explain --q '[[1,0,1]]' --k '[[1,0,1],[0,1,0],[1,1,0]]' "
               "--v '[[1,2],[3,4],[5,6]]'",
    )
    cli_explain.add_arguments(parser)
    parser.set_defaults(func=cli_explain.run)


def _add_show(sub) -> None:
    from attnlab import cli_inspect

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
    from attnlab import cli_inspect

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
    from attnlab import cli_inspect

    parser = sub.add_parser(
        "serve", help="live attention explorer in the browser",
        description="Serve a page to type a sentence and see the prediction, the rollout and "
                    "every head; JSON API at POST /api/attend.",
        epilog="example: attnlab serve runs/sst2 --port 8000",
    )
    cli_inspect.add_serve_arguments(parser)
    parser.set_defaults(func=cli_inspect.run_serve)


# Subcommand registrations, in the order `attnlab --help` lists them.
_REGISTRY: list = []
_REGISTRY.append(_add_explain)
_REGISTRY += [_add_show, _add_heads, _add_serve]

if __name__ == "__main__":
    sys.exit(main())
