"""See what the heads do: capture attention, analyse it, draw it, serve it.

Everything here works on any module built from :class:`~attnlab.attention.MultiHeadAttention`;
layer and head counts come from the modules and tensors, never from a model type.

* capture: :func:`capture`, :func:`head_gates`
* analyses: :func:`attention_rollout`, :func:`head_statistics`, :func:`head_importance`,
  :func:`prune_heads`, :func:`head_report`
* what a tool needs of a model: :class:`Inspectable` (an encoder's is :class:`Subject`, from a
  run folder or a pretrained name by :func:`load_subject`; a run of any task opens with
  ``attnlab.tasks.open_subject``)
* one head step by step on real tokens: :func:`explain_head`
* which tokens a decision depends on: :func:`attribute` (each of :data:`METHODS`, one
  :class:`Attribution` per input) over a subject's ``decisions(text)`` (:class:`Decisions`)
* pictures: :func:`heatmap`, :func:`head_grid`, :func:`relevance_plot` (matplotlib)
* HTML explorer: :func:`attention_view` (or any subject's ``look(texts).view()``); live app:
  :func:`create_app`

Pictures, HTML, reports and the app load on first use, so ``import attnlab`` stays light.
"""

from importlib import import_module

from attnlab.inspect.capture import AttentionCapture, attention_modules, capture
from attnlab.inspect.gates import head_gates
from attnlab.inspect.importance import HeadImportance, head_importance
from attnlab.inspect.pruning import kept_heads, prune_heads, restore_pruning
from attnlab.inspect.rollout import Rollout, attention_rollout
from attnlab.inspect.statistics import HeadStats, head_statistics

_LAZY = {
    "AttentionView": "html", "attention_view": "subject",
    "Subject": "subject", "load_subject": "subject", "save_pruned_run": "subject",
    "HeadReport": "head_report", "head_report": "head_report", "write_report": "head_report",
    "heatmap": "pictures", "head_grid": "pictures", "relevance_plot": "pictures",
    "create_app": "app",
    "HeadExplanation": "neuron", "explain_head": "neuron",
    "attribute": "attribution", "attribute_decisions": "attribution",
    "Attribution": "attribution", "Decisions": "attribution", "METHODS": "attribution",
    "Inspectable": "protocol", "HeadPass": "protocol", "Look": "protocol",
}

__all__ = [
    "AttentionCapture",
    "HeadImportance",
    "HeadStats",
    "Rollout",
    "attention_modules",
    "attention_rollout",
    "capture",
    "head_gates",
    "head_importance",
    "head_statistics",
    "kept_heads",
    "prune_heads",
    "restore_pruning",
    *sorted(_LAZY),
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"attnlab.inspect.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'attnlab.inspect' has no attribute {name!r}")
