"""The tasks attnlab knows, and how a task is found: by name (``--task``) or from a run folder
(its ``config.json`` ``model_type``). Adding a task is a folder beside the others and a line in
:data:`TASKS`.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnlab.errors import InputError, UsageError
from attnlab.inspect.protocol import Inspectable
from attnlab.io.checkpoint import CheckpointError
from attnlab.io.families import read_config
from attnlab.io.registry import model_type_of
from attnlab.tasks.classification.commands import CLASSIFICATION
from attnlab.tasks.lm.commands import LANGUAGE_MODEL
from attnlab.tasks.task import Task
from attnlab.tasks.translation.commands import TRANSLATION

__all__ = ["DEFAULT_TASK", "TASKS", "open_subject", "task_named", "task_of_run"]

TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFICATION, TRANSLATION,
                                                        LANGUAGE_MODEL)}
DEFAULT_TASK = CLASSIFICATION  # `--task` left out; pretrained encoders


def task_named(name: str) -> Task:
    """The task called ``name``."""
    if name not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {name!r}")
    return TASKS[name]


def task_of_run(path: str | os.PathLike) -> Task:
    """The task whose runs have the ``model_type`` recorded in the run or checkpoint folder
    ``path``.

    Raises:
        FileNotFoundError: ``path`` holds no checkpoint.
        CheckpointError: its config.json is not attnlab's, or names a type no task trains.
    """
    model_type = model_type_of(path)
    for task in TASKS.values():
        if model_type in task.model_types:
            return task
    known = [t for task in TASKS.values() for t in task.model_types]
    raise CheckpointError(f"{path}: model_type {model_type!r} belongs to no task; known: "
                          f"{', '.join(known)}")


def is_run(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` is a folder holding an attnlab run or checkpoint (not a pretrained name
    or a Hugging Face model folder)."""
    try:
        return Path(spec).is_dir() and bool(model_type_of(spec))
    except (FileNotFoundError, CheckpointError):
        return False


def open_subject(spec: str | os.PathLike) -> Inspectable:
    """What the inspection tools look into: a run folder of any task, opened by its task; a
    Hugging Face folder of a family some task opens (``Task.family_kinds``: a Marian
    translator), opened by that task; or a pretrained encoder (a name such as
    ``all-MiniLM-L6-v2``, or another Hugging Face folder)."""
    task = task_of_run(spec) if is_run(spec) else _task_of_family(spec)
    return task.open_subject(spec)


def _task_of_family(spec: str | os.PathLike) -> Task:
    """The task that opens the Hugging Face family in folder ``spec``, else the default one
    (which also reports a folder that is no model)."""
    if not Path(spec).is_dir():
        return DEFAULT_TASK
    try:
        family, _ = read_config(spec)
    except InputError:
        return DEFAULT_TASK
    return next((t for t in TASKS.values() if family.kind in t.family_kinds), DEFAULT_TASK)
