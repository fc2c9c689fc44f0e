"""The one tokenizer wrapper: train, load, encode and pad, over a Hugging Face ``tokenizers``
``Tokenizer`` (the ``tokenizer.json`` format).

Tokenizers trained here come in six kinds. Two lower-case and strip accents, for
classification: ``"wordpiece"`` (sub-words, as BERT: rare words split into known pieces) and
``"word"`` (one id per whitespace/punctuation-separated word; unknown words map to ``[UNK]``).
Two are cased and unnormalised, for translation, whose output is scored case-sensitive:
``"bpe"`` (byte-pair merges) and ``"unigram"`` (SentencePiece's unigram model), both with
SentencePiece's word-start mark ``▁`` in place of each space, so that :meth:`TextTokenizer.decode`
gives back the text exactly (tabs, double and trailing spaces included). All reserve
``[PAD]`` = 0, ``[UNK]``, ``[CLS]``, ``[SEP]`` and wrap a text as ``[CLS] tokens [SEP]``;
translation reads ``[CLS]`` as beginning- and ``[SEP]`` as end-of-sentence. Two are for language
models, which read a stream of text: ``"char"`` (one token per character seen in training,
nothing normalised) and ``"byte-bpe"`` (GPT-2's byte-level BPE: every UTF-8 byte is a symbol, so
nothing is ever unknown); both reserve the same four ids but add none of them to an encoded
text, and decode back to the text exactly. A pretrained model's
``tokenizer.json`` (all-MiniLM-L6-v2's) loads the same way. Padding and truncation stored in a
file are switched off: :meth:`TextTokenizer.encode` truncates, :meth:`TextTokenizer.pad` pads.

Legend: ``B`` batch (texts), ``L`` longest tokenized length in the batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing
from torch import Tensor

from attnlab.errors import InputError
from attnlab.text.batching import by_length, pad_sequences
from attnlab.text.files import check_utf8, read_text

__all__ = ["SPECIAL_TOKENS", "STREAM_KINDS", "TOKENIZER_KINDS", "TextTokenizer",
           "TokenizedBatch", "TokenizedText"]

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP)  # ids 0, 1, 2, 3 in this order
BOS, EOS = CLS, SEP  # beginning and end of a sentence, for sequence-to-sequence models
TOKENIZER_KINDS = ("wordpiece", "word", "bpe", "unigram", "char", "byte-bpe")
STREAM_KINDS = ("char", "byte-bpe")  # for language models: no [CLS]/[SEP] added to a text
SPACE = "\u2581"  # "▁", SentencePiece's mark of a word start; it stands for a space


@dataclass
class TokenizedBatch:
    """Padded token ids for a batch of texts (Hugging Face's names and conventions)."""

    input_ids: Tensor  # (B, L) int64, [PAD] after the text
    attention_mask: Tensor  # (B, L) int64, 1 = real token, 0 = padding
    token_type_ids: Tensor  # (B, L) int64, segment ids

    def to(self, device: torch.device | str) -> TokenizedBatch:
        return TokenizedBatch(*(t.to(device) for t in
                                (self.input_ids, self.attention_mask, self.token_type_ids)))


@dataclass(frozen=True)
class TokenizedText:
    """One text as the model sees it, for inspection."""

    ids: list[int]  # token ids, special tokens included, truncated
    tokens: list[str]  # the same as strings
    special: list[int]  # 1 where the token is a special token ([CLS], [SEP], ...)
    truncated: bool  # the text was longer than max_length tokens


class TextTokenizer:
    """Texts -> token ids -> padded batches, ``[CLS] text [SEP] [PAD]...``.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` (its padding and truncation are switched off).
        max_length: longest encoded text, special tokens included; ``None``: no limit.
        path: the tokenizer.json it was read from, if any.

    Example::

        >>> tok = TextTokenizer.load(model_dir / "tokenizer.json", max_length=256)
        >>> tok(["a fine film", "dull"]).input_ids.shape
        torch.Size([2, 5])
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int | None = None,
                 path: str | os.PathLike | None = None) -> None:
        if max_length is not None and (not isinstance(max_length, int) or max_length < 2):
            raise InputError(f"max_length must be an integer >= 2 ([CLS] and [SEP]), "
                             f"got {max_length!r}")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.path = None if path is None else Path(path)
        pad = tokenizer.token_to_id(PAD)
        self.pad_token_id = 0 if pad is None else pad

    # --- making one -------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 16000, *, kind: str = "word",
              min_frequency: int = 1, max_length: int | None = None) -> TextTokenizer:
        """Train a tokenizer of ``kind`` on ``texts`` with at most ``vocab_size`` entries
        (special tokens included), each seen at least ``min_frequency`` times.

        ``"word"`` and ``"wordpiece"`` lower-case; ``"bpe"`` and ``"unigram"`` keep the text
        as written and decode back to it (``"unigram"`` takes no ``min_frequency``). Characters
        never seen in ``texts`` encode as ``[UNK]``. ``"char"`` and ``"byte-bpe"`` (see
        :func:`_stream_tokenizer`) add no special token to a text; ``"char"``'s vocabulary is
        the characters of ``texts`` (``vocab_size`` and ``min_frequency`` are not used), and
        ``"byte-bpe"`` never needs ``[UNK]``.
        """
        if kind not in TOKENIZER_KINDS:
            raise InputError(f"kind must be one of {TOKENIZER_KINDS}, got {kind!r}")
        if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
            raise InputError(f"vocab_size must be an integer > {len(SPECIAL_TOKENS)}, "
                             f"got {vocab_size!r}")
        texts = list(texts)
        if not texts:
            raise InputError("texts is empty; cannot train a tokenizer")
        options = dict(vocab_size=vocab_size, min_frequency=min_frequency,
                       special_tokens=list(SPECIAL_TOKENS))
        if kind in STREAM_KINDS:
            return cls(_stream_tokenizer(kind, texts, options), max_length)
        if kind in ("bpe", "unigram"):
            tokenizer, trainer = _cased_subwords(kind, options)
        elif kind == "wordpiece":
            tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
            trainer = trainers.WordPieceTrainer(**options)
            tokenizer.decoder = decoders.WordPiece()
        else:
            tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
            trainer = trainers.WordLevelTrainer(**options)
        if kind in ("wordpiece", "word"):
            tokenizer.normalizer = normalizers.Sequence(
                [normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
            tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
        for expected, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != expected:  # the trainers put specials first
                raise RuntimeError(f"special token {token} got id "
                                   f"{tokenizer.token_to_id(token)}, expected {expected}")
        tokenizer.post_processor = TemplateProcessing(
            single=f"{CLS} $A {SEP}", special_tokens=[(CLS, 2), (SEP, 3)])
        return cls(tokenizer, max_length)

    @classmethod
    def load(cls, path: str | os.PathLike, max_length: int | None = None) -> TextTokenizer:
        """Read a ``tokenizer.json`` (a file, or the folder holding it); ``[PAD]`` must be 0."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}")
        tokenizer = Tokenizer.from_str(read_text(path))  # an unreadable file: named
        if tokenizer.token_to_id(PAD) not in (None, 0):
            raise InputError(f"{path}: expected [PAD] to have id 0, got "
                             f"{tokenizer.token_to_id(PAD)}")
        return cls(tokenizer, max_length, path)

    def to_str(self) -> str:
        """The tokenizer as tokenizer.json text."""
        return self.tokenizer.to_str()

    def save(self, path: str | os.PathLike) -> None:
        """Write tokenizer.json to ``path`` (inside a checkpoint folder being written)."""
        self.tokenizer.save(str(path))

    # --- using it ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def bos_token_id(self) -> int | None:
        """Id of ``[CLS]``, the beginning of a sentence (2 in tokenizers trained here)."""
        return self.tokenizer.token_to_id(BOS)

    @property
    def eos_token_id(self) -> int | None:
        """Id of ``[SEP]``, the end of a sentence (3 in tokenizers trained here)."""
        return self.tokenizer.token_to_id(EOS)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def encode(self, texts: Sequence[str], *, max_length: int | None = None,
               add_special_tokens: bool = True, allow_empty: bool = False) -> list[list[int]]:
        """Token ids of each text (unpadded), truncated to ``max_length`` ids (default the
        tokenizer's) with ``[SEP]`` kept last.

        Raises:
            ValueError: a text that encodes to no tokens at all (unless ``allow_empty``), or
                one that is not valid Unicode (a lone surrogate from undecodable bytes).
        """
        return [t.ids for t in self._tokenize(texts, max_length, add_special_tokens,
                                              allow_empty, details=False)]

    def decode(self, ids: Sequence[int] | Tensor, *, skip_special_tokens: bool = True) -> str:
        """The text of token ids (a list or a 1-D tensor), the inverse of :meth:`encode`.

        For ``"bpe"`` and ``"unigram"`` tokenizers ``decode(encode([text])[0]) == text`` for
        any text made of characters seen in training (and holding neither ``▁`` nor a special
        token's name such as ``[SEP]``). ``skip_special_tokens`` leaves out
        ``[PAD]``, ``[CLS]``, ``[SEP]`` and ``[UNK]``: characters unseen in training are then
        missing from the text; with ``False`` each run of them reads ``[UNK]``.

        Raises:
            ValueError: an id outside ``0 .. vocab_size - 1``.
        """
        return self.decode_batch([ids], skip_special_tokens=skip_special_tokens)[0]

    def decode_batch(self, ids: Sequence[Sequence[int]] | Tensor, *,
                     skip_special_tokens: bool = True) -> list[str]:
        """The texts of lists of token ids (or the rows of a 2-D tensor); see :meth:`decode`."""
        rows = ids.tolist() if isinstance(ids, Tensor) else [
            row.tolist() if isinstance(row, Tensor) else list(row) for row in ids]
        size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        for i, row in enumerate(rows):
            wrong = [x for x in row if isinstance(x, bool) or not isinstance(x, int)
                     or not 0 <= x < size]
            if wrong:
                raise InputError(f"ids of text {i} must be integers in 0 .. {size - 1} (the "
                                 f"vocabulary), got {wrong[0]!r}")
        return self.tokenizer.decode_batch(rows, skip_special_tokens=skip_special_tokens)

    def pad(self, ids: Sequence[Sequence[int]]) -> TokenizedBatch:
        """Right-pad non-empty token id lists to the longest of them."""
        input_ids, attention_mask = pad_sequences(ids, self.pad_token_id)  # (B, L) each
        return TokenizedBatch(input_ids, attention_mask, torch.zeros_like(input_ids))

    def __call__(self, texts: Sequence[str] | str) -> TokenizedBatch:
        """Encode (an empty text gives ``[CLS] [SEP]``) and pad; a string is a batch of one."""
        return self.pad(self.encode([texts] if isinstance(texts, str) else texts,
                                    allow_empty=True))

    def batches(self, texts: Sequence[str], batch_size: int, *, longest_first: bool = False,
                allow_empty: bool = False) -> Iterator[tuple[list[int], TokenizedBatch]]:
        """Texts encoded once, grouped by token length (:func:`~attnlab.text.batching.by_length`)
        and padded batch by batch; each batch comes with the indices of its texts."""
        ids = self.encode(texts, allow_empty=allow_empty)
        for rows in by_length([len(x) for x in ids], batch_size, longest_first=longest_first):
            yield rows, self.pad([ids[r] for r in rows])

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        """Ids, token strings and special-token marks of each text, truncated as
        :meth:`encode` truncates (for pictures and tables of what the model saw)."""
        return self._tokenize(texts, None, True, True, details=True)

    def _tokenize(self, texts: Sequence[str], max_length: int | None, add_special_tokens: bool,
                  allow_empty: bool, details: bool) -> list[TokenizedText]:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got a single str; wrap it "
                            "in a list")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, got {type(text).__name__} at index {i}")
            check_utf8(text, f"text {i}")
        limit = self.max_length if max_length is None else max_length
        added = self.tokenizer.num_special_tokens_to_add(False) if add_special_tokens else 0
        if limit is not None and limit < added + 1:
            raise InputError(f"max_length must be >= {added + 1}, got {limit}")
        out = []
        for i, enc in enumerate(self.tokenizer.encode_batch(
                list(texts), add_special_tokens=add_special_tokens)):
            ids = enc.ids
            tokens, special = (enc.tokens, enc.special_tokens_mask) if details else ([], [])
            if not allow_empty and len(ids) == added:
                raise InputError(f"text {i} ({texts[i]!r}) has no tokens")
            truncated = limit is not None and len(ids) > limit
            if truncated:  # keep the first limit - 1 and the last ([SEP]), if one was added
                keep = (slice(0, limit - 1), slice(-1, None)) if added else (
                    slice(0, limit), slice(0, 0))
                ids, tokens, special = (x[keep[0]] + x[keep[1]] if x else x
                                        for x in (ids, tokens, special))
            out.append(TokenizedText(list(ids), list(tokens), list(special), truncated))
        return out


