"""The commands of ``attnlab``, behind :func:`attnlab.cli.main` (which loads this module).

The commands of a task (``train``, ``evaluate``, ``experiment``, ``predict``, ``translate``)
come from its :class:`~attnlab.tasks.task.Task`, found from ``--task`` or from the run folder
named first; the inspection commands (``explain``, ``show``, ``heads``, ``serve``,
``attribute``) ask the model they open (:func:`~attnlab.tasks.registry.open_subject`). Nothing
here asks which task it is.
"""

from __future__ import annotations

import argparse
import os
import sys

from attnlab.cli import attribute as cli_attribute
from attnlab.cli import explain as cli_explain
from attnlab.cli import inspect as cli_inspect
from attnlab.errors import InputError, UsageError
from attnlab.tasks.registry import DEFAULT_TASK, TASKS, is_run, task_named, task_of_run
from attnlab.tasks.task import Command, Task
from attnlab.train import TrainingInterrupted

__all__ = ["build_parser", "main"]

# Errors of bad input, printed as one line with exit code 2: attnlab's own (a bad option, text,
# data file or checkpoint), a missing or unreadable file and a missing optional package.
# Anything else, a ValueError from deep inside included, is a bug and keeps its traceback.
USER_ERRORS = (InputError, FileNotFoundError, PermissionError, ImportError)
BROKEN_PIPE = 141  # exit code when the reader of stdout went away: 128 + SIGPIPE, as the shell
# reports for a program that SIGPIPE killed (`yes | head -1`)

# The inspection commands, in the order `attnlab --help` lists them after the tasks' commands.
INSPECTION = {
    "explain": cli_explain.COMMAND, "show": cli_inspect.SHOW, "heads": cli_inspect.HEADS,
    "serve": cli_inspect.SERVE, "attribute": cli_attribute.ATTRIBUTE,
}


class _ExactParser(argparse.ArgumentParser):
    """A parser that takes options only as spelt in full: an abbreviation would bind silently
    to the wrong option (``--seed 1`` read as ``--seeds 1``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})


def build_parser(task: str | Task = DEFAULT_TASK) -> argparse.ArgumentParser:
    """The ``attnlab`` parser; each task command has the options of ``task`` where it offers
    that command, else of the first task that does."""
    task = task_named(task) if isinstance(task, str) else task
    parser = _ExactParser(
        prog="attnlab", description="Self-attention and multi-head attention for NLP.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_ExactParser)
    for name in _task_commands():
        owner = task if name in task.commands else next(
            t for t in TASKS.values() if name in t.commands)
        _add(sub, name, owner.commands[name], owner)
    for name, command in INSPECTION.items():
        _add(sub, name, command, None)
    return parser


def _task_commands() -> list[str]:
    """Every task command's name, once, in the order the tasks list them."""
    return list(dict.fromkeys(name for t in TASKS.values() for name in t.commands))


def _add(sub, name: str, command: Command, task: Task | None) -> None:
    parser = sub.add_parser(name, help=command.help, description=command.description,
                            epilog=command.epilog)
    if task is not None and not command.takes_run:
        parser.add_argument("--task", choices=list(TASKS), default=DEFAULT_TASK.name,
                            help="; ".join(t.summary for t in TASKS.values())
                                 + ". The options below are those of this task")
    command.add_arguments(parser)
    parser.set_defaults(func=command.run, task_of_command=task)


def task_of(argv: list[str]) -> tuple[Task, str | None]:
    """The task a command line is about, and the run folder that decided it (``None``):
    ``--task`` if given; else the task of the run folder named first; else the one task that
    runs the experiment kind named (``attnlab experiment induction``) or that alone offers the
    command (``attnlab generate MODEL_FOLDER``); else the default task."""
    pre = _ExactParser(add_help=False)
    pre.add_argument("command", nargs="?")
    pre.add_argument("first", nargs="?")
    pre.add_argument("--task", default=None)
    known = pre.parse_known_args(argv)[0]
    if known.task is not None:
        return task_named(known.task), None
    takes_run = any(known.command in t.commands and t.commands[known.command].takes_run
                    for t in TASKS.values())
    if takes_run and known.first is not None and is_run(known.first):
        return task_of_run(known.first), known.first
    offering = [t for t in TASKS.values() if known.command in t.commands]
    if known.command == "experiment":
        offering = [t for t in offering if known.first in t.experiments]
    return (offering[0] if len(offering) == 1 else DEFAULT_TASK), None


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); its exit code: 2 for bad input,
    130 when interrupted, 141 (quietly) when standard output is a pipe whose reader has gone
    (``attnlab translate RUN ... | head -1``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    try:
        task, run = task_of(argv)
        parser = build_parser(task)
        args, extra = parser.parse_known_args(argv)
        _check_applies(args, extra, task, run, parser)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE
    except USER_ERRORS as err:
        print(f"attnlab {command}: error: {_message(err)}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        where = ("saved last/ — resume with --resume" if stop.saved
                 else "nothing saved — run the same command again")
        print(f"interrupted at step {stop.step}; {where}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"attnlab {command}: interrupted", file=sys.stderr)
        return 130


def _message(err: Exception) -> str:
    """The one line for a user error: an OS error as ``FILE: reason``, others as they read."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror[:1].lower()}{err.strerror[1:]}"
    return str(err)


def _silence_stdout() -> None:
    """Point standard output at the null device, so that Python's flush at exit meets no
    broken pipe again (the recipe of the Python docs, `signal`: "Note on SIGPIPE")."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind stdout (captured in tests)
        pass


def _check_applies(args: argparse.Namespace, extra: list[str], task: Task, run: str | None,
                   parser: argparse.ArgumentParser) -> None:
    """Refuse a command, or an option, that the run's task does not have, naming both."""
    owner = args.task_of_command
    if run is not None and owner is not None and owner is not task:
        raise UsageError(f"{args.command} applies to {owner.name} runs; {run} is a {task.name} "
                         f"run")
    if not extra:
        return
    if run is None and getattr(args, "run", None) is not None:
        task_of_run(args.run)  # a missing or foreign folder: say that, not "no such option"
    option = extra[0].split("=")[0]
    others = [t.name for t in TASKS.values() if t is not task and args.command in t.commands
              and _takes_option(t.commands[args.command], option)]
    if others:
        raise UsageError(f"{option} does not apply to {task.name} runs; it is an option of "
                         f"{' and '.join(others)} runs")
    parser.error(f"unrecognized arguments: {' '.join(extra)}")


def _takes_option(command: Command, option: str) -> bool:
    """Whether ``command`` has the option ``option`` (``--batch-size``)."""
    probe = _ExactParser(add_help=False)
    command.add_arguments(probe)
    return option.startswith("-") and option in probe._option_string_actions
