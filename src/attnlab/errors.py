"""Exceptions of attnlab that callers may want to tell apart from bugs."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(ValueError):
    """A user's mistake on the command line or in a config: a clear message, exit 2.

    A :class:`ValueError`, so library callers that catch bad input keep working; the ``attnlab``
    command prints it as one line instead of a traceback.
    """
