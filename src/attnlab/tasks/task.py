"""A task as one object: what the command line and the inspection tools ask of it.

A :class:`Task` is found once — from ``--task`` for ``train`` and ``experiment``, from a run
folder's ``model_type`` for everything else (:mod:`attnlab.tasks.registry`) — and answers for
itself: its commands with their options (``train``, ``evaluate``, ``experiment`` and its own,
such as ``predict`` or ``translate``), and how to open one of its runs for inspection (an
:class:`~attnlab.inspect.protocol.Inspectable`). The command line and the views never ask which
task it is; a new task is a folder beside the others and a line in the registry.
"""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from attnlab.inspect.protocol import Inspectable

__all__ = ["Command", "Task"]


@dataclass(frozen=True)
class Command:
    """One subcommand a task offers: its text in ``--help``, its options and its handler.

    The handler parses nothing itself: it takes the parsed options, calls the task's library
    functions and prints their result; it returns the exit code.
    """

    help: str  # one line in `attnlab --help`
    description: str  # the paragraph of `attnlab COMMAND --help`
    epilog: str  # examples
    add_arguments: Callable[[argparse.ArgumentParser], None]  # the command's options
    run: Callable[[argparse.Namespace], int]  # the handler
    takes_run: bool = False  # True: the first argument is a run folder, which picks the task

    @classmethod
    def of(cls, run: Callable[[argparse.Namespace], int],
           add_arguments: Callable[[argparse.ArgumentParser], None], *,
           takes_run: bool = False) -> Command:
        """The command whose texts are the handler's docstring, as click reads them: its
        first line is the help, the paragraphs after it the description, and a last paragraph
        starting ``Examples:`` or ``Example:`` the epilog."""
        paragraphs = inspect.cleandoc(run.__doc__ or "").split("\n\n")
        epilog = paragraphs.pop() if paragraphs[-1].startswith("Example") else ""
        text = [" ".join(p.split()) for p in paragraphs]
        return cls(text[0].rstrip("."), " ".join(text[1:]) or text[0], " ".join(epilog.split()),
                   add_arguments, run, takes_run)


@dataclass(frozen=True)
class Task:
    """A use of attention: its commands and its runs.

    ``model_types`` are the ``config.json`` model types of the runs it trains: a run folder
    belongs to the task that lists its type.
    """

    name: str  # as given to --task
    summary: str  # one line for `--task` help
    model_types: tuple[str, ...]  # config.json model_type of its runs
    commands: Mapping[str, Command]  # train, evaluate, experiment, and its own
    open_subject: Callable[[str | os.PathLike], Inspectable]  # a run folder, for inspection
    experiments: tuple[str, ...] = ()  # kinds of `attnlab experiment KIND` it runs
    # the kinds of Hugging Face family (io.families' Family.kind) it opens for inspection
    family_kinds: tuple[str, ...] = ()
