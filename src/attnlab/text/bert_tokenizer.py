"""WordPiece tokenization from a ``tokenizer.json``, through the ``tokenizers`` library.

Legend: ``B`` batch (texts), ``L`` longest tokenized length in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from attnlab.text.batching import pad_sequences

__all__ = ["BertTokenizer", "TokenizedBatch"]


@dataclass
class TokenizedBatch:
    """Padded token ids for a batch of texts (Hugging Face's names and conventions)."""

    input_ids: Tensor  # (B, L) int64, [PAD] after the text
    attention_mask: Tensor  # (B, L) int64, 1 = real token, 0 = padding
    token_type_ids: Tensor  # (B, L) int64, segment ids

    def to(self, device: torch.device | str) -> TokenizedBatch:
        return TokenizedBatch(*(t.to(device) for t in
                                (self.input_ids, self.attention_mask, self.token_type_ids)))


class BertTokenizer:
    """Texts -> padded ids: ``[CLS] text [SEP] [PAD]...``, truncated to ``max_length`` tokens.

    Args:
        path: a ``tokenizer.json`` file (Hugging Face ``tokenizers`` format).
        max_length: longest tokenized text, special tokens included; longer texts are truncated.

    The file's own padding and truncation settings are replaced: batches are padded to their
    longest text only.

    Example::

        >>> tok = BertTokenizer(model_dir / "tokenizer.json", max_length=256)
        >>> tok(["a fine film", "dull"]).input_ids.shape
        torch.Size([2, 5])
    """

    def __init__(self, path: str | Path, max_length: int) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2 ([CLS] and [SEP]), "
                             f"got {max_length!r}")
        self.path = path
        self.max_length = max_length
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length)
        pad = self._tokenizer.token_to_id("[PAD]")
        self.pad_token_id = 0 if pad is None else pad

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def __call__(self, texts: Sequence[str] | str) -> TokenizedBatch:
        """Tokenize and pad a batch of texts; a single string is a batch of one."""
        return self.pad(self.encode_unpadded(texts))

    def pad(self, ids: Sequence[Sequence[int]]) -> TokenizedBatch:
        """Right-pad non-empty token id lists to the longest of them."""
        input_ids, attention_mask = pad_sequences(ids, self.pad_token_id)  # (B, L) each
        return TokenizedBatch(input_ids, attention_mask, torch.zeros_like(input_ids))

    def encode_unpadded(self, texts: Sequence[str] | str) -> list[list[int]]:
        """Token ids of each text, ``[CLS] ... [SEP]``, truncated, not padded."""
        texts = [texts] if isinstance(texts, str) else texts
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, got {type(text).__name__} at index {i}")
        return [e.ids for e in self._tokenizer.encode_batch(list(texts))]
