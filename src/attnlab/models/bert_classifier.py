"""A sequence classifier on a (pretrained) BERT encoder: pool, dropout, linear.

``forward(input_ids, attention_mask, labels)`` returns ``.logits`` and ``.loss``. Built on a
pretrained encoder by :func:`attnlab.io.load_pretrained_classifier`, saved and read back by
:func:`attnlab.io.save_bert_classifier` / :func:`attnlab.io.load_bert_classifier`.

Legend: ``B`` batch, ``L`` sequence length, ``D`` hidden size, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.bert import BertModel, mean_pool
from attnlab.models.classifier import ClassifierOutput

__all__ = ["BertClassifierConfig", "BertForSequenceClassification"]

POOLINGS = ("mean", "pooler")


@dataclass
class BertClassifierConfig:
    """The head on top of the encoder."""

    num_labels: int = 2  # C, number of classes
    pooling: str = "mean"  # "mean" over real tokens, or "pooler" (BERT's tanh(W h_[CLS]))
    dropout: float = 0.1  # on the pooled vector, before the linear layer

    def __post_init__(self) -> None:
        if not isinstance(self.num_labels, int) or self.num_labels < 2:
            raise ValueError(f"num_labels must be an integer >= 2, got {self.num_labels!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class BertForSequenceClassification(nn.Module):
    """BERT encoder, pooled (mean over real tokens, or the [CLS] pooler), dropout, linear.

    Args:
        bert: the encoder (e.g. ``load_pretrained(...).bert``).
        head: the head's configuration.
        tokenizer: kept with the model and saved beside it, optional.

    Shape:
        input_ids, attention_mask, token_type_ids ``(B, L)``; labels ``(B,)`` class ids in
        ``[0, C)``. Returns :class:`~attnlab.models.classifier.ClassifierOutput` with logits
        ``(B, C)`` and ``loss`` (mean cross-entropy) when labels are given, else ``None``.

    Example::

        >>> model = load_pretrained_classifier("all-MiniLM-L6-v2", num_labels=2)
        >>> batch = model.tokenizer(["a fine film", "dull"])
        >>> model(batch.input_ids, batch.attention_mask).logits.shape
        torch.Size([2, 2])
    """

    def __init__(self, bert: BertModel, head: BertClassifierConfig,
                 tokenizer: Any = None) -> None:
        super().__init__()
        if head.pooling == "pooler" and bert.pooler is None:
            raise ValueError("pooling='pooler' needs an encoder with a pooler; use 'mean'")
        self.bert = bert
        self.head = head
        self.tokenizer = tokenizer
        self.dropout = nn.Dropout(head.dropout)
        self.classifier = nn.Linear(bert.config.hidden_size, head.num_labels)
        nn.init.normal_(self.classifier.weight, std=bert.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        """The encoder's word embedding (the Hugging Face name)."""
        return self.bert.get_input_embeddings()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, token_type_ids: Tensor | None = None
                ) -> ClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids)
        if self.head.pooling == "pooler":
            pooled = out.pooler_output  # (B, D)
        else:
            pooled = mean_pool(out.last_hidden_state, attention_mask)  # (B, D)
        logits = self.classifier(self.dropout(pooled))  # (B, C)
        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:1] or labels.dtype.is_floating_point:
                raise ValueError(f"labels must be integer class ids of shape (B,) = "
                                 f"{tuple(logits.shape[:1])}, got {tuple(labels.shape)} "
                                 f"{labels.dtype}")
            if labels.numel() and not (0 <= int(labels.min()) and
                                       int(labels.max()) < self.head.num_labels):
                raise ValueError(f"labels must be in [0, num_labels={self.head.num_labels}), "
                                 f"got values in [{int(labels.min())}, {int(labels.max())}]")
            loss = F.cross_entropy(logits.float(), labels)
        return ClassifierOutput(logits, loss)

    def config_dict(self) -> dict:
        """What rebuilds this model (see :func:`attnlab.io.build_model`): the
        encoder's and the head's configs, whether there is a pooler, the longest input."""
        return {"bert": self.bert.config.to_dict(), "head": asdict(self.head),
                "with_pooler": self.bert.pooler is not None,
                "max_length": None if self.tokenizer is None else self.tokenizer.max_length}
