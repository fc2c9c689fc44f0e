"""Multi-head attention: project, split into heads, attend per head, concatenate, project back.

With a :class:`~attnlab.attention.cache.KVCache` it decodes incrementally (see there). With
``n_kv_heads=G < H`` it is grouped-query attention (Ainslie et al., 2023; ``G = 1``: multi-query,
Shazeer, 2019): ``G`` key/value heads, each shared by ``H/G`` query heads.

Legend: ``B`` batch, ``H`` (query) heads, ``G`` key/value heads, ``L`` query length, ``S`` key
length, ``D`` ``d_model``, ``d_k`` query/key dim per head, ``d_v`` value dim per head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.attention.cache import KVCache
from attnlab.attention.functional import AttentionOutput, scaled_dot_product_attention
from attnlab.attention.hooks import HookPoint
from attnlab.attention.masks import causal_mask, combine_masks, padding_mask
from attnlab.attention.multihead_checks import check_cache, check_inputs

__all__ = ["KVCache", "MultiHeadAttention"]  # KVCache re-exported: it is part of forward()


class MultiHeadAttention(nn.Module):
    r"""Multi-head attention (Vaswani et al., 2017), batch first.

    ``MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W_o`` with
    ``head_i = Attention(Q W_q^i, K W_k^i, V W_v^i)``.

    Args:
        d_model: size ``D`` of the query input and of the output.
        n_heads: number of heads ``H``.
        d_k: query/key size per head; default ``d_model // n_heads``.
        d_v: value size per head; default ``d_k``'s default.
        kdim: size of the key input; default ``d_model``.
        vdim: size of the value input; default ``kdim``.
        bias: add a bias to the four projections.
        dropout: dropout on the attention weights (training only).
        rotary: optional module applied to the split queries and keys,
            ``rotary(q (B, H, L, d_k), k (B, G, S, d_k)) -> (q, k)`` (e.g. rotary embeddings).
        n_kv_heads: number of key/value heads ``G``, dividing ``H``; default ``H`` (multi-head
            attention). Query head ``h`` reads key/value head ``h // (H/G)`` (Llama's
            ``repeat_kv``); ``k_proj``/``v_proj`` have ``G·d_k``/``G·d_v`` outputs and a cache
            holds ``G`` heads. ``G = 1`` is multi-query attention.

    Shape:
        - query ``(B, L, D)``; key ``(B, S, kdim)``; value ``(B, S, vdim)``. 2-D inputs
          ``(L, D)`` are treated as a batch of one.
        - attention_mask ``(B, S)``: padding, ``1`` = attend, ``0`` = padding (Hugging Face).
        - attn_mask: broadcastable to ``(B, H, L, S)``; boolean ``True`` = may attend (the
          convention of ``scaled_dot_product_attention``, the **opposite** of
          ``torch.nn.MultiheadAttention``'s boolean mask) or floating, added to the scores.
        - head_mask ``(H,)`` or ``(B, H)``: multiplies each head's output (1 keeps, 0 removes).
        - output ``(B, L, D)``; weights ``(B, H, L, S)``, or ``(B, L, S)`` with
          ``average_weights=True``, or ``None`` unless ``need_weights=True``.
        - cache: optional :class:`KVCache`. With a cache, ``S`` counts the cached keys too:
          ``attention_mask`` and ``attn_mask`` cover all of them (e.g. ``(B, H, 1, S)`` weights
          on one decoding step), and ``is_causal`` lets the query at position ``length + i``
          see keys ``j <= length + i``.

    Without ``need_weights`` the fused kernel runs; with it, the explicit path of
    :func:`scaled_dot_product_attention` runs, which writes ``B·H·L·S`` weights and is slower.
    With ``G < H`` the fused kernel reads the shared key/value heads directly (``enable_gqa``);
    the explicit path repeats each for its query heads, and its weights are still per query head.

    Hook points (:class:`~attnlab.attention.hooks.HookPoint`), called only when hooked:
    ``hook_pattern`` sees the weights of the heads its observers ask for (only those leave the
    fused kernel); ``hook_head_output`` sees the per-head outputs ``(B, H, L, d_v)`` after
    ``head_mask``, before concatenation, with ``query=`` as keyword context, and a hook
    returning a tensor replaces them (head gates). ``hook_query``, ``hook_key`` and
    ``hook_value`` see the per-head queries ``(B, H, L, d_k)`` (after rotary positions, where
    used), keys ``(B, G, S, d_k)`` and values ``(B, G, S, d_v)`` (the cached ones included;
    :meth:`kv_head` maps a query head to its key/value head),
    with ``mask=`` as keyword context: what the scaled scores of every head get (padding,
    ``attn_mask`` and causality combined; boolean ``True`` = may attend, or additive; ``None``
    = every key); they observe only (a hook's result is not used).

    Example::

        >>> mha = MultiHeadAttention(64, 8)
        >>> out, w = mha(torch.randn(4, 10, 64), need_weights=True)
        >>> out.shape, w.shape
        (torch.Size([4, 10, 64]), torch.Size([4, 8, 10, 10]))
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        d_k: int | None = None,
        d_v: int | None = None,
        kdim: int | None = None,
        vdim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        rotary: nn.Module | None = None,
        n_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        for name, size in (("d_model", d_model), ("n_heads", n_heads), ("d_k", d_k),
                           ("d_v", d_v), ("kdim", kdim), ("vdim", vdim),
                           ("n_kv_heads", n_kv_heads)):
            optional = name not in ("d_model", "n_heads")
            if not (optional and size is None) and (
                    isinstance(size, bool) or not isinstance(size, int) or size < 1):
                raise ValueError(f"{name} must be an integer >= 1"
                                 f"{' or None' if optional else ''}, got {size!r}")
        if (d_k is None or d_v is None) and d_model % n_heads != 0:
            raise ValueError(
                f"d_model must be divisible by n_heads when d_k/d_v are not given: "
                f"d_model={d_model}, n_heads={n_heads} (d_model % n_heads = {d_model % n_heads})"
            )
        if n_kv_heads is not None and n_heads % n_kv_heads != 0:
            raise ValueError(f"n_kv_heads must divide n_heads={n_heads} (each key/value head "
                             f"serves n_heads / n_kv_heads query heads), got {n_kv_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads  # G
        self.d_k = d_model // n_heads if d_k is None else d_k
        self.d_v = d_model // n_heads if d_v is None else d_v
        self.kdim = d_model if kdim is None else kdim
        self.vdim = self.kdim if vdim is None else vdim
        for name in ("d_k", "d_v", "kdim", "vdim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, n_heads * self.d_k, bias=bias)
        self.k_proj = nn.Linear(self.kdim, self.n_kv_heads * self.d_k, bias=bias)
        self.v_proj = nn.Linear(self.vdim, self.n_kv_heads * self.d_v, bias=bias)
        self.out_proj = nn.Linear(n_heads * self.d_v, d_model, bias=bias)
        self.rotary = rotary
        self.hook_pattern = HookPoint()  # the weights (B, H|h, L, S), computed when hooked
        self.hook_head_output = HookPoint()  # per-head outputs (B, H, L, d_v); hooks may replace
        self.hook_query = HookPoint()  # per-head queries (B, H, L, d_k), with mask= context
        self.hook_key = HookPoint()  # per-head keys (B, G, S, d_k), with mask= context
        self.hook_value = HookPoint()  # per-head values (B, G, S, d_v), with mask= context
        self.reset_parameters()

    @property
    def grouped(self) -> bool:
        """Whether key/value heads are shared (``n_kv_heads < n_heads``)."""
        return self.n_kv_heads != self.n_heads

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` reads: ``head // (H/G)``."""
        return head // (self.n_heads // self.n_kv_heads)

    def reset_parameters(self) -> None:
        """Xavier-uniform projections and zero biases, as ``torch.nn.MultiheadAttention``."""
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def prune_heads(self, heads) -> None:
        """Remove ``heads`` for good: the projections shrink to the remaining heads.

        The output equals that of the unpruned module with ``head_mask`` 0 on those heads.

        Args:
            heads: indices in the current numbering, ``0 <= h < n_heads``; at least one head
                must remain. The remaining heads keep their order and are renumbered from 0.
        """
        heads = sorted(set(heads))
        if any(not isinstance(h, int) or not 0 <= h < self.n_heads for h in heads):
            raise ValueError(f"heads must be integers in [0, {self.n_heads}), got {heads}")
        if len(heads) == self.n_heads:
            raise ValueError(f"cannot prune all {self.n_heads} heads; at least one must remain")
        if not heads:
            return
        if self.grouped:  # removing a query head would leave groups of unequal size
            raise ValueError(f"cannot prune heads of grouped-query attention (n_kv_heads="
                             f"{self.n_kv_heads} < n_heads={self.n_heads}): each key/value head "
                             f"is shared by {self.n_heads // self.n_kv_heads} query heads; use "
                             f"head_mask to silence heads instead")
        keep = [h for h in range(self.n_heads) if h not in heads]
        # rows of the kept heads in the projections' outputs (head-major, as in forward)
        rows_qk = torch.arange(self.n_heads * self.d_k).view(self.n_heads, self.d_k)  # (H, d_k)
        rows_v = torch.arange(self.n_heads * self.d_v).view(self.n_heads, self.d_v)  # (H, d_v)
        rows_qk, rows_v = rows_qk[keep].flatten(), rows_v[keep].flatten()  # (h*d_k,), (h*d_v,)

        def shrink(proj: nn.Linear, index: Tensor, dim: int) -> nn.Linear:
            index = index.to(proj.weight.device)
            out_f, in_f = (len(index), proj.in_features) if dim == 0 else (proj.out_features,
                                                                           len(index))
            new = nn.Linear(in_f, out_f, bias=proj.bias is not None,
                            device=proj.weight.device, dtype=proj.weight.dtype)
            with torch.no_grad():
                new.weight.copy_(proj.weight.index_select(dim, index))
                if proj.bias is not None:
                    new.bias.copy_(proj.bias if dim == 1 else proj.bias[index])
            new.weight.requires_grad_(proj.weight.requires_grad)
            return new

        self.q_proj = shrink(self.q_proj, rows_qk, 0)  # (h*d_k, D)
        self.k_proj = shrink(self.k_proj, rows_qk, 0)  # (h*d_k, kdim)
        self.v_proj = shrink(self.v_proj, rows_v, 0)  # (h*d_v, vdim)
        self.out_proj = shrink(self.out_proj, rows_v, 1)  # (D, h*d_v)
        self.n_heads = self.n_kv_heads = len(keep)  # still multi-head attention

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        attention_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        average_weights: bool = False,
        head_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> AttentionOutput:
        """Self-attention when ``key``/``value`` are omitted, else cross-attention.

        See the class docstring for shapes, mask conventions and ``cache``.
        """
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value, attention_mask = (
                None if t is None else t.unsqueeze(0) for t in (query, key, value, attention_mask)
            )
        key = query if key is None else key
        value = key if value is None else value
        if cache is None:
            check_inputs(self, query, key, value, attention_mask, head_mask)
            B, L, _ = query.shape
            S, H, G = key.shape[1], self.n_heads, self.n_kv_heads

            # 1) project and split into heads
            q = self.q_proj(query).view(B, L, H, self.d_k).transpose(1, 2)  # (B, H, L, d_k)
            k = self.k_proj(key).view(B, S, G, self.d_k).transpose(1, 2)  # (B, G, S, d_k)
            v = self.v_proj(value).view(B, S, G, self.d_v).transpose(1, 2)  # (B, G, S, d_v)
            if self.rotary is not None:
                q, k = self.rotary(q, k)
        else:  # 1) project what the cache lacks, then read the cache
            past = check_cache(self, cache, query, key, value, attention_mask, head_mask,
                               is_causal)
            B, L, _ = query.shape
            H = self.n_heads
            q, k, v = self._project_cached(query, key, value, cache, past)  # (B, H|G, L|S, d)
            if is_causal and past > 0:  # the queries sit at positions past .. past+L-1
                if L > 1:  # (one query sees every cached key: no mask needed)
                    visible = torch.ones(L, k.shape[2], dtype=torch.bool,
                                         device=q.device).tril(past)  # (L, S): j <= past + i
                    attn_mask = combine_masks(attn_mask, visible)
                is_causal = False

        # 2) attend per head; query head h reads key/value head h // (H/G)
        mask = attn_mask
        if attention_mask is not None:
            mask = combine_masks(attn_mask, padding_mask(attention_mask))  # -> (B, 1|H, L|1, S)
        if self.hook_query.active or self.hook_key.active or self.hook_value.active:
            self._show_vectors(q, k, v, mask, is_causal)
        watch = self.hook_pattern.active
        wanted = self.hook_pattern.heads if watch else None  # None = every head
        all_heads = need_weights or (watch and wanted is None)
        heads, weights = scaled_dot_product_attention(
            q, k, v, mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            need_weights=all_heads,
            enable_gqa=self.grouped,
        )  # (B, H, L, d_v), (B, H, L, S) | None
        if watch:
            if all_heads:
                observed = weights if wanted is None else weights[:, wanted]  # (B, H|h, L, S)
            else:  # only some heads observed: the rest stayed fused
                per_head = mask is not None and mask.dim() == 4 and mask.shape[1] == H
                kv = [self.kv_head(h) for h in wanted]  # each wanted head's key/value head
                observed = scaled_dot_product_attention(
                    q[:, wanted], k[:, kv], v[:, kv], mask[:, wanted] if per_head else mask,
                    is_causal=is_causal, need_weights=True,
                ).weights  # (B, h, L, S)
            self.hook_pattern(observed)
        if not need_weights:
            weights = None
        if head_mask is not None:
            gate = head_mask.to(heads.dtype).view(-1, H, 1, 1)  # (B|1, H, 1, 1)
            heads = heads * gate  # (B, H, L, d_v)
        if self.hook_head_output.active:  # e.g. head gates: a hook's result replaces heads
            heads = self.hook_head_output(heads, query=query)  # (B, H, L, d_v)

        # 3) concatenate the heads, 4) project back
        concat = heads.transpose(1, 2).reshape(B, L, H * self.d_v)  # (B, L, H*d_v)
        output = self.out_proj(concat)  # (B, L, D)
        if weights is not None and average_weights:
            weights = weights.mean(dim=1)  # (B, L, S)
        if unbatched:
            output = output.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        return AttentionOutput(output, weights)

    def _show_vectors(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
                      is_causal: bool) -> None:
        """Call the query, key and value hook points, with the mask the scores get."""
        if is_causal:
            mask = combine_masks(mask, causal_mask(q.shape[2], k.shape[2], device=q.device))
        for point, vectors in ((self.hook_query, q), (self.hook_key, k), (self.hook_value, v)):
            if point.active:
                point(vectors, mask=mask)

    def _project_cached(self, query: Tensor, key: Tensor, value: Tensor, cache: KVCache,
                        past: int) -> tuple[Tensor, Tensor, Tensor]:
        """Step 1 with a cache: project the queries and what the cache lacks, update it in
        place, and return ``q (B, H, L, d_k)`` and all keys/values ``(B, G, S, d_k|d_v)``."""
        B, L, _ = query.shape
        H, G = self.n_heads, self.n_kv_heads
        q = self.q_proj(query).view(B, L, H, self.d_k).transpose(1, 2)  # (B, H, L, d_k)
        if cache.static and cache.key is not None:  # cross-attention after its first call
            return q, cache.key, cache.value
        S = key.shape[1]
        k = self.k_proj(key).view(B, S, G, self.d_k).transpose(1, 2)  # (B, G, S, d_k)
        v = self.v_proj(value).view(B, S, G, self.d_v).transpose(1, 2)  # (B, G, S, d_v)
        if self.rotary is not None:  # new queries and keys both sit at past .. past+L-1
            q, k = self.rotary(q, k, q_offset=past, k_offset=past)
        if cache.key is not None:
            k = torch.cat([cache.key, k], dim=2)  # (B, G, past + S, d_k)
            v = torch.cat([cache.value, v], dim=2)  # (B, G, past + S, d_v)
        cache.key, cache.value = k, v
        return q, k, v

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of a ``torch.nn.MultiheadAttention`` with the same weights (multi-head:
        ``n_kv_heads = n_heads``, as PyTorch has no grouped-query attention).

        Note that its boolean masks mean ``True`` = *blocked*; pass ``~mask`` here.
        """
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("from_torch: add_bias_kv and add_zero_attn are not supported")
        E, H = module.embed_dim, module.num_heads
        has_bias = module.in_proj_bias is not None
        mha = cls(E, H, kdim=module.kdim, vdim=module.vdim, bias=has_bias, dropout=module.dropout)
        with torch.no_grad():
            if module._qkv_same_embed_dim:
                w_q, w_k, w_v = module.in_proj_weight.chunk(3)
            else:
                w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
            for proj, w in ((mha.q_proj, w_q), (mha.k_proj, w_k), (mha.v_proj, w_v)):
                proj.weight.copy_(w)
            mha.out_proj.weight.copy_(module.out_proj.weight)
            if has_bias:
                for proj, b in zip((mha.q_proj, mha.k_proj, mha.v_proj),
                                   module.in_proj_bias.chunk(3), strict=True):
                    proj.bias.copy_(b)
                mha.out_proj.bias.copy_(module.out_proj.bias)
        return mha.to(module.out_proj.weight.device, module.out_proj.weight.dtype)

    def extra_repr(self) -> str:
        grouped = f", n_kv_heads={self.n_kv_heads}" if self.grouped else ""
        return (f"d_model={self.d_model}, n_heads={self.n_heads}{grouped}, d_k={self.d_k}, "
                f"d_v={self.d_v}, kdim={self.kdim}, vdim={self.vdim}, dropout={self.dropout}")

