"""Tasks: what is specific to one use of attention (its data, loss, metrics, run folder,
commands and reports), put together from models, text, io, inspection and the task-agnostic
training loop. :mod:`attnlab.tasks.registry` lists them; ``open_subject`` opens a run of any
task (or a pretrained encoder) for the inspection tools.

The registry loads on first use, so importing one task's module stays light.
"""

from importlib import import_module

_LAZY = {"TASKS": "registry", "open_subject": "registry", "task_named": "registry",
         "task_of_run": "registry", "Task": "task", "Command": "task"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"attnlab.tasks.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'attnlab.tasks' has no attribute {name!r}")
