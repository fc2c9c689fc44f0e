"""GPT-2 (Radford et al., 2019), a decoder-only language model on attnlab's
:class:`~attnlab.attention.MultiHeadAttention`.

Token + learned position embeddings, then ``N`` pre-norm blocks::

    x = x + Dropout(CausalSelfAttention(LayerNorm(x)))
    x = x + Dropout(W_2 GELU_tanh(W_1 LayerNorm(x)))

a final LayerNorm and a head tied to the token embedding. The numbers match Hugging Face's
``GPT2LMHeadModel``; weights load from its checkpoints through :mod:`attnlab.io.families`
(its ``Conv1D`` weights are stored ``(in, out)`` and are transposed there).

Legend: ``B`` batch, ``L`` new positions, ``S`` key positions (cached + new), ``D`` ``n_embd``,
``H`` heads, ``F`` inner size, ``N`` layers, ``V`` vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.attention.multihead import KVCache, MultiHeadAttention
from attnlab.errors import InputError
from attnlab.models.causal_lm import CausalLM

__all__ = ["GPT2Block", "GPT2Config", "GPT2LMHeadModel"]

# Hugging Face's activation names -> the function; "gelu_new" is GPT-2's tanh approximation.
_ACTIVATIONS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}


@dataclass
class GPT2Config:
    """The architecture of a GPT-2; field names follow GPT-2's ``config.json``."""

    vocab_size: int = 50257  # V, rows of the token embedding and of the head
    n_positions: int = 1024  # longest input (cached positions included)
    n_embd: int = 768  # D, the model width
    n_layer: int = 12  # N, blocks
    n_head: int = 12  # H; D must be divisible by H
    n_inner: int | None = None  # F, feed-forward inner size; None = 4·D
    activation_function: str = "gelu_new"  # a key of _ACTIVATIONS
    layer_norm_epsilon: float = 1e-5  # LayerNorm epsilon
    resid_pdrop: float = 0.1  # dropout on sub-layer outputs
    embd_pdrop: float = 0.1  # dropout on the embeddings
    attn_pdrop: float = 0.1  # dropout on attention weights
    bos_token_id: int | None = 50256  # id of <|endoftext|> (also the end)
    eos_token_id: int | None = 50256  # where greedy decoding stops
    tie_word_embeddings: bool = True  # the head is the token embedding (GPT-2's choice)

    # config.json keys that change the computation, with the only value we support.
    _REQUIRED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                 "add_cross_attention": False}

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"GPT2Config.{name} must be an integer >= 1, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise InputError(f"GPT2Config.n_embd ({self.n_embd}) must be divisible by n_head "
                             f"({self.n_head})")
        if self.activation_function not in _ACTIVATIONS:
            raise InputError(f"GPT2Config.activation_function must be one of "
                             f"{sorted(_ACTIVATIONS)}, got {self.activation_function!r}")
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"GPT2Config.{name} must be in [0, 1), got "
                                 f"{getattr(self, name)}")

    @property
    def inner_size(self) -> int:
        """``F``: ``n_inner``, or ``4·D`` when unset."""
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPT2Config:
        """Read the fields above from a GPT-2 ``config.json`` dict; other keys are ignored."""
        for key, supported in cls._REQUIRED.items():
            if key in data and data[key] != supported:
                raise InputError(f"unsupported GPT-2 config: {key}={data[key]!r} (attnlab "
                                 f"supports only {key}={supported!r})")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class GPT2Block(nn.Module):
    """One pre-norm block: causal self-attention, then the GELU feed-forward, each added back."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        D, eps = config.n_embd, config.layer_norm_epsilon
        self.attn_norm = nn.LayerNorm(D, eps=eps)
        self.attn = MultiHeadAttention(D, config.n_head, dropout=config.attn_pdrop)
        self.ffn_norm = nn.LayerNorm(D, eps=eps)
        self.ffn_in = nn.Linear(D, config.inner_size)
        self.ffn_out = nn.Linear(config.inner_size, D)
        self.activation = _ACTIVATIONS[config.activation_function]
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: Tensor, attention_mask: Tensor | None,
                cache: KVCache | None = None) -> Tensor:
        """``x`` ``(B, L, D)``; ``attention_mask`` ``(B, S)`` (1 = token) or None."""
        attended = self.attn(self.attn_norm(x), attention_mask=attention_mask, is_causal=True,
                             cache=cache).output  # (B, L, D)
        x = x + self.dropout(attended)
        hidden = self.activation(self.ffn_in(self.ffn_norm(x)))  # (B, L, F)
        return x + self.dropout(self.ffn_out(hidden))  # (B, L, D)


class GPT2LMHeadModel(CausalLM):
    """GPT-2 with its language-model head: next-token logits at every position.

    Args:
        config: the architecture, see :class:`GPT2Config`.

    Shape:
        - input_ids ``(B, L)`` token ids.
        - attention_mask ``(B, S)``: ``1`` = token, ``0`` = padding (Hugging Face), over the
          cached and the new positions; padding may be on either side.
        - position_ids ``(B, L)``: the position of each new token; default
          ``past .. past+L-1`` for every row, as Hugging Face's forward (its ``generate`` counts
          positions from the first real token instead: ``attention_mask.cumsum(-1) - 1``,
          what :mod:`attnlab.models.causal_generation` passes).
        - cache: a :class:`~attnlab.models.causal_lm.CausalCache` from :meth:`new_cache`,
          filled in place; or ``None``.
        - output: logits ``(B, L, V)``.

    Attention runs on the fused kernel unless a hook asks for weights
    (:func:`attnlab.inspect.capture`). A query at a padded position that sees only padding
    gets a zero attention output (Hugging Face gives it a uniform one); real tokens are not
    affected either way.

    Example::

        >>> model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4))
        >>> model(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 100])
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.dropout = nn.Dropout(config.embd_pdrop)
        self.layers = nn.ModuleList(GPT2Block(config) for _ in range(config.n_layer))
        self.final_norm = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.lm_head = (None if config.tie_word_embeddings
                        else nn.Linear(config.n_embd, config.vocab_size, bias=False))

    @property
    def max_positions(self) -> int:
        """The longest sequence, cached positions included."""
        return self.config.n_positions

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (the Hugging Face name): what attributions hook."""
        return self.wte

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Token plus learned position vectors, dropped out ``(B, L, D)``."""
        return self.dropout(self.wte(input_ids) + self.wpe(position_ids))  # (B, L, D)