def _cased_subwords(kind: str, options: dict) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained ``"bpe"`` or ``"unigram"`` tokenizer that keeps case and characters and
    decodes back to the text exactly.

    Every space becomes ``▁`` and a ``▁`` is put before the text (SentencePiece's dummy
    prefix: the first word reads like any other); a piece never crosses a word start. The
    decoder turns each ``▁`` back into a space and drops the first, so leading, double and
    trailing spaces survive; no other character is touched (a ``▁`` in the text itself comes
    back as a space).
    """
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK, fuse_unk=True))
        trainer = trainers.BpeTrainer(**options, show_progress=False)
    else:
        if options.pop("min_frequency") != 1:
            raise InputError("min_frequency is not an option of kind='unigram'; leave it at 1")
        tokenizer = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(**options, unk_token=UNK, show_progress=False)
    tokenizer.normalizer = normalizers.Prepend(SPACE)  # only marks the start; no normalisation
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(SPACE, prepend_scheme="never")
    tokenizer.decoder = decoders.Metaspace(SPACE, prepend_scheme="always")
    return tokenizer, trainer


def _stream_tokenizer(kind: str, texts: list[str], options: dict) -> Tokenizer:
    """A trained ``"char"`` or ``"byte-bpe"`` tokenizer for language modelling: the text as
    written, no normalisation, no special token added by :meth:`Tokenizer.encode`, and a
    decoder that gives the text back exactly.

    ``"char"``: a BPE model without merges over the characters of ``texts`` (spaces and
    newlines included), so each character is one token and an unseen one is ``[UNK]``; the
    decoder concatenates (``decoders.Fuse``). ``"byte-bpe"``: GPT-2's byte-level BPE (each
    UTF-8 byte is mapped to a printable symbol, a space before a word is kept in the word's
    pieces, merges never cross the GPT-2 pre-tokenizer's word boundaries).
    """
    specials = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    if kind == "char":
        alphabet = sorted(set().union(*map(set, texts)))
        vocab = {**specials, **{c: len(specials) + i for i, c in enumerate(alphabet)}}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
        tokenizer.add_special_tokens(list(SPECIAL_TOKENS))  # ids 0-3, as in the vocabulary
        tokenizer.decoder = decoders.Fuse()
        return tokenizer
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(**options, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    for expected, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != expected:  # the trainer puts specials first
            raise RuntimeError(f"special token {token} got id {tokenizer.token_to_id(token)}, "
                               f"expected {expected}")
    return tokenizer
