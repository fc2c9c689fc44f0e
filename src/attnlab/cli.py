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


# Subcommand registrations, in the order `attnlab --help` lists them.
_REGISTRY: list = []

if __name__ == "__main__":
    sys.exit(main())
