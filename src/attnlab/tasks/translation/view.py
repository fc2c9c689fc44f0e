"""The attention of a translation run, for the HTML view, the live app and ``show``.

:func:`attend_translation` translates one source sentence (greedy, or beam search with
``beam > 1``) and keeps three kinds of attention, every layer and head:

* ``"self"``: the encoder's self-attention, source × source ``(L_e, H, S, S)``;
* ``"decoder"``: the decoder's causal self-attention, decoder input × decoder input
  ``(L_d, H, T, T)`` (``[BOS]`` + the generated tokens, the last one left out);
* ``"cross"``: the cross-attention captured during generation, ``(L_d, H, T, S)``: row ``t``
  is the step that chose generated token ``t`` (``[EOS]`` last when the output ended).

The two self-attentions come from one teacher-forced forward pass on the source and ``[BOS]`` +
the output under :func:`~attnlab.inspect.capture`; its cross-attention equals the one captured
while generating (``tests/test_translation_attention.py``), so the three kinds belong to the
same output. :func:`translation_payload` turns them into the page's data, each kind also merged
into words (attention to a word sums its pieces', from a word averages them; a token of no word,
``[BOS]`` or ``[EOS]``, stays itself, so merged rows still sum to 1).

Legend: ``L_e``/``L_d`` encoder/decoder layers, ``H`` heads, ``S`` source tokens (``[EOS]``
last), ``T`` target positions, ``U`` words (and tokens of no word).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attnlab.errors import InputError
from attnlab.inspect.alignment import merge_pieces, source_piece_words, target_piece_words
from attnlab.inspect.capture import attention_modules, capture
from attnlab.inspect.html import AttentionView, model_name, quantize, render_page
from attnlab.inspect.mattered import Mattered, read_faithfulness
from attnlab.models.seq2seq import Seq2SeqTransformer
from attnlab.tasks.translation.translator import Translator
from attnlab.text.tokenizer import SPECIAL_TOKENS

__all__ = ["KIND_LABELS", "TranslationAttended", "attend_translation", "translation_payload",
           "translation_view"]

KIND_LABELS = {"self": "encoder self-attention (source \u00d7 source)",
               "decoder": "decoder self-attention (target \u00d7 target, causal)",
               "cross": "cross-attention (target \u00d7 source)"}
DEFAULT_KIND = "cross"  # the kind the page opens on
DECISION_KINDS = ("cross", "decoder")  # kinds whose query row t is the step that chose token t


@dataclass(frozen=True)
class TranslationAttended:
    """One source sentence, its translation and the three kinds of attention."""

    text: str
    translation: str
    ids: list[int]  # generated ids, without [BOS] and [EOS]
    finished: bool  # the output ended with [EOS]
    truncated: bool  # the source was cut to the model's longest input
    beam: int  # 1: greedy
    source_tokens: list[str]  # S pieces the encoder saw, [EOS] last
    decoder_tokens: list[str]  # T decoder inputs: [BOS], then the generated pieces
    target_tokens: list[str]  # T generated pieces, then [EOS] when finished
    encoder_names: list[str]  # dotted names of the encoder's self-attention modules
    decoder_names: list[str]  # of the decoder's self-attention modules
    cross_names: list[str]  # of the decoder's cross-attention modules
    encoder: Tensor  # (L_e, H, S, S)
    decoder: Tensor  # (L_d, H, T, T), causal
    cross: Tensor  # (L_d, H, T, S), captured during generation


def _module_names(model: Seq2SeqTransformer) -> tuple[list[str], list[str], list[str]]:
    """The dotted names of the encoder self-, decoder self- and cross-attention modules."""
    names = {id(m): n for n, m in attention_modules(model).items()}
    return ([names[id(layer.attn)] for layer in model.encoder.layers],
            [names[id(layer.self_attn)] for layer in model.decoder.layers],
            [names[id(layer.cross_attn)] for layer in model.decoder.layers])


@torch.no_grad()
def attend_translation(translator: Translator, text: str, *, beam: int = 1,
                       max_length: int | None = None) -> TranslationAttended:
    """Translate ``text`` and keep its attention (see the module docstring).

    Args:
        translator: the run's :class:`~attnlab.tasks.translation.translator.Translator`.
        text: the source sentence.
        beam: 1 for greedy search, else the beam size (the best beam is shown).
        max_length: most tokens generated (default as :func:`greedy_search`).
    """
    source_ids = translator.encode([text])[0] if isinstance(text, str) else []  # pieces + [EOS]
    if len(source_ids) < 2:
        raise InputError(f"text {text!r} has no tokens")
    found = translator.translate([text], beam=beam, max_length=max_length, attention=True)[0]
    model, c = translator.model, translator.model.config
    device = next(model.parameters()).device
    targets = found.ids + [c.eos_token_id] * found.finished  # T
    decoder_ids = [c.bos_token_id, *targets[:-1]]  # T: teacher forcing, as in training
    enc_names, dec_names, cross_names = _module_names(model)
    with capture(model, layers=enc_names + dec_names) as cap:
        model(torch.tensor([source_ids], device=device),  # (1, S)
              torch.ones(1, len(source_ids), dtype=torch.long, device=device),  # (1, S)
              torch.tensor([decoder_ids], device=device))  # (1, T)
    return TranslationAttended(
        text=text, translation=found.translation, ids=list(found.ids),
        finished=found.finished, truncated=found.truncated, beam=beam,
        source_tokens=found.source_tokens, decoder_tokens=translator.pieces(decoder_ids),
        target_tokens=translator.pieces(targets), encoder_names=enc_names,
        decoder_names=dec_names, cross_names=cross_names,
        encoder=torch.stack([cap[n][0] for n in enc_names]).float().cpu(),  # (L_e, H, S, S)
        decoder=torch.stack([cap[n][0] for n in dec_names]).float().cpu(),  # (L_d, H, T, T)
        cross=found.attention)  # (L_d, H, T, S)


def _units(tokens: Sequence[str], words: Sequence[int | None], names: Sequence[str]
           ) -> tuple[list[int], list[str], list[int]]:
    """Each token's unit (its word; itself for a token of no word), and the units' labels and
    special marks, in the order of their first token."""
    index: dict[tuple[str, int], int] = {}
    unit_of, labels, special = [], [], []
    for t, (token, word) in enumerate(zip(tokens, words, strict=True)):
        key = ("word", word) if word is not None else ("token", t)
        if key not in index:
            index[key] = len(labels)
            labels.append(names[word] if word is not None else token)
            special.append(int(word is None))
        unit_of.append(index[key])
    return unit_of, labels, special


def _special(tokens: Sequence[str]) -> list[int]:
    return [int(t in SPECIAL_TOKENS) for t in tokens]


def _kind(name: str, layer_names: list[str], weights: Tensor, queries: tuple, keys: tuple
          ) -> dict:
    """One attention kind of the payload: pieces, and the same merged into words.

    ``queries`` and ``keys``: ``(tokens, word of each token, word names)``.
    """
    q_units, q_labels, q_special = _units(*queries)
    k_units, k_labels, k_special = _units(*keys)
    words = merge_pieces(weights, q_units, k_units, len(q_labels), len(k_labels))  # (L, H, U, U')
    return {
        "name": name, "label": KIND_LABELS[name], "layer_names": layer_names,
        **_matrices(weights, list(queries[0]), list(keys[0]), _special(queries[0]),
                    _special(keys[0])),
        "words": _matrices(words, q_labels, k_labels, q_special, k_special),
    }


def _matrices(weights: Tensor, query_tokens: list[str], key_tokens: list[str],
              query_special: list[int], key_special: list[int]) -> dict:
    """Tokens each side and every head's ``(rows, columns)`` weights, quantized."""
    return {"query_tokens": query_tokens, "key_tokens": key_tokens,
            "query_special": query_special, "key_special": key_special,
            "heads": [int(w.shape[0]) for w in weights],
            "attention": [[quantize(w[h]) for h in range(w.shape[0])] for w in weights]}


