"""The one path from sentences to translations: a :class:`Translator` owns the model, its
tokenizer and the special ids they share, encodes sources one way, searches (greedy or beam)
and keeps the cross-attention of each output when asked.

Dev BLEU during training, ``attnlab evaluate``, ``translate``, ``show``, ``explain`` and
``serve`` all translate through it, so they all see the same source ids and the same outputs.

Legend: ``B`` sentences, ``S`` source tokens (``[EOS]`` last), ``L`` decoder layers, ``H``
heads, ``T`` generated tokens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from attnlab.errors import InputError
from attnlab.io.checkpoint import CONFIG_FILE, FORMAT
from attnlab.io.families import FAMILIES, load_family, read_config
from attnlab.io.registry import SEQ2SEQ, load_model
from attnlab.models.generation import (
    EncoderDecoder,
    Hypothesis,
    beam_search_nbest,
    greedy_search,
)
from attnlab.text import TextTokenizer, by_length, pad_sequences
from attnlab.text.marian_tokenizer import MarianTokenizer
from attnlab.text.tokenizer import EOS

__all__ = ["MODEL_TYPE", "Translation", "Translator"]

MODEL_TYPE = SEQ2SEQ  # config.json model_type of a translation run


@dataclass(frozen=True)
class Translation:
    """One text and the model's translation of it."""

    text: str
    translation: str
    tokens: list[str]  # the generated subword pieces
    ids: list[int] = field(default_factory=list)  # their ids
    source_tokens: list[str] = field(default_factory=list)  # what the encoder saw, [EOS] last
    finished: bool = True  # the output ended with [EOS] (False: cut at the length limit)
    truncated: bool = False  # the source was cut to the model's longest input
    # with attention=True: (L, H, T, S) cross-attention while choosing each generated token
    # (T = tokens, then [EOS] when finished) over the source tokens, on the CPU
    attention: Tensor | None = field(default=None, compare=False)

    @property
    def target_tokens(self) -> list[str]:
        """The tokens the rows of :attr:`attention` belong to: :attr:`tokens`, then ``[EOS]``
        when the output ended."""
        return self.tokens + [EOS] * self.finished

    def to_dict(self) -> dict:
        return {"text": self.text, "translation": self.translation, "tokens": self.tokens}


