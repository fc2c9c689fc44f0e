"""A translation run as the inspection tools see it (:class:`~attnlab.inspect.protocol.
Inspectable`): its attention can be seen only after it translates, so each look translates first
(greedy, or beam search), then shows the encoder self-, decoder self- and cross-attention of
that output.

Legend: ``L`` decoder layers, ``H`` heads, ``T`` target tokens, ``S`` source tokens.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from attnlab.errors import InputError
from attnlab.inspect.alignment import align, pharaoh, word_attention
from attnlab.inspect.capture import attention_modules
from attnlab.inspect.decisions import Decisions
from attnlab.inspect.html import model_name
from attnlab.inspect.mattered import DEFAULT_METHOD, what_mattered
from attnlab.inspect.pictures import cross_attention_grid, cross_attention_map
from attnlab.inspect.protocol import HeadPass, Look
from attnlab.inspect.subject_parts import checked_ids, ordinary_ids
from attnlab.tasks.translation.attribution import translation_decisions
from attnlab.tasks.translation.translator import Translator
from attnlab.tasks.translation.view import attend_translation, translation_payload, translation_view

__all__ = ["EXAMPLE", "TranslationSubject"]

EXAMPLE = "Ein Hund rennt durch den Schnee."  # the sentence the live app opens on (German)
# per kind of attention: (the stack of the model, the attribute of each of its layers)
_STACKS = {"self": ("encoder", "attn"), "decoder": ("decoder", "self_attn"),
           "cross": ("decoder", "cross_attn")}


class TranslationSubject:
    """A translation run to look into: ``show`` (translation, word alignment, cross-attention
    pictures, the page of three attention kinds), the neuron view, the live app."""

    task = "translation"
    labels = None  # no classification head
    attention_kinds = tuple(_STACKS)
    show_options = ("beam", "words")  # beam search; subword pieces merged into words
    default_example = EXAMPLE

    def __init__(self, translator: Translator, name: str) -> None:
        self.translator, self.name = translator, name

    @classmethod
    def load(cls, spec: str | os.PathLike) -> TranslationSubject:
        """The translation run in folder ``spec``, shown by the name given."""
        return cls(Translator.load(spec), model_name(spec))

    def look(self, texts: Sequence[str], *, beam: int = 1, words: bool = False) -> Look:
        """Translate ``texts``; lines of translations, word alignments and, for each generated
        token, its top source token by integrated gradients; pictures of the first one's
        cross-attention (pieces, or words with ``words``); the page of all (with every
        attribution method in its "what mattered" row)."""
        found = self.translator.translate(texts, beam=beam, attention=True)
        merged = [word_attention(self.translator.tokenizer, t.text, t.ids, t.attention)
                  for t in found]
        # beam search's output is not the greedy one the attributions explain by default
        references = None if beam == 1 else [t.translation for t in found]
        explained = what_mattered(self, texts, methods=(DEFAULT_METHOD,),
                                  references=references)
        lines = []
        for i, (t, w) in enumerate(zip(found, merged, strict=True)):
            lines += [t.text, f"  translation: {t.translation}",
                      f"  alignment: {pharaoh(align(w.weights))}", *explained.lines(i)]
        weights, rows, columns = ((merged[0].weights, merged[0].target_words,
                                   merged[0].source_words) if words else
                                  (found[0].attention, found[0].target_tokens,
                                   found[0].source_tokens))
        n_layers, n_heads = weights.shape[:2]  # (L, H, T|J, S|I)

        def picture(layer: int | None, head: int | None):
            if layer is not None and not -n_layers <= layer < n_layers:
                raise InputError(f"layer must be in [0, {n_layers}) for {self.name}'s decoder, "
                                 f"got {layer}")
            if head is not None and not 0 <= head < n_heads:
                raise InputError(f"head must be in [0, {n_heads}), got {head}")
            if head is not None:
                return cross_attention_map(weights[layer, head], rows, columns,
                                           title=f"layer {layer}, head {head}")
            if layer is not None:
                return cross_attention_grid(weights[layer][None], rows, columns,  # (1, H, T, S)
                                            layers=[layer % n_layers])
            return cross_attention_grid(weights, rows, columns)

        warnings = [f"text {i} was cut to the model's longest input"
                    for i, t in enumerate(found) if t.truncated]

        def view():
            every = what_mattered(self, texts, references=references, known=explained)
            return translation_view(self.translator, texts, beam=beam, name=self.name,
                                    mattered=every)

        return Look(lines, warnings, n_layers, n_heads, picture, view)

    def decisions(self, text: str, *, target: str | int | None = None,
                  reference: str | None = None) -> Decisions:
        """Forced decoding of ``reference`` (``None``: the greedy translation) after ``text``,
        one decision per target token, ``[EOS]`` included, prepared for
        :func:`~attnlab.inspect.attribute` (see :mod:`attnlab.tasks.translation.attribution`)."""
        return translation_decisions(self.translator, text, target=target, reference=reference)

    def head_pass(self, text: str, attention: str) -> HeadPass:
        """Translate ``text`` greedily; the pass feeds the source and ``[BOS]`` + the
        translation (teacher forcing), as training does."""
        model, c = self.translator.model, self.translator.model.config
        source = self.translator.encode([text])[0]  # pieces + [EOS]
        if len(source) < 2:
            raise InputError(f"text {text!r} has no tokens")
        found = self.translator.translate([text])[0]
        target_ids = [c.bos_token_id, *found.ids[:c.max_len - 1]]
        input_ids = torch.tensor([source])  # (1, S)
        mask = torch.ones_like(input_ids)  # (1, S)
        decoder_input_ids = torch.tensor([target_ids])  # (1, T)
        stack, attr = _STACKS[attention]
        names = {id(m): n for n, m in attention_modules(model).items()}
        modules = [names[id(getattr(layer, attr))] for layer in getattr(model, stack).layers]
        source_tokens, target_tokens = found.source_tokens, self.translator.pieces(target_ids)
        queries = source_tokens if attention == "self" else target_tokens
        keys = target_tokens if attention == "decoder" else source_tokens
        return HeadPass(model, self.name, modules, queries, keys,
                        lambda: model(input_ids, mask, decoder_input_ids),
                        generated=found.translation)

    def ordinary_ids(self) -> list[int]:
        """The joint vocabulary less special tokens: ids a probe may draw."""
        return ordinary_ids(self.translator.tokenizer)

    def ids_pass(self, ids: Sequence[int], attention: str) -> HeadPass:
        """One teacher-forced pass with source ``ids + [EOS]`` and target ``[BOS] + ids``:
        ``ids`` start at position 0 of the source and 1 of the target."""
        model, c = self.translator.model, self.translator.model.config
        ids = checked_ids(ids, self.translator.tokenizer)
        if len(ids) + 1 > c.max_len:
            raise InputError(f"ids must fit the model's longest input with [EOS] ({c.max_len} "
                             f"tokens), got {len(ids)} ids")
        source, target = [*ids, c.eos_token_id], [c.bos_token_id, *ids]
        input_ids, decoder_input_ids = torch.tensor([source]), torch.tensor([target])  # (1, S|T)
        stack, attr = _STACKS[attention]
        names = {id(m): n for n, m in attention_modules(model).items()}
        modules = [names[id(getattr(layer, attr))] for layer in getattr(model, stack).layers]
        pieces = self.translator.pieces
        queries = pieces(source) if attention == "self" else pieces(target)
        keys = pieces(target) if attention == "decoder" else pieces(source)
        offsets = (0 if attention == "self" else 1, 1 if attention == "decoder" else 0)
        return HeadPass(model, self.name, modules, queries, keys,
                        lambda: model(input_ids, torch.ones_like(input_ids), decoder_input_ids),
                        offsets=offsets)

    def payload(self, text: str) -> dict:
        """The live app's data: the translation, its three kinds of attention and what
        mattered to each generated token."""
        attended = attend_translation(self.translator, text)
        return translation_payload(self.translator, [attended], self.name,
                                   mattered=what_mattered(self, [text]))
