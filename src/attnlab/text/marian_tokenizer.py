"""The tokenizer of a Marian (opus-mt) folder: ``source.spm`` and ``target.spm`` (SentencePiece
models) and ``vocab.json`` (piece -> id; ``target_vocab.json`` too when the two sides have
separate vocabularies), as ``transformers``' ``MarianTokenizer`` reads them.

A source text becomes its source pieces (a leading language code such as ``>>fr<<`` kept as one
token), each looked up in ``vocab.json`` (``<unk>`` when absent), then ``</s>``; target ids are
turned back into pieces and joined by the target model. Moses punctuation normalisation
(``sacremoses``, optional in ``transformers`` too) is not applied.

:class:`MarianTokenizer` offers what a translator and its views ask of
:class:`~attnlab.text.TextTokenizer`: :meth:`~MarianTokenizer.tokenize` lays each text out as
``[start] pieces </s>``, the start being Marian's decoder start (``<pad>``), which the source
drops, as it drops a ``[BOS]``; :attr:`~MarianTokenizer.tokenizer` answers what a
``tokenizers.Tokenizer`` is asked (character offsets of the pieces, id to piece, which ids are
special).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import sentencepiece
from torch import Tensor

from attnlab.errors import InputError
from attnlab.text.tokenizer import TokenizedText

__all__ = ["MarianTokenizer", "PieceEncoding", "is_marian_folder"]

SOURCE_SPM, TARGET_SPM = "source.spm", "target.spm"
VOCAB, TARGET_VOCAB = "vocab.json", "target_vocab.json"
EOS, UNK, PAD = "</s>", "<unk>", "<pad>"
SPACE = "\u2581"  # SentencePiece's mark of a space before a piece


def is_marian_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a Marian tokenizer's files."""
    return all((Path(folder) / name).is_file() for name in (SOURCE_SPM, TARGET_SPM, VOCAB))


