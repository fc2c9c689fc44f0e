"""See what the heads do: capture attention, analyse it, draw it, serve it.

Everything here works on any module built from :class:`~attnlab.attention.MultiHeadAttention`;
layer and head counts come from the modules and tensors, never from a model type.
"""

from attnlab.inspect.capture import AttentionCapture, attention_modules, capture
from attnlab.inspect.gates import head_gates
from attnlab.inspect.importance import HeadImportance, head_importance
from attnlab.inspect.pruning import kept_heads, prune_heads, restore_pruning
from attnlab.inspect.rollout import Rollout, attention_rollout
from attnlab.inspect.statistics import HeadStats, head_statistics

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
]
