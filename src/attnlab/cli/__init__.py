"""The ``attnlab`` command line: it parses and prints; the work lives in the library.

This package's top stays light (no torch): :func:`main` loads the commands
(:mod:`attnlab.cli.dispatch`) itself, so that Ctrl-C while torch and the tasks load still ends
in one line and exit code 130. The parser and the rest are in :mod:`attnlab.cli.dispatch`.
"""

from __future__ import annotations

import sys
from importlib import import_module

__all__ = ["build_parser", "main"]

_DISPATCH = "attnlab.cli.dispatch"  # the commands: loads torch, the tasks and the tools
_LAZY = ("INSPECTION", "USER_ERRORS", "build_parser", "task_of")  # names of that module


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); its exit code: 2 for bad input,
    130 when interrupted (while loading too), 141 when the reader of standard output has gone."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        dispatch = import_module(_DISPATCH)
    except KeyboardInterrupt:
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"attnlab {command}: interrupted", file=sys.stderr)
        return 130
    return dispatch.main(argv)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_DISPATCH), name)
    raise AttributeError(f"module 'attnlab.cli' has no attribute {name!r}")