class PieceEncoding(NamedTuple):
    """One text as ``tokenizers``' ``Encoding`` describes it: ``[start] pieces </s>``."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]  # characters of the text each token covers; (0, 0): special
    special_tokens_mask: list[int]  # 1 for the start and </s>


class _Added(NamedTuple):
    special: bool  # as tokenizers' AddedToken.special


class _Pieces:
    """The part of ``tokenizers.Tokenizer`` the views read: offsets, id to piece, specials."""

    def __init__(self, owner: MarianTokenizer) -> None:
        self.owner = owner

    def encode(self, text: str) -> PieceEncoding:
        o = self.owner
        found = o.source_pieces(text)
        ids = [o.bos_token_id, *(o.vocab.get(p, o.unk_token_id) for p, _ in found),
               o.eos_token_id]
        return PieceEncoding(ids, [o.id_to_token(i) for i in ids],
                             [(0, 0), *(span for _, span in found), (0, 0)],
                             [1] + [0] * len(found) + [1])

    def id_to_token(self, index: int) -> str | None:
        return self.owner.id_to_token(index)

    def token_to_id(self, token: str) -> int | None:
        return self.owner.token_to_id(token)

    def get_vocab_size(self) -> int:
        return self.owner.vocab_size

    def get_added_tokens_decoder(self) -> dict[int, _Added]:
        o = self.owner
        return {i: _Added(True) for i in (o.eos_token_id, o.pad_token_id, o.unk_token_id)}


class MarianTokenizer:
    """SentencePiece source and target models and their vocabularies (see the module
    docstring).

    Args:
        source, target: the SentencePiece models of each side.
        vocab: piece -> id of the source (and of the target, unless ``target_vocab``).
        target_vocab: piece -> id of the target side, when the vocabularies are separate.
        max_length: the longest source in tokens, ``</s>`` included (the model's positions).
    """

    def __init__(self, source: sentencepiece.SentencePieceProcessor,
                 target: sentencepiece.SentencePieceProcessor, vocab: dict[str, int], *,
                 target_vocab: dict[str, int] | None = None, max_length: int = 512) -> None:
        for name, table in (("vocab", vocab), ("target_vocab", target_vocab or vocab)):
            missing = [t for t in (EOS, UNK, PAD) if t not in table]
            if missing:
                raise InputError(f"{name} must hold {EOS}, {UNK} and {PAD}; it lacks "
                                 f"{', '.join(missing)}")
        self.source, self.target, self.vocab = source, target, vocab
        self.target_vocab = vocab if target_vocab is None else target_vocab
        self.pieces_of = {i: p for p, i in self.target_vocab.items()}  # target id -> piece
        self.max_length = max_length
        self.tokenizer = _Pieces(self)

    @classmethod
    def load(cls, folder: str | os.PathLike, max_length: int = 512) -> MarianTokenizer:
        """The tokenizer of a Marian folder (``source.spm``, ``target.spm``, ``vocab.json``,
        optionally ``target_vocab.json``)."""
        folder = Path(folder)
        if not is_marian_folder(folder):
            found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "no folder"
            raise InputError(f"{folder} must hold {SOURCE_SPM}, {TARGET_SPM} and {VOCAB} (a "
                             f"Marian tokenizer); found {found}")
        models = []
        for name in (SOURCE_SPM, TARGET_SPM):
            model = sentencepiece.SentencePieceProcessor()
            try:
                model.Load(str(folder / name))
            except (OSError, RuntimeError) as err:
                raise InputError(f"{folder / name} is not a SentencePiece model: {err}") from err
            models.append(model)
        target = folder / TARGET_VOCAB
        return cls(*models, _read_vocab(folder / VOCAB), max_length=max_length,
                   target_vocab=_read_vocab(target) if target.is_file() else None)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def eos_token_id(self) -> int:
        return self.vocab[EOS]

    @property
    def pad_token_id(self) -> int:
        return self.vocab[PAD]

    @property
    def bos_token_id(self) -> int:
        """The decoder's first input: Marian starts from ``<pad>``."""
        return self.target_vocab[PAD]

    @property
    def unk_token_id(self) -> int:
        return self.vocab[UNK]

    def token_to_id(self, token: str) -> int | None:
        return self.target_vocab.get(token)

    def id_to_token(self, index: int) -> str | None:
        return self.pieces_of.get(int(index))

    def source_pieces(self, text: str) -> list[tuple[str, tuple[int, int]]]:
        """The source pieces of ``text`` with the characters each covers (found by walking
        the text; ``(0, 0)`` for a piece the model's normalisation changed)."""
        code, at = [], 0
        if text.startswith(">>") and (end := text.find("<<")) != -1:  # a language code
            code, at = [(text[:end + 2], (0, end + 2))], end + 2
        found = []
        for piece in self.source.encode(text[at:], out_type=str):
            body = piece.replace(SPACE, " ").lstrip(" ")
            start = at + len(text[at:]) - len(text[at:].lstrip())  # past the spaces
            if body and text.startswith(body, start):
                found.append((piece, (start, start + len(body))))
                at = start + len(body)
            else:
                found.append((piece, (0, 0)))
        return code + found

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Source ids of each text as ``transformers``' ``MarianTokenizer`` gives them: its
        pieces (at most ``max_length - 1``), then ``</s>``."""
        return [t.ids[1:] for t in self.tokenize(texts)]

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        """Each text as ``[start] pieces </s>`` (see the module docstring), its pieces cut to
        ``max_length - 1``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got a single str")
        found = []
        for text in texts:
            encoding = self.tokenizer.encode(text)
            keep = self.max_length - 1
            ids = [*encoding.ids[:-1][:keep + 1], self.eos_token_id]
            special = [*encoding.special_tokens_mask[:-1][:keep + 1], 1]
            found.append(TokenizedText(ids, [self.id_to_token(i) or UNK for i in ids], special,
                                       len(encoding.ids) - 2 > keep))
        return found

    def decode(self, ids: Sequence[int] | Tensor, *, skip_special_tokens: bool = True) -> str:
        """The text of target ``ids``: their pieces joined by the target model (``</s>``,
        ``<pad>`` and ``<unk>`` left out with ``skip_special_tokens``, as ``transformers``
        does)."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        special = {self.eos_token_id, self.bos_token_id, self.target_vocab[UNK]}
        out, run = [], []
        for i in ids:
            piece = self.id_to_token(i) or UNK
            if i in special:
                if not skip_special_tokens:
                    out += [self.target.decode_pieces(run), piece]
                    run = []
                continue
            run.append(piece)
        out.append(self.target.decode_pieces(run))
        return " ".join(x for x in out if x).strip()

    def decode_batch(self, ids: Sequence[Sequence[int]] | Tensor, *,
                     skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in ids]


def _read_vocab(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise InputError(f"{path} must map each piece to an integer id")
    return data
