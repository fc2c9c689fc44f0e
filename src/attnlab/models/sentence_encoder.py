"""Sentence embeddings from a BERT encoder: mean of the real tokens' last hidden states, then
L2 normalisation (as sentence-transformers' ``all-MiniLM-L6-v2``).

Legend: ``B`` batch, ``L`` longest length in the batch, ``D`` hidden size, ``T`` texts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.bert import BertConfig, BertModel, BertOutput, mean_pool

__all__ = ["SentenceEncoder"]


class SentenceEncoder(nn.Module):
    """A :class:`BertModel` with its tokenizer; ``forward`` is the encoder's, ``encode`` embeds
    texts.

    Args:
        bert: the encoder.
        tokenizer: turns texts into padded batches for ``bert``, as
            :class:`attnlab.text.TextTokenizer` does (``batches(texts, batch_size, ...)``).
    """

    def __init__(self, bert: BertModel, tokenizer: Any) -> None:
        super().__init__()
        self.bert = bert
        self.tokenizer = tokenizer
        self._cast_cache: dict[torch.dtype, tuple[tuple, BertModel]] = {}

    @property
    def config(self) -> BertConfig:
        return self.bert.config

    def get_input_embeddings(self) -> nn.Embedding:
        """The encoder's word embedding (the Hugging Face name)."""
        return self.bert.get_input_embeddings()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, **kwargs) -> BertOutput:
        """Same as :meth:`BertModel.forward`."""
        return self.bert(input_ids, attention_mask, token_type_ids, **kwargs)

    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        normalize: bool = True,
        *,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Embed texts: mean pooling over real tokens, then L2 normalisation.

        Texts are tokenized at once, sorted by length and batched so that each batch pads
        little; the results come back in the input order. Runs under ``torch.inference_mode``
        on the fused attention kernel (no weights are computed), with the token-wise sub-layers
        on real tokens only (``skip_padding``).

        Args:
            texts: a list of strings, or one string.
            batch_size: texts per forward pass.
            normalize: scale each embedding to unit L2 norm.
            dtype: compute in this floating dtype (e.g. ``torch.bfloat16``) on a cast copy of
                the weights (cached until a weight changes); default the model's own. Pooling
                and the result are float32.

        Returns:
            float32 ``(T, D)`` on the model's device; ``(D,)`` for a single string.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        single = isinstance(texts, str)
        texts = [texts] if single else texts
        bert = self._bert_in(dtype)
        device = next(bert.parameters()).device
        embeddings = torch.empty(len(texts), self.config.hidden_size, device=device)  # (T, D)
        with torch.inference_mode():
            for rows, batch in self.tokenizer.batches(texts, batch_size, longest_first=True,
                                                      allow_empty=True):
                batch = batch.to(device)
                hidden = bert(batch.input_ids, batch.attention_mask,
                              skip_padding=True).last_hidden_state  # (B, L, D)
                pooled = mean_pool(hidden.float(), batch.attention_mask)  # (B, D)
                if normalize:
                    pooled = F.normalize(pooled, p=2, dim=-1)
                embeddings[torch.tensor(rows, device=device)] = pooled
        return embeddings[0] if single else embeddings

    def _bert_in(self, dtype: torch.dtype | None) -> BertModel:
        """The encoder in ``dtype``: itself, or a cast copy cached until a weight changes."""
        own = next(self.bert.parameters()).dtype
        if dtype is None or dtype == own:
            return self.bert
        stamp = tuple((p.data_ptr(), p._version) for p in self.bert.parameters())
        cached = self._cast_cache.get(dtype)
        if cached is None or cached[0] != stamp:
            cast = copy.deepcopy(self.bert).to(dtype).eval()
            self._cast_cache[dtype] = (stamp, cast)
        return self._cast_cache[dtype][1]
