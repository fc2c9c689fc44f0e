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


# Subcommand registrations, in the order `attnlab --help` lists them.
_REGISTRY: list = []
_REGISTRY.append(_add_explain)

if __name__ == "__main__":
    sys.exit(main())
