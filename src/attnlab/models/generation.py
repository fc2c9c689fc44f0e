"""Decoding with an encoder-decoder (:class:`~attnlab.models.seq2seq.Seq2SeqTransformer`,
Marian): greedy and beam search, apart from the model (as fairseq's ``SequenceGenerator``).

Both run the decoder one target position at a time. With ``use_cache=True`` a step feeds only
the newest token and the model's :class:`~attnlab.models.transformer_decoder.DecoderCache`
supplies the keys and values of the earlier ones (and of the source, projected once); with
``use_cache=False`` each step recomputes the whole prefix, the reference the cache is tested
against. Both give the same tokens.

A hypothesis of ``n`` generated tokens (its EOS included) scores
``sum(log p) / n ** length_penalty``, fairseq's length normalisation. Padding is never generated.
Beam search keeps ``K`` live hypotheses per sentence in one batch of ``B·K`` rows; at each step
the ``2K`` best continuations are ranked, those ending in EOS among the first ``K`` are set
aside as finished and the ``K`` best others go on. A sentence is done, and its rows leave the
batch, when it has ``K`` finished hypotheses and its best live one, normalised by its current
length, scores no better than the ``K``-th finished one (the rule of Hugging Face's
``early_stopping=False``). With ``early_stopping=True`` it is done as soon as it has ``K``
finished hypotheses (fairseq's rule): faster, but then low-scoring hypotheses that end early
can fill the ``K`` places before the best one ends (a tiny model trained to reverse its input
got 2 of its 32 training sentences wrong this way with beam 4, none with the default). Under
either rule beam 1 is greedy search. Hypotheses still live at ``max_length`` compete
unfinished, unless the model's config names a ``forced_eos_token_id`` (Marian's): then the last
step may only choose that token, with log-probability 0 (Hugging Face's
``ForcedEOSTokenLogitsProcessor``), and every hypothesis ends.

Any model meeting :class:`EncoderDecoder` can be searched (:class:`~attnlab.models.seq2seq.
Seq2SeqTransformer`, :class:`~attnlab.models.marian.MarianMTModel`).

With ``attention=True`` (:func:`greedy_search`, :func:`beam_search_nbest`) each hypothesis also
carries the cross-attention of every decoder layer and head while its tokens were chosen,
observed on each layer's ``cross_attn.hook_pattern`` at every step. Beam search records the
beams' back-pointers and traces a hypothesis back along them when it is set aside, so the
attention is that of the tokens returned; it equals the cross-attention of one teacher-forced
forward pass on them. Without it nothing is observed and the cross-attention stays fused.

Legend: ``B`` sentences, ``K`` beam size, ``N`` rows (``B`` or ``B·K``), ``S`` source length,
``t`` target positions so far, ``V`` vocabulary, ``L`` decoder layers, ``H`` heads, ``T``
tokens of a hypothesis.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.models.generation_attention import CrossAttentionRecorder, recording
from attnlab.models.transformer_decoder import DecoderCache

__all__ = [
    "EncoderDecoder",
    "Hypothesis",
    "beam_search",
    "beam_search_nbest",
    "evaluating",
    "greedy",
    "greedy_search",
    "sequence_scores",
]


@runtime_checkable
class EncoderDecoder(Protocol):
    """What the searches ask of a model: its ``config`` (``bos_token_id``, the decoder's first
    input; ``eos_token_id``; ``pad_token_id``; ``max_len``; optionally
    ``forced_eos_token_id``), ``encode`` and ``decode`` as
    :class:`~attnlab.models.seq2seq.Seq2SeqTransformer`'s, a ``new_cache`` and
    ``check_source``; with ``attention=True``, ``decoder.layers[i].cross_attn`` attention
    modules."""

    config: Any

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor: ...

    def decode(self, decoder_input_ids: Tensor, memory: Tensor,
               attention_mask: Tensor | None = None,
               cache: DecoderCache | None = None) -> Tensor: ...

    def new_cache(self) -> DecoderCache: ...

    def check_source(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> None: ...


class Hypothesis(NamedTuple):
    """One generated target."""

    tokens: list[int]  # generated ids, without BOS and EOS
    score: float  # sum of log-probabilities (EOS included) / length ** length_penalty
    finished: bool  # ended with EOS (False: stopped at max_length)
    # with attention=True: (L, H, T, S_b) cross-attention while choosing each token (EOS last,
    # when finished: T = len(tokens) + finished) over the sentence's S_b unpadded source tokens
    attention: Tensor | None = None


def greedy(model: EncoderDecoder, input_ids: Tensor, attention_mask: Tensor | None = None,
           *, max_length: int | None = None, use_cache: bool = True) -> list[list[int]]:
    """The most likely next token at each step, until EOS or ``max_length`` tokens.

    Args:
        model: the translation model (run in eval mode, without gradients).
        input_ids: source, a long tensor ``(B, S)`` of ids in ``[0, vocab_size)`` (not a
            list: make one with ``torch.tensor``); attention_mask ``(B, S)``: 1 = token,
            0 = padding, or ``None``. Anything else raises ``TypeError`` or ``ValueError``
            naming the argument, the expected and the actual value.
        max_length: most tokens generated per sentence (EOS included); default
            ``min(S + 50, max_len)``.
        use_cache: feed one token per step with the key/value cache (fast), or recompute
            the prefix each step.

    Returns:
        The generated ids of each sentence, without BOS and EOS. :func:`greedy_search` also
        gives scores.
    """
    return [h.tokens for h in greedy_search(model, input_ids, attention_mask,
                                            max_length=max_length, use_cache=use_cache)]


def beam_search(model: EncoderDecoder, input_ids: Tensor,
                attention_mask: Tensor | None = None, *, beam: int = 5,
                max_length: int | None = None, length_penalty: float = 1.0,
                early_stopping: bool = False, use_cache: bool = True) -> list[list[int]]:
    """The best of ``beam`` hypotheses per sentence, by ``score / length ** length_penalty``.

    Args: as :func:`greedy`, and ``beam`` (``K >= 1``), ``length_penalty`` (``0``: raw sums
    of log-probabilities, favouring short outputs; ``1``: per-token average) and
    ``early_stopping`` (stop a sentence at ``K`` finished hypotheses, as fairseq; by default,
    only once its live hypotheses score no better than those: see the module docstring).

    Returns:
        The generated ids of each sentence's best hypothesis, without BOS and EOS.
        :func:`beam_search_nbest` gives the ``n`` best with scores.
    """
    nbest = beam_search_nbest(model, input_ids, attention_mask, beam=beam, max_length=max_length,
                              length_penalty=length_penalty, early_stopping=early_stopping,
                              use_cache=use_cache)
    return [hyps[0].tokens for hyps in nbest]


def greedy_search(model: EncoderDecoder, input_ids: Tensor,
                  attention_mask: Tensor | None = None, *, max_length: int | None = None,
                  length_penalty: float = 1.0, use_cache: bool = True,
                  attention: bool = False) -> list[Hypothesis]:
    """:func:`greedy` with scores: one :class:`Hypothesis` per sentence (``length_penalty``
    only changes the score reported); with ``attention=True``, with its cross-attention."""
    max_length = _check_inputs(model, input_ids, attention_mask, max_length)
    _check_length_penalty(length_penalty)
    c = model.config
    with torch.no_grad(), evaluating(model), recording(model, input_ids, attention_mask,
                                                         attention) as recorder:
        decoder = _Decoder(model, input_ids, attention_mask, use_cache, recorder)
        B = input_ids.shape[0]
        tokens = input_ids.new_full((B, 1), c.bos_token_id)  # (B, 1)
        scores = decoder.memory.new_zeros(B, dtype=decoder.dtype)  # (B,)
        done = torch.zeros(B, dtype=torch.bool, device=input_ids.device)  # (B,)
        for step in range(max_length):
            log_probs = decoder.next_log_probs(tokens, last=step == max_length - 1)  # (B, V)
            best, token = log_probs.max(dim=-1)  # (B,), (B,)
            token = token.masked_fill(done, c.pad_token_id)  # finished rows only pad
            scores += best.masked_fill(done, 0.0)
            tokens = torch.cat([tokens, token[:, None]], dim=1)  # (B, t + 1)
            done |= token == c.eos_token_id
            if bool(done.all()):
                break
        hyps = [_hypothesis(row[1:], score, c.eos_token_id, c.pad_token_id, length_penalty)
                for row, score in zip(tokens.tolist(), scores.tolist(), strict=True)]
        if recorder is not None:
            B = list(range(len(hyps)))
            weights = recorder.attention(B, B, [len(h.tokens) + h.finished for h in hyps])
            hyps = [h._replace(attention=w) for h, w in zip(hyps, weights, strict=True)]
    return hyps


def beam_search_nbest(model: EncoderDecoder, input_ids: Tensor,
                      attention_mask: Tensor | None = None, *, beam: int = 5,
                      max_length: int | None = None, length_penalty: float = 1.0,
                      early_stopping: bool = False, use_cache: bool = True,
                      n_best: int = 1, attention: bool = False) -> list[list[Hypothesis]]:
    """:func:`beam_search` with scores: the ``n_best`` hypotheses of each sentence, best first;
    with ``attention=True``, each with its cross-attention."""
    _check_beam(beam, n_best, length_penalty, early_stopping)
    max_length = _check_inputs(model, input_ids, attention_mask, max_length)
    c, K = model.config, beam
    with torch.no_grad(), evaluating(model), recording(model, input_ids, attention_mask,
                                                         attention) as recorder:
        decoder = _Decoder(model, input_ids, attention_mask, use_cache, recorder)
        B = input_ids.shape[0]
        decoder.reorder(torch.arange(B, device=input_ids.device).repeat_interleave(K))  # B·K
        tokens = input_ids.new_full((B * K, 1), c.bos_token_id)  # (B·K, 1)
        scores = decoder.memory.new_full((B, K), float("-inf"), dtype=decoder.dtype)
        scores[:, 0] = 0.0  # the K beams start equal: let one of them go on
        alive = list(range(B))  # the sentence of each group of K rows
        finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        for step in range(max_length):
            n = len(alive)
            log_probs = decoder.next_log_probs(tokens, last=step == max_length - 1)  # (n·K, V)
            V = log_probs.shape[-1]
            log_probs = log_probs.view(n, K, V)  # (n, K, V)
            candidates = (scores[:, :, None] + log_probs).view(n, K * V)  # (n, K·V)
            top, index = candidates.topk(2 * K, dim=1)  # (n, 2K), best first
            beam_of, token = index // V, index % V  # (n, 2K) each
            ends = token == c.eos_token_id  # (n, 2K)
            _set_aside(finished, alive, tokens, top, beam_of, ends, step + 1, length_penalty,
                       recorder)
            scores, order = top.masked_fill(ends, float("-inf")).topk(K, dim=1)  # (n, K)
            rows = torch.arange(n, device=tokens.device)[:, None] * K + beam_of.gather(1, order)
            token = token.gather(1, order)  # (n, K): the continuations kept
            live = [s / (step + 1) ** length_penalty for s in scores[:, 0].tolist()]
            keep = [i for i, s in enumerate(alive)
                    if not _done(finished[s], K, live[i], early_stopping)]
            if len(keep) < n:  # done sentences leave the batch
                kept = torch.tensor(keep, dtype=torch.long, device=tokens.device)
                rows, token, scores = rows[kept], token[kept], scores[kept]  # (n', K)
                alive = [alive[i] for i in keep]
            if not alive:
                break
            rows = rows.view(-1)  # (n'·K,)
            tokens = torch.cat([tokens.index_select(0, rows), token.view(-1, 1)],
                               dim=1)  # (n'·K, t + 1)
            if recorder is not None:
                recorder.reorder(rows)
            if step + 1 < max_length:
                decoder.reorder(rows)
        _set_aside_live(finished, alive, tokens, scores, length_penalty, recorder)
    return [hyps[:n_best] for hyps in finished]


def sequence_scores(model: EncoderDecoder, input_ids: Tensor,
                    attention_mask: Tensor | None, hypotheses: list[Hypothesis], *,
                    length_penalty: float = 1.0) -> list[float]:
    """Score given hypotheses (one per sentence) with one teacher-forced forward pass, as the
    searches do: ``sum(log p(token)) / n ** length_penalty`` over the tokens and, for finished
    ones, EOS."""
    _check_inputs(model, input_ids, attention_mask, None)
    _check_length_penalty(length_penalty)
    c = model.config
    if len(hypotheses) != input_ids.shape[0]:
        raise ValueError(f"hypotheses must hold one per sentence: {input_ids.shape[0]}, got "
                         f"{len(hypotheses)}")
    targets = [h.tokens + [c.eos_token_id] * h.finished for h in hypotheses]
    T = max(len(t) for t in targets)
    if T == 0:
        return [0.0] * len(targets)
    labels = input_ids.new_full((len(targets), T), c.pad_token_id)  # (B, T)
    for b, t in enumerate(targets):
        labels[b, :len(t)] = torch.tensor(t, dtype=torch.long)
    inputs = torch.cat([labels.new_full((len(targets), 1), c.bos_token_id), labels[:, :-1]], 1)
    with torch.no_grad(), evaluating(model):
        logits = model(input_ids, attention_mask, inputs).logits  # (B, T, V)
    log_probs = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
    picked = log_probs.gather(2, labels[:, :, None]).squeeze(2)  # (B, T)
    lengths = torch.tensor([len(t) for t in targets], device=labels.device)  # (B,)
    real = torch.arange(T, device=labels.device)[None, :] < lengths[:, None]  # (B, T)
    sums = picked.masked_fill(~real, 0.0).sum(dim=1)  # (B,)
    return [s / max(n, 1) ** length_penalty for s, n in zip(sums.tolist(), lengths.tolist(),
                                                             strict=True)]


class _Decoder:
    """The encoder output and the decoder state of ``N`` rows, run one position at a time."""

    def __init__(self, model: EncoderDecoder, input_ids: Tensor,
                 attention_mask: Tensor | None, use_cache: bool,
                 recorder: CrossAttentionRecorder | None = None) -> None:
        self.model, self.mask, self.recorder = model, attention_mask, recorder
        self.memory = model.encode(input_ids, attention_mask)  # (N, S, D)
        self.cache = model.new_cache() if use_cache else None
        self.dtype = torch.promote_types(self.memory.dtype, torch.float32)  # of the scores

    def next_log_probs(self, tokens: Tensor, last: bool = False) -> Tensor:
        """Log-probabilities ``(N, V)`` of the token after ``tokens`` ``(N, t)``; padding
        gets ``-inf``; at the ``last`` step, a ``forced_eos_token_id`` gets 0, all else
        ``-inf``."""
        step = tokens if self.cache is None else tokens[:, -1:]  # (N, t) or (N, 1)
        logits = self.model.decode(step, self.memory, self.mask, self.cache)[:, -1]  # (N, V)
        if self.recorder is not None:
            self.recorder.record()
        log_probs = F.log_softmax(logits.to(self.dtype), dim=-1)  # (N, V)
        log_probs[:, self.model.config.pad_token_id] = float("-inf")
        forced = getattr(self.model.config, "forced_eos_token_id", None)
        if last and forced is not None:
            log_probs.fill_(float("-inf"))
            log_probs[:, forced] = 0.0
        return log_probs

    def reorder(self, rows: Tensor) -> None:
        """Keep the rows ``rows`` ``(N',)`` of everything, in that order."""
        self.memory = self.memory.index_select(0, rows)  # (N', S, D)
        self.mask = None if self.mask is None else self.mask.index_select(0, rows)  # (N', S)
        if self.cache is not None:
            self.cache.reorder(rows)


def _set_aside(finished, alive, tokens, top, beam_of, ends, length, length_penalty,
               recorder) -> None:
    """Keep the continuations ending in EOS among each sentence's ``K`` best as finished."""
    K = top.shape[1] // 2
    ends = ends[:, :K] & torch.isfinite(top[:, :K])  # (n, K): fairseq counts only the K best
    hits = ends.nonzero().tolist()
    if not hits:
        return
    top, beam_of = top[:, :K].tolist(), beam_of[:, :K].tolist()  # one copy to the host
    rows = [i * K + beam_of[i][j] for i, j in hits]
    weights = ([None] * len(rows) if recorder is None else
               recorder.attention(rows, [alive[i] for i, _ in hits], [length] * len(rows)))
    for (i, j), row, w in zip(hits, rows, weights, strict=True):
        score = top[i][j] / length ** length_penalty
        _add(finished[alive[i]], Hypothesis(tokens[row, 1:].tolist(), score, True, w), K)


def _set_aside_live(finished, alive, tokens, scores, length_penalty, recorder) -> None:
    """At ``max_length``: add each sentence's live hypotheses, unfinished."""
    K, length = scores.shape[1], tokens.shape[1] - 1
    live = [(i, k, s) for i in range(len(alive)) for k, s in enumerate(scores[i].tolist())
            if s != float("-inf")]
    weights = ([None] * len(live) if recorder is None else recorder.attention(
        [i * K + k for i, k, _ in live], [alive[i] for i, _, _ in live], [length] * len(live)))
    for (i, k, score), w in zip(live, weights, strict=True):
        hyp = Hypothesis(tokens[i * K + k, 1:].tolist(), score / length ** length_penalty,
                         False, w)
        _add(finished[alive[i]], hyp, K)


def _add(hyps: list[Hypothesis], hyp: Hypothesis, K: int) -> None:
    """Add ``hyp`` to a sentence's finished hypotheses, keeping the ``K`` best, best first."""
    hyps.append(hyp)
    hyps.sort(key=lambda h: -h.score)
    del hyps[K:]


def _done(hyps: list[Hypothesis], K: int, live: float, early_stopping: bool) -> bool:
    """Whether a sentence's search is over: ``K`` finished hypotheses and (unless
    ``early_stopping``) the best live one's score ``live``, normalised by its current length,
    no better than theirs (see the module docstring)."""
    return len(hyps) >= K and (early_stopping or hyps[K - 1].score >= live)


def _hypothesis(row: list[int], score: float, eos: int, pad: int,
                length_penalty: float) -> Hypothesis:
    """A greedy row (without BOS) cut at its EOS."""
    ended = eos in row
    tokens = row[:row.index(eos)] if ended else [t for t in row if t != pad]
    length = len(tokens) + ended
    return Hypothesis(tokens, score / max(length, 1) ** length_penalty, ended)


def _check_inputs(model: EncoderDecoder, input_ids: Tensor, attention_mask: Tensor | None,
                  max_length: int | None) -> int:
    """Check the model, the source (types, shapes and values) and ``max_length``; return
    ``max_length`` or its default."""
    if not isinstance(model, EncoderDecoder):
        raise TypeError(f"model must be an encoder-decoder (encode, decode, new_cache, "
                        f"check_source, config), such as a Seq2SeqTransformer; got "
                        f"{type(model).__name__}")
    model.check_source(input_ids, attention_mask)  # one read back: generation syncs anyway
    limit = model.config.max_len
    if max_length is None:
        return min(input_ids.shape[1] + 50, limit)
    if isinstance(max_length, bool) or not isinstance(max_length, int) \
            or not 1 <= max_length <= limit:
        raise ValueError(f"max_length must be an integer in [1, max_len={limit}] (the decoder "
                         f"sees BOS and max_length - 1 tokens), got {max_length!r}")
    return max_length


def _check_beam(beam: int, n_best: int, length_penalty: float, early_stopping: bool) -> None:
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be an integer >= 1, got {beam!r}")
    if isinstance(n_best, bool) or not isinstance(n_best, int) or not 1 <= n_best <= beam:
        raise ValueError(f"n_best must be an integer in [1, beam={beam}], got {n_best!r}")
    _check_length_penalty(length_penalty)
    if not isinstance(early_stopping, bool):
        raise ValueError(f"early_stopping must be a bool, got {early_stopping!r}")


def _check_length_penalty(length_penalty: float) -> None:
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) \
            or not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite number (0: raw sums of "
                         f"log-probabilities, 1: per-token average), got {length_penalty!r}")


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Run in eval mode (no dropout), then restore the mode the model had."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
