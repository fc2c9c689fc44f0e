"""Exceptions of attnlab that callers may want to tell apart from bugs."""

from __future__ import annotations

__all__ = ["InputError", "UsageError"]


class InputError(ValueError):
    """Bad input given to attnlab: a text, a file, a folder or a value that cannot be used.

    The ``attnlab`` command prints it as one line and exits with 2; any other exception is a
    bug and keeps its traceback. A :class:`ValueError`, so library callers that catch bad input
    keep working.
    """


class UsageError(InputError):
    """A user's mistake on the command line or in a config: options that do not fit together,
    an option that does not apply to the run's task."""
