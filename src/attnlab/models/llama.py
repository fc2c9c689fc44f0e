"""The Llama layout (Touvron et al., 2023), a decoder-only language model on attnlab's
:class:`~attnlab.attention.MultiHeadAttention` with grouped-query attention.

Token embeddings, then ``N`` pre-norm blocks::

    x = x + Attention_GQA(RMSNorm(x))            # rotary positions on queries and keys
    x = x + W_down(SiLU(W_gate RMSNorm(x)) * W_up RMSNorm(x))   # SwiGLU (Shazeer, 2020)

a final RMSNorm and a head (tied to the embedding or not, per config). This covers Llama,
SmolLM and other checkpoints of the ``"llama"`` model type. The numbers match Hugging Face's
``LlamaForCausalLM``; weights load through :mod:`attnlab.io.families`.

Legend: ``B`` batch, ``L`` new positions, ``D`` hidden size, ``H`` query heads, ``G`` key/value
heads, ``d_k`` head size, ``F`` intermediate size, ``N`` layers, ``V`` vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.attention.multihead import KVCache, MultiHeadAttention
from attnlab.errors import InputError
from attnlab.models.causal_lm import CausalLM

__all__ = ["LlamaBlock", "LlamaConfig", "LlamaForCausalLM", "LlamaRotary", "RMSNorm"]


@dataclass
class LlamaConfig:
    """The architecture of a Llama-layout model; field names follow its ``config.json``."""

    vocab_size: int = 32000  # V
    hidden_size: int = 4096  # D
    intermediate_size: int = 11008  # F, the SwiGLU inner size
    num_hidden_layers: int = 32  # N
    num_attention_heads: int = 32  # H, query heads
    num_key_value_heads: int | None = None  # G, key/value heads dividing H; None = H
    head_dim: int | None = None  # d_k; None = D / H
    hidden_act: str = "silu"  # only SiLU (SwiGLU)
    max_position_embeddings: int = 2048  # longest input (cached positions included)
    rms_norm_eps: float = 1e-6  # RMSNorm epsilon
    rope_theta: float = 10000.0  # the base of the rotary angles
    attention_bias: bool = False  # biases on q, k, v, o projections
    mlp_bias: bool = False  # biases on the SwiGLU projections
    tie_word_embeddings: bool = False  # the head is the token embedding
    bos_token_id: int | None = 1  # id of the first token
    eos_token_id: int | None = 2  # where greedy decoding stops

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim",
                     "max_position_embeddings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"LlamaConfig.{name} must be an integer >= 1, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise InputError(f"LlamaConfig.num_key_value_heads ({self.num_key_value_heads}) "
                             f"must divide num_attention_heads ({self.num_attention_heads})")
        if self.head_dim % 2 != 0:
            raise InputError(f"LlamaConfig.head_dim must be even (rotary pairs), got "
                             f"{self.head_dim}")
        if self.hidden_act != "silu":
            raise InputError(f"LlamaConfig.hidden_act must be 'silu', got {self.hidden_act!r}")
        if not self.rope_theta > 1.0:
            raise InputError(f"LlamaConfig.rope_theta must be > 1, got {self.rope_theta}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LlamaConfig:
        """Read a Llama ``config.json`` dict (``rope_theta`` at the top or, as transformers 5
        writes it, in ``rope_parameters``); only the default rotary type is supported."""
        data = dict(data)
        rope = data.get("rope_parameters") or data.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise InputError(f"unsupported Llama config: rope_type={rope_type!r} (attnlab "
                             f"supports only the default rotary positions)")
        if "rope_theta" in rope:
            data["rope_theta"] = rope["rope_theta"]
        if data.get("pretraining_tp", 1) != 1:
            raise InputError(f"unsupported Llama config: pretraining_tp={data['pretraining_tp']}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x²) + eps) · w`` (Zhang & Sennrich, 2019), computed in at least float32
    (Hugging Face upcasts half precision the same way)."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))  # (..., D)
        wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., D)
        return self.weight * wide.to(x.dtype)


class LlamaRotary(nn.Module):
    """Rotary positions as Llama computes them: angles ``position · θ_i`` in float32 (as Hugging
    Face does at every precision), ``θ_i = theta^(-2i/d_k)``, dims ``i`` and ``i + d_k/2``
    paired (:class:`~attnlab.attention.RotaryEmbedding`'s layout).

    One instance serves every layer. Rows of a batch can sit at different positions (left
    padding): the model sets :attr:`cos_sin`, the angles of its ``position_ids`` ``(B|1, L)``,
    once for the duration of a forward (every layer reads them); without them the rows sit at
    ``offset .. offset+L-1``.
    """

    def __init__(self, d_k: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, d_k, 2, dtype=torch.float32) / d_k))
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (d_k/2,)
        self.cos_sin: tuple[Tensor, Tensor] | None = None

    def angles(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos and sin ``(B|1, 1, L, d_k)``, in float32, of rows at ``positions`` ``(B|1, L)``."""
        angles = positions[..., None].float() * self.inv_freq.float()  # (B|1, L, d_k/2)
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # (B|1, 1, L, d_k)
        return angles.cos(), angles.sin()

    @staticmethod
    def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotate ``x`` ``(B, H, L, d_k)`` by the angles' ``cos`` and ``sin``."""
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)  # (B, H, L, d_k/2) each
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin  # (B, H, L, d_k)

    def forward(self, q: Tensor, k: Tensor, *, q_offset: int = 0, k_offset: int = 0
                ) -> tuple[Tensor, Tensor]:
        """Rotate queries ``(B, H, L, d_k)`` and keys ``(B, G, L, d_k)`` of the same positions."""
        cos_sin = self.cos_sin
        if cos_sin is None:
            cos_sin = self.angles(
                torch.arange(q_offset, q_offset + q.shape[2], device=q.device)[None])
        return self.rotate(q, *cos_sin), self.rotate(k, *cos_sin)


