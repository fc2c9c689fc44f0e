"""Tokenizers trained on the training texts with the Hugging Face ``tokenizers`` library.

Two kinds: ``"wordpiece"`` (sub-words, as BERT; rare words split into known pieces) and
``"word"`` (one id per whitespace/punctuation-separated word; unknown words map to ``[UNK]``).
Both lower-case, reserve ``[PAD]`` = 0, ``[UNK]``, ``[CLS]``, ``[SEP]``, and wrap a sequence
as ``[CLS] tokens [SEP]`` when ``add_special_tokens=True``. Saved and loaded as ``tokenizer.json``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing

__all__ = [
    "SPECIAL_TOKENS",
    "encode",
    "encode_batch",
    "load_tokenizer",
    "save_tokenizer",
    "train_tokenizer",
]

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP)  # ids 0, 1, 2, 3 in this order
TOKENIZER_KINDS = ("wordpiece", "word")


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 16000,
    *,
    kind: str = "word",
    min_frequency: int = 1,
) -> Tokenizer:
    """Train a lower-casing tokenizer on ``texts``.

    Args:
        texts: training texts.
        vocab_size: largest vocabulary, special tokens included (words beyond it are ``[UNK]``
            for ``"word"``; pieces are merged up to it for ``"wordpiece"``).
        kind: ``"word"`` or ``"wordpiece"``.
        min_frequency: least count for a word or piece to enter the vocabulary.

    Returns:
        A ``tokenizers.Tokenizer`` with ``[PAD]`` = 0, ``[UNK]`` = 1, ``[CLS]`` = 2, ``[SEP]`` = 3.
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"kind must be one of {TOKENIZER_KINDS}, got {kind!r}")
    if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be an integer > {len(SPECIAL_TOKENS)}, "
                         f"got {vocab_size!r}")
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=list(SPECIAL_TOKENS))
        tokenizer.decoder = decoders.WordPiece()
    else:
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=list(SPECIAL_TOKENS))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty; cannot train a tokenizer")
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    for expected, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != expected:  # the trainers put specials first
            raise RuntimeError(f"special token {token} got id {tokenizer.token_to_id(token)}, "
                               f"expected {expected}")
    tokenizer.post_processor = TemplateProcessing(
        single=f"{CLS} $A {SEP}", special_tokens=[(CLS, 2), (SEP, 3)])
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> Path:
    """Write ``tokenizer`` as JSON to ``path`` (a file, or a directory -> ``tokenizer.json``),
    atomically (temporary file in the same directory, fsync, rename). Returns the file path."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / "tokenizer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(tokenizer.to_str())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer saved by :func:`save_tokenizer` (a ``.json`` file or its directory), or
    any BERT-style ``tokenizer.json``; padding and truncation stored in the file are switched off
    (:func:`encode` truncates, batches pad)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if tokenizer.token_to_id(PAD) != 0:
        raise ValueError(f"{path}: expected [PAD] to have id 0, got {tokenizer.token_to_id(PAD)}")
    return tokenizer


def encode(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    add_special_tokens: bool = True,
) -> list[list[int]]:
    """Token ids of each text (unpadded), truncated to ``max_length`` ids (``[SEP]`` kept last).

    Raises:
        ValueError: a text that encodes to no tokens at all.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, got a single str; wrap it in a list")
    if max_length is not None and max_length < (3 if add_special_tokens else 1):
        raise ValueError(f"max_length must be >= {3 if add_special_tokens else 1}, "
                         f"got {max_length}")
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
    ids = []
    for i, enc in enumerate(encodings):
        seq = enc.ids
        if len(seq) == (2 if add_special_tokens else 0):
            raise ValueError(f"text {i} ({texts[i]!r}) has no tokens")
        if max_length is not None and len(seq) > max_length:
            seq = seq[: max_length - 1] + seq[-1:] if add_special_tokens else seq[:max_length]
        ids.append(seq)
    return ids


def encode_batch(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    add_special_tokens: bool = True,
) -> dict[str, torch.Tensor]:
    """Encode and right-pad ``texts`` into ``{"input_ids": (B, T), "attention_mask": (B, T)}``
    (``attention_mask`` 1 = token, 0 = padding; ``T`` the longest sequence)."""
    from attnlab.text.batching import pad_sequences

    input_ids, attention_mask = pad_sequences(
        encode(tokenizer, texts, max_length=max_length, add_special_tokens=add_special_tokens))
    return {"input_ids": input_ids, "attention_mask": attention_mask}