class Translator:
    """A translation model and its tokenizer, checked to agree on ``[BOS]`` (the decoder's
    first input), ``[EOS]`` and ``[PAD]``.

    Args:
        model: the encoder-decoder: a :class:`~attnlab.models.seq2seq.Seq2SeqTransformer`, or
            any model :mod:`attnlab.models.generation` searches (a Marian translator).
        tokenizer: the joint tokenizer it was trained with (a
            :class:`~attnlab.text.marian_tokenizer.MarianTokenizer` for Marian).
        path: the checkpoint folder it came from, if any (shown by the views).
        config: that checkpoint's ``config.json`` (its data set and languages), if any.
    """

    def __init__(self, model: EncoderDecoder, tokenizer: TextTokenizer | MarianTokenizer, *,
                 path: Path | None = None, config: dict | None = None) -> None:
        c = model.config
        wanted = {"bos": c.bos_token_id, "eos": c.eos_token_id, "pad": c.pad_token_id}
        has = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
               "pad": tokenizer.pad_token_id}
        if wanted != has:
            raise InputError(f"the model's special ids {wanted} differ from its tokenizer's "
                             f"{has}{f' in {path}' if path else ''}")
        self.model, self.tokenizer, self.path, self.config = model, tokenizer, path, config or {}

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> Translator:
        """The translator of a run or checkpoint folder (``best/``, else ``last/``), or of a
        Hugging Face folder of an encoder-decoder family (Marian), in eval mode."""
        if _is_family_folder(Path(path)):
            return cls.open_family(path, device)
        run = load_model(Path(path), device=device)
        if run.config.get("model_type") != MODEL_TYPE:
            raise InputError(f"{run.path} holds a {run.config.get('model_type')!r} model, not a "
                             f"translator ({MODEL_TYPE!r})")
        if run.tokenizer is None:
            raise FileNotFoundError(f"{run.path} has no tokenizer.json; cannot turn text into "
                                    f"ids")
        return cls(run.model.eval(), run.tokenizer, path=run.path, config=run.config)

    @classmethod
    def open_family(cls, path: str | os.PathLike, device: str = "cpu") -> Translator:
        """The translator of a Hugging Face folder of an encoder-decoder family (a Marian
        folder: ``config.json``, ``model.safetensors``, ``source.spm``, ``target.spm``,
        ``vocab.json``), through :mod:`attnlab.io.families`."""
        path = Path(path)
        family, config = read_config(path)
        if family.kind != "encoder-decoder":
            raise InputError(f"{path} holds a {family.model_type!r} model (kind "
                             f"{family.kind!r}), not a translator (an encoder-decoder such as "
                             f"'marian')")
        tokenizer = MarianTokenizer.load(path, max_length=config.max_len)
        return cls(load_family(path).to(device).eval(), tokenizer, path=path)

    def data_field(self, name: str, *, required: bool = True) -> str | None:
        """A field of the run's recorded data settings (``config.json``'s ``data``: ``source``,
        ``source_lang``, ``target_lang``), a non-empty string; ``None`` if absent and not
        ``required``.

        Raises:
            InputError: ``data`` is not a dict, or the field is absent (when ``required``) or
                not a non-empty string; the message names config.json and the field.
        """
        where = f"{self.path / CONFIG_FILE}" if self.path else "config.json"
        data = self.config.get("data", {})
        if not isinstance(data, dict):
            raise InputError(f"{where}: field 'data' (the run's data settings) must be a dict, "
                             f"got {json.dumps(data)[:60]}")
        value = data.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            found = "it is missing" if value is None else f"got {json.dumps(value)[:60]}"
            raise InputError(f"{where}: field 'data.{name}' must be a non-empty string; "
                             f"{found}")
        return value

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Source ids of each text: its pieces, then ``[EOS]`` (no ``[BOS]``), truncated to
        the model's longest input."""
        return [t.ids[1:] for t in self.tokenizer.tokenize(texts)]  # as translate() reads them

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The token string of each id."""
        return [self.tokenizer.tokenizer.id_to_token(i) for i in ids]

    @torch.no_grad()
    def translate(self, texts: Sequence[str], *, beam: int = 1, max_length: int | None = None,
                  batch_size: int = 64, attention: bool = False) -> list[Translation]:
        """Translate ``texts``, batched by length: greedy with ``beam=1``, else the best of
        ``beam`` hypotheses; at most ``max_length`` tokens (default 50 more than the source,
        within the model's ``max_len``). With ``attention=True`` each :class:`Translation`
        carries the cross-attention of its output."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got a single str; wrap it in "
                            "a list")
        if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
            raise InputError(f"beam must be an integer >= 1, got {beam!r}")
        model = self.model.eval()
        device = next(model.parameters()).device
        seen = self.tokenizer.tokenize(texts)
        sources = [t.ids[1:] for t in seen]  # pieces + [EOS], as encode() gives
        found: list[Translation | None] = [None] * len(texts)
        for rows in by_length([len(x) for x in sources], batch_size):
            input_ids, mask = pad_sequences([sources[i] for i in rows],
                                            self.tokenizer.pad_token_id)  # (B, S) each
            hyps = self._search(input_ids.to(device), mask.to(device), beam, max_length,
                                attention)
            for row, hyp in zip(rows, hyps, strict=True):
                found[row] = Translation(
                    texts[row], self.tokenizer.decode(hyp.tokens), self.pieces(hyp.tokens),
                    hyp.tokens, self.pieces(sources[row]), hyp.finished, seen[row].truncated,
                    None if hyp.attention is None else hyp.attention.float().cpu())
        return found  # type: ignore[return-value]

    def _search(self, input_ids: Tensor, mask: Tensor, beam: int, max_length: int | None,
                attention: bool) -> list[Hypothesis]:
        """The hypothesis kept for each sentence: greedy with ``beam=1``, else the best beam."""
        if beam == 1:
            return greedy_search(self.model, input_ids, mask, max_length=max_length,
                                 attention=attention)
        return [n[0] for n in beam_search_nbest(self.model, input_ids, mask, beam=beam,
                                                max_length=max_length, attention=attention)]


def _is_family_folder(path: Path) -> bool:
    """A Hugging Face model folder: a ``config.json`` that is not an attnlab checkpoint's and
    names a family of :data:`~attnlab.io.families.FAMILIES`."""
    config = path / CONFIG_FILE
    if not path.is_dir() or not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (isinstance(data, dict) and data.get("format") != FORMAT
            and data.get("model_type") in FAMILIES)