class SwiGLU(nn.Module):
    """``W_down(SiLU(W_gate x) * W_up x)``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        D, F_, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(D, F_, bias=bias)
        self.up_proj = nn.Linear(D, F_, bias=bias)
        self.down_proj = nn.Linear(F_, D, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, L, D)


class LlamaBlock(nn.Module):
    """One pre-norm block: grouped-query causal self-attention with rotary positions, then the
    SwiGLU feed-forward, each added back."""

    def __init__(self, config: LlamaConfig, rotary: LlamaRotary) -> None:
        super().__init__()
        D = config.hidden_size
        self.attn_norm = RMSNorm(D, config.rms_norm_eps)
        self.attn = MultiHeadAttention(D, config.num_attention_heads, d_k=config.head_dim,
                                       d_v=config.head_dim, bias=config.attention_bias,
                                       rotary=rotary, n_kv_heads=config.num_key_value_heads)
        self.ffn_norm = RMSNorm(D, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: Tensor, attention_mask: Tensor | None,
                cache: KVCache | None = None) -> Tensor:
        """``x`` ``(B, L, D)``; ``attention_mask`` ``(B, S)`` (1 = token) or None."""
        x = x + self.attn(self.attn_norm(x), attention_mask=attention_mask, is_causal=True,
                          cache=cache).output  # (B, L, D)
        return x + self.mlp(self.ffn_norm(x))  # (B, L, D)


class LlamaForCausalLM(CausalLM):
    """A Llama-layout model with its language-model head: next-token logits at every position.

    Args:
        config: the architecture, see :class:`LlamaConfig`.

    Shape: as :class:`~attnlab.models.gpt2.GPT2LMHeadModel` (``input_ids`` ``(B, L)``,
    ``attention_mask`` ``(B, S)`` over cached and new positions, ``position_ids`` ``(B, L)``
    default ``past .. past+L-1``, ``cache`` from :meth:`new_cache`) -> logits ``(B, L, V)``.
    The cache holds ``G`` key/value heads per layer, ``H/G`` times less than ``H``.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.rotary = LlamaRotary(config.head_dim, config.rope_theta)
        self.layers = nn.ModuleList(LlamaBlock(config, self.rotary)
                                    for _ in range(config.num_hidden_layers))
        self.final_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = (None if config.tie_word_embeddings
                        else nn.Linear(config.hidden_size, config.vocab_size, bias=False))

    @property
    def max_positions(self) -> int:
        """The longest sequence, cached positions included."""
        return self.config.max_position_embeddings

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (the Hugging Face name): what attributions hook."""
        return self.embed_tokens

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Token vectors ``(B, L, D)``; positions enter inside attention (rotary)."""
        return self.embed_tokens(input_ids)  # (B, L, D)