def _sentence(translator: Translator, a: TranslationAttended, mattered: dict | None = None
              ) -> dict:
    """The page's data for one translated sentence (``mattered``: its "what mattered" row)."""
    tokenizer = translator.tokenizer
    S, T = len(a.source_tokens), len(a.target_tokens)
    source_words = source_piece_words(tokenizer, a.text, S)
    target_words, output = target_piece_words(tokenizer, a.ids, T)
    source = (a.source_tokens, source_words, a.text.split())
    target = (a.target_tokens, target_words, output.split())
    decoder = (a.decoder_tokens, [None, *target_words[:T - 1]], output.split())
    return {
        "text": a.text, "translation": a.translation, "finished": a.finished, "beam": a.beam,
        "truncated": a.truncated, "kind": DEFAULT_KIND,
        "kinds": [_kind("self", a.encoder_names, a.encoder, source, source),
                  _kind("decoder", a.decoder_names, a.decoder, decoder, decoder),
                  _kind("cross", a.cross_names, a.cross, target, source)],
        "prediction": None, "rollout": None, "vectors": None,
        "vectors_note": "the neuron view is available for encoder (classification) runs only",
        "mattered": mattered,
    }


def translation_payload(translator: Translator, attended: Sequence[TranslationAttended],
                        name: str | None = None, *, mattered: Mattered | None = None) -> dict:
    """The JSON-ready data the page draws (see ``view.js``); the model is shown by ``name``
    (default its folder, :func:`~attnlab.inspect.html.model_name`). ``mattered``: the
    attributions of the same sentences and translations, shown as the "what mattered" row
    (with the run's faithfulness report, if it has one)."""
    rows = [None] * len(attended) if mattered is None else mattered.blocks(
        len(attended), [_cross(a, mattered, i) for i, a in enumerate(attended)],
        DECISION_KINDS)
    return {"model": model_name(name if name is not None else translator.path),
            "task": "translation",
            "sentences": [_sentence(translator, a, row) for a, row in zip(attended, rows,
                                                                          strict=True)],
            "faithfulness": None if mattered is None else read_faithfulness(translator.path)}


def _cross(a: TranslationAttended, mattered: Mattered, i: int) -> Tensor | None:
    """The cross-attention shown beside sentence ``i``'s attributions: the last decoder
    layer's, mean of its heads ``(T, S)``; none if the attributions explain other tokens."""
    explained = [atts[i] for atts in mattered.by_method.values()]
    if not explained or explained[0].targets != a.target_tokens:
        return None
    return a.cross[-1].mean(0)  # (H, T, S) -> (T, S)


def translation_view(translator: Translator, texts: Sequence[str] | str, *, beam: int = 1,
                     name: str | None = None, mattered: Mattered | None = None
                     ) -> AttentionView:
    """Translate ``texts`` and build the explorer page for all of them (see
    :func:`attend_translation`; ``name``: the model as shown; ``mattered``: the attributions
    of the same translations, see :func:`translation_payload`)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise InputError("texts must hold at least one sentence")
    attended = [attend_translation(translator, t, beam=beam) for t in texts]
    return AttentionView(render_page("view.html", translation_payload(
        translator, attended, name, mattered=mattered)))
