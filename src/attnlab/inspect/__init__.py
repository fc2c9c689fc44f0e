"""See what the heads do: capture attention, analyse it, draw it, serve it.

Everything here works on any module built from :class:`~attnlab.attention.MultiHeadAttention`;
layer and head counts come from the modules and tensors, never from a model type.
"""

from attnlab.inspect.capture import AttentionCapture, attention_modules, capture
from attnlab.inspect.gates import head_gates

__all__ = ["AttentionCapture", "attention_modules", "capture", "head_gates"]
