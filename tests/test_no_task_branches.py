"""The command line and the inspection tools never ask which task or model family they hold:
they ask the task object (``attnlab.tasks.registry``) or the subject
(``attnlab.inspect.protocol.Inspectable``). Read with ``ast``, every module of ``cli/`` and
``inspect/`` is checked for:

* a comparison that involves a ``model_type`` or a task's or model type's name;
* ``isinstance``/``issubclass`` against a model class or a loaded run (``LoadedModel``);
* a call of ``model_type_of`` or of an ``is_<task>``-style check (``is_translator``);
* an import of one task's package (``attnlab.tasks.translation...``): only the registry and
  the task object may be imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import attnlab.models
from attnlab.tasks.registry import TASKS

SRC = Path(__file__).resolve().parents[1] / "src" / "attnlab"
CHECKED = sorted([*(SRC / "cli").rglob("*.py"), *(SRC / "inspect").rglob("*.py")])

MODEL_CLASSES = {name for name in attnlab.models.__all__ if name[0].isupper()} | {"LoadedModel"}
NAMES = ({task.name for task in TASKS.values()}
         | {t for task in TASKS.values() for t in task.model_types} | {"seq2seq", "bert"})
TASK_WORDS = ("translat", "classif", "seq2seq", "encoder_decoder", "decoder_only")
ALLOWED_TASK_MODULES = {"attnlab.tasks.registry", "attnlab.tasks.task"}


def _mentions(node: ast.AST, words) -> bool:
    """Whether ``node`` names ``model_type`` or holds one of ``words`` as a string."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in ("model_type", "MODEL_TYPE"):
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in ("model_type", "MODEL_TYPE"):
            return True
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and (
                sub.value == "model_type" or sub.value in words):
            return True
    return False


def _called(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def branches(source: str) -> list[str]:
    """Every place in ``source`` that asks which task or model family it holds."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare) and _mentions(node, NAMES):
            found.append(f"line {line}: compares a task or model type")
        elif isinstance(node, ast.Call):
            name = _called(node)
            if name in ("isinstance", "issubclass") and len(node.args) == 2:
                classes = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")
                           for n in ast.walk(node.args[1])}
                if classes & MODEL_CLASSES:
                    found.append(f"line {line}: {name} of {sorted(classes & MODEL_CLASSES)}")
            elif name == "model_type_of" or (name.lstrip("_").startswith("is_")
                                             and any(w in name for w in TASK_WORDS)):
                found.append(f"line {line}: calls {name}()")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if (node.module.startswith("attnlab.tasks")
                    and node.module not in ALLOWED_TASK_MODULES | {"attnlab.tasks"}):
                found.append(f"line {line}: imports {node.module}")
    return found


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(SRC)))
def test_no_branch_on_a_task_or_model_type(path):
    assert branches(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("sample", [
    'if model_type_of(spec) == "seq2seq":\n    pass\n',
    'if run.config.get("model_type") != MODEL:\n    pass\n',
    'x = args.task == "translation"\n',
    "if isinstance(run.model, Seq2SeqTransformer):\n    pass\n",
    "ok = isinstance(subject, (Subject, LoadedModel))\n",
    "if _is_translator(args.model):\n    pass\n",
    "from attnlab.tasks.translation.use import evaluate_run\n",
])
def test_the_check_sees_a_branch(sample):
    assert branches(sample), sample


def test_the_check_passes_plain_code():
    assert branches("subject = open_subject(spec)\nif head is None:\n    pass\n"
                    "from attnlab.tasks.registry import open_subject\n") == []
