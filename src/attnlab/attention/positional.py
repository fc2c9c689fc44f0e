"""Positional information for attention, which by itself is blind to word order.

* :class:`SinusoidalPositionalEncoding` — fixed sines and cosines added to the input
  (Vaswani et al., 2017, "Attention Is All You Need", §3.5).
* :class:`LearnedPositionalEmbedding` — a trained vector per position, added to the input
  (as in BERT and GPT).
* :class:`RotaryEmbedding` — rotates queries and keys by an angle proportional to their position,
  so that ``q_m · k_n`` depends only on ``m - n`` (Su et al., 2021, "RoFormer"). Plugs into
  :class:`~attnlab.attention.MultiHeadAttention` as its ``rotary`` module.
* :func:`alibi_slopes`, :func:`alibi_bias`, :class:`ALiBi` — a per-head linear penalty on the
  query–key distance, added to the scores as ``attn_mask`` (Press et al., 2022, "Train Short,
  Test Long").

Legend: ``B`` batch, ``T`` sequence length, ``D`` ``d_model``, ``H`` heads, ``L`` query length,
``S`` key length, ``d_k`` query/key dim per head.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "ALiBi",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "alibi_bias",
    "alibi_slopes",
]


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_sequence(x: Tensor, d_model: int, max_len: int, offset: int) -> int:
    """Check ``x`` is ``(B, T, D)`` (or ``(T, D)``) and fits the table; return ``T``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (2, 3) or x.shape[-1] != d_model:
        raise ValueError(f"x must have shape (B, T, {d_model}) or (T, {d_model}), "
                         f"got {tuple(x.shape)}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
    T = x.shape[-2]
    if offset + T > max_len:
        raise ValueError(f"positions {offset}..{offset + T - 1} exceed max_len={max_len} "
                         f"(sequence length T={T}, offset={offset}); build with a larger max_len")
    return T


class SinusoidalPositionalEncoding(nn.Module):
    r"""Adds ``PE[pos, 2i] = sin(pos / 10000^(2i/D))``, ``PE[pos, 2i+1] = cos(pos / 10000^(2i/D))``.

    The table is computed once in float64 and kept as a non-persistent buffer (it is not saved
    in checkpoints: it is a function of ``d_model`` and ``max_len``). An odd ``d_model`` has one
    more sine column than cosine columns.

    Args:
        d_model: size ``D`` of the vectors.
        max_len: longest sequence (plus offset) accepted; default ``5000``.
        dropout: dropout applied after the addition (training only), as in the paper.
        scale: multiplies the table (its RMS is ``1/sqrt(2)``); match it to the size of the
            embeddings it is added to, or position drowns out the token. Default ``1``.

    Shape:
        x ``(B, T, D)`` or ``(T, D)`` -> same shape.

    Example::

        >>> pe = SinusoidalPositionalEncoding(16, max_len=128)
        >>> pe(torch.zeros(2, 10, 16)).shape
        torch.Size([2, 10, 16])
    """

    def __init__(
        self, d_model: int, max_len: int = 5000, dropout: float = 0.0, scale: float = 1.0
    ) -> None:
        super().__init__()
        _check_positive_int("d_model", d_model)
        _check_positive_int("max_len", max_len)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.d_model, self.max_len, self.scale = d_model, max_len, scale
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", scale * sinusoid_table(max_len, d_model), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """``x + PE[offset : offset + T]``; ``offset`` is the position of ``x``'s first row."""
        T = _check_sequence(x, self.d_model, self.max_len, offset)
        return self.dropout(x + self.pe[offset:offset + T].to(x.dtype))  # (B, T, D)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}, scale={self.scale}"


def sinusoid_table(max_len: int, d_model: int) -> Tensor:
    """The ``(max_len, d_model)`` sinusoid table in the default dtype (computed in float64)."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(D/2),)
    angles = pos / 10000.0 ** (two_i / d_model)  # (T, ceil(D/2))
    table = torch.empty(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)  # (T, ceil(D/2))
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])  # (T, floor(D/2))
    return table.to(torch.get_default_dtype())


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained vector per position (``nn.Embedding`` over ``0 .. max_len-1``).

    Initialised from ``N(0, 0.02²)`` as in BERT, so positions do not drown the token embeddings.

    Args:
        max_len: number of positions.
        d_model: size ``D`` of the vectors.

    Shape:
        x ``(B, T, D)`` or ``(T, D)`` -> same shape.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        _check_positive_int("max_len", max_len)
        _check_positive_int("d_model", d_model)
        self.max_len, self.d_model = max_len, d_model
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """``x + E[offset : offset + T]``."""
        T = _check_sequence(x, self.d_model, self.max_len, offset)
        positions = torch.arange(offset, offset + T, device=x.device)  # (T,)
        return x + self.embedding(positions).to(x.dtype)  # (B, T, D)


class RotaryEmbedding(nn.Module):
    r"""Rotary position embedding (RoPE) of queries and keys.

    Dimension ``i`` and ``i + d_k/2`` of a vector at position ``m`` form a plane that is rotated
    by the angle ``m·θ_i``, ``θ_i = base^(-2i/d_k)``. This is the paper's rotation with its pairs
    of dimensions ``(2i, 2i+1)`` permuted to ``(i, i + d_k/2)`` (the GPT-NeoX / LLaMA layout);
    the projections before it learn either layout equally. Rotations preserve norms, and
    ``rot(q, m) · rot(k, n) = q · rot(k, n - m)``: the score depends only on ``m - n``.

    Use it as ``MultiHeadAttention(..., rotary=RotaryEmbedding(d_k))``.

    Args:
        d_k: size of each query/key head; must be even.
        base: ``base`` of the angles; default ``10000.0``.
        max_len: longest position (plus offset) accepted; the cos/sin tables have this many rows.

    Shape:
        q ``(B, H, L, d_k)``, k ``(B, H, S, d_k)`` -> the same shapes. Queries sit at positions
        ``q_offset .. q_offset+L-1`` and keys at ``k_offset .. k_offset+S-1`` (both 0 by default).
    """

    def __init__(self, d_k: int, base: float = 10000.0, max_len: int = 4096) -> None:
        super().__init__()
        _check_positive_int("d_k", d_k)
        _check_positive_int("max_len", max_len)
        if d_k % 2 != 0:
            raise ValueError(f"d_k must be even for rotary embeddings (dims are rotated in "
                             f"pairs), got d_k={d_k}")
        if not base > 1.0:
            raise ValueError(f"base must be > 1, got {base}")
        self.d_k, self.base, self.max_len = d_k, float(base), max_len
        inv_freq = base ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)  # (d_k/2,)
        angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq  # (T, d_k/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, d_k): dim i and i + d_k/2 share θ_i
        dtype = torch.get_default_dtype()
        self.register_buffer("cos", angles.cos().to(dtype), persistent=False)
        self.register_buffer("sin", angles.sin().to(dtype), persistent=False)

    def rotate(self, x: Tensor, offset: int = 0) -> Tensor:
        """Rotate ``x`` ``(..., T, d_k)`` whose rows sit at positions ``offset .. offset+T-1``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2 or x.shape[-1] != self.d_k:
            raise ValueError(f"expected shape (..., T, d_k={self.d_k}), got {tuple(x.shape)}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
        T = x.shape[-2]
        if offset + T > self.max_len:
            raise ValueError(f"positions {offset}..{offset + T - 1} exceed max_len="
                             f"{self.max_len}; build RotaryEmbedding with a larger max_len")
        cos = self.cos[offset:offset + T].to(x.dtype)  # (T, d_k)
        sin = self.sin[offset:offset + T].to(x.dtype)  # (T, d_k)
        x1, x2 = x.chunk(2, dim=-1)  # (..., T, d_k/2) each
        rotated_half = torch.cat([-x2, x1], dim=-1)  # (..., T, d_k): the plane turned by 90°
        return x * cos + rotated_half * sin  # (..., T, d_k)

    def forward(
        self, q: Tensor, k: Tensor, *, q_offset: int = 0, k_offset: int = 0
    ) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys by their positions; returns ``(q_rot, k_rot)``."""
        return self.rotate(q, q_offset), self.rotate(k, k_offset)

    def extra_repr(self) -> str:
        return f"d_k={self.d_k}, base={self.base}, max_len={self.max_len}"


def alibi_slopes(n_heads: int) -> Tensor:
    """ALiBi's per-head slopes ``(H,)``, a geometric sequence starting at ``2^(-8/H)``.

    For 8 heads: ``1/2, 1/4, ..., 1/256``. When ``H`` is not a power of 2, the slopes of the
    closest power of 2 below, ``n``, are followed by every other slope of ``2n`` heads (the
    rule of the paper's reference implementation).
    """
    _check_positive_int("n_heads", n_heads)

    def power_of_2(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_2(closest)
    if closest < n_heads:
        slopes += power_of_2(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.get_default_dtype())


def alibi_bias(
    n_heads: int | Tensor,
    query_len: int,
    key_len: int | None = None,
    *,
    causal: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """The ALiBi bias ``-slope_h · |i - j|`` as a floating additive mask ``(H, L, S)``.

    Pass it as ``attn_mask`` to :func:`scaled_dot_product_attention` or
    :class:`MultiHeadAttention`; it broadcasts over the batch. Query ``i`` and key ``j`` count
    from 0 (top-left aligned, as :func:`causal_mask`). With ``causal=True`` keys ``j > i`` get
    ``-inf``.

    Args:
        n_heads: the number of heads ``H`` (slopes from :func:`alibi_slopes`) or the slopes
            ``(H,)`` themselves (e.g. trained ones; the bias is differentiable in them).
        query_len: ``L``.
        key_len: ``S``; default ``L``.
        causal: also block the future.
        device, dtype: of the result; default the slopes' (or the default dtype).
    """
    slopes = n_heads if isinstance(n_heads, Tensor) else alibi_slopes(n_heads)
    if slopes.dim() != 1 or not slopes.is_floating_point():
        raise ValueError(f"slopes must be a 1-D floating tensor (H,), got shape "
                         f"{tuple(slopes.shape)} and dtype {slopes.dtype}")
    key_len = query_len if key_len is None else key_len
    _check_positive_int("query_len", query_len)
    _check_positive_int("key_len", key_len)
    slopes = slopes.to(device=device if device is not None else slopes.device,
                       dtype=dtype if dtype is not None else slopes.dtype)
    i = torch.arange(query_len, device=slopes.device)[:, None]  # (L, 1)
    j = torch.arange(key_len, device=slopes.device)[None, :]  # (1, S)
    distance = (i - j).abs().to(slopes.dtype)  # (L, S)
    bias = -slopes[:, None, None] * distance  # (H, 1, 1) x (L, S) -> (H, L, S)
    if causal:
        bias = bias.masked_fill(j > i, float("-inf"))  # (H, L, S)
    return bias


class ALiBi(nn.Module):
    """ALiBi as a module: holds the slopes (fixed, or trained with ``learn_slopes=True``) and
    returns the ``(H, L, S)`` additive bias for the given lengths.

    Args:
        n_heads: number of heads ``H``.
        causal: block keys after the query.
        learn_slopes: make the slopes a parameter (initialised from :func:`alibi_slopes`).

    Example::

        >>> mha, alibi = MultiHeadAttention(64, 8), ALiBi(8)
        >>> x = torch.randn(2, 10, 64)
        >>> out, _ = mha(x, attn_mask=alibi(10))
    """

    def __init__(self, n_heads: int, *, causal: bool = False, learn_slopes: bool = False) -> None:
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        slopes = alibi_slopes(n_heads)
        if learn_slopes:
            self.slopes = nn.Parameter(slopes)
        else:
            self.register_buffer("slopes", slopes, persistent=False)

    def forward(self, query_len: int, key_len: int | None = None) -> Tensor:
        """The bias ``(H, L, S)``, on the slopes' device and dtype."""
        return alibi_bias(self.slopes, query_len, key_len, causal=self.causal)

    def extra_repr(self) -> str:
        learned = isinstance(self.slopes, nn.Parameter)
        return f"n_heads={self.n_heads}, causal={self.causal}, learn_slopes={learned}"
