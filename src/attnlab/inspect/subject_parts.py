"""What every subject of one token sequence shares: the pass over a text and the ids a probe may
draw (:class:`TextPasses`), checked ids and indices, and one text's captured queries, keys,
values and masks (what the neuron view redoes a head from).

Legend: ``H`` heads, ``L`` tokens, ``d_k``/``d_v`` query-key and value size per head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attnlab.errors import InputError
from attnlab.inspect.attended import Attended
from attnlab.inspect.capture import attention_modules
from attnlab.inspect.html import model_name
from attnlab.inspect.pictures import head_grid, heatmap, relevance_plot
from attnlab.inspect.protocol import HeadPass
from attnlab.text import TextTokenizer

__all__ = ["TextPasses", "checked_ids", "index_in", "ordinary_ids", "picture_of",
           "text_vectors"]


class TextPasses:
    """``head_pass`` and ``ordinary_ids`` of a subject whose queries and keys are one text's
    tokens; it has ``model``, ``name``, ``tokenizer`` and ``encode(texts)``."""

    def head_pass(self, text: str, attention: str) -> HeadPass:
        """One pass over ``text``; queries and keys are its tokens."""
        enc = self.encode([text])
        tokens = enc.tokens[0]
        return HeadPass(self.model, model_name(self.name), list(attention_modules(self.model)),
                        tokens, tokens, lambda: self.model(enc.input_ids, enc.attention_mask))

    def ordinary_ids(self) -> list[int]:
        """The vocabulary less special tokens: ids a probe may draw."""
        return ordinary_ids(self.tokenizer)


def ordinary_ids(tokenizer: TextTokenizer) -> list[int]:
    """``tokenizer``'s ids less its special tokens (``[PAD]``, ``[CLS]``, ...)."""
    special = {i for i, t in tokenizer.tokenizer.get_added_tokens_decoder().items() if t.special}
    return [i for i in range(tokenizer.vocab_size) if i not in special]


def checked_ids(ids: Sequence[int], tokenizer: TextTokenizer) -> list[int]:
    """``ids`` as a list of ints in the vocabulary, or an error naming the first wrong one."""
    ids = [int(i) for i in ids]
    wrong = [i for i in ids if not 0 <= i < tokenizer.vocab_size]
    if not ids or wrong:
        raise InputError(f"ids must be a non-empty list of ids in [0, {tokenizer.vocab_size}), "
                         f"got {wrong[0] if wrong else 'none'}")
    return ids


def index_in(what: str, value: int, n: int, where: str) -> int:
    """``value`` as an index into ``n`` things (negative counts from the end), or an error
    naming ``what`` and the valid range."""
    if not -n <= value < n:
        raise InputError(f"{what} must be in [0, {n}) for {where}, got {value}")
    return value % n


def text_vectors(cap, names: list[str], b: int, n: int) -> dict:
    """Text ``b``'s queries, keys, values and masks per layer, cut to its ``n`` tokens."""
    def mask(name: str) -> Tensor | None:
        m = cap.masks.get(name)
        if m is None:
            return None
        m = m[b, :, :n, :n].clone()  # (1|H, L, L)
        trivial = bool(m.all()) if m.dtype == torch.bool else not bool(m.any())
        return None if trivial else m

    return {"queries": [cap.queries[x][b, :, :n].clone() for x in names],  # (H, L, d_k)
            # keys and values per query head (key/value heads repeated if grouped-query)
            "keys": [cap.per_query_head(cap.keys, x)[b, :, :n] for x in names],  # (H, L, d_k)
            "values": [cap.per_query_head(cap.values, x)[b, :, :n] for x in names],  # (H, L, d_v)
            "masks": [mask(x) for x in names]}


def picture_of(attended: Attended, layer: int | None, head: int | None, *, name: str,
               rollout_title: str):
    """The picture ``show --out`` draws of one text: its rollout (no ``layer``), a layer's
    heads (no ``head``) or one head's heat map; a matplotlib Figure."""
    if layer is None:
        return relevance_plot(attended.tokens, attended.relevance, title=rollout_title)
    w = attended.weights[index_in("layer", layer, len(attended.weights), name)]  # (H, L, L)
    if head is None:
        return head_grid(w, attended.tokens, layer=layer)
    head = index_in("head", head, w.shape[0], f"layer {layer}")
    return heatmap(w[head], attended.tokens, title=f"layer {layer}, head {head}")
