"""The key/value cache of incremental decoding (fairseq's ``incremental_state``).

A :class:`KVCache` keeps one attention module's projected keys and values between calls: a
self-attention cache grows by the new positions on each call; a ``static`` (cross-attention)
cache is filled from the encoder output once and reused.

Legend: ``B`` batch, ``G`` key/value heads (``H`` for multi-head attention; fewer with
grouped-query attention, which shrinks the cache by ``H/G``), ``S`` cached key positions,
``d_k``/``d_v`` per-head sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["KVCache"]


@dataclass
class KVCache:
    """The projected keys and values of one attention module, kept between decoding steps.

    Pass one to :meth:`MultiHeadAttention.forward` as ``cache=``; the module fills it in place.

    * self-attention (``static=False``): each call appends the keys/values of its new positions
      and attends over all of them; the new queries (and keys) sit at positions
      ``length .. length+L-1``, which is what rotary embeddings and ``is_causal`` use.
    * cross-attention (``static=True``): the first call projects ``key``/``value`` (the encoder
      output) and stores them; later calls reuse them and do not read ``key``/``value``.

    Attributes:
        key: ``(B, G, S, d_k)`` (rotated, with rotary embeddings), or ``None`` while empty.
        value: ``(B, G, S, d_v)``, or ``None`` while empty.
        static: keys/values computed once and reused (cross-attention).
    """

    key: Tensor | None = None
    value: Tensor | None = None
    static: bool = False

    @property
    def length(self) -> int:
        """Number of cached key positions ``S`` (0 while empty)."""
        return 0 if self.key is None else self.key.shape[2]

    def reorder(self, index: Tensor) -> None:
        """Keep the batch rows ``index`` ``(B',)``, in that order (beam search, finished rows)."""
        if self.key is not None:
            self.key = self.key.index_select(0, index)  # (B', G, S, d_k)
            self.value = self.value.index_select(0, index)  # (B', G, S, d_v)
