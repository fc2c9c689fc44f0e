"""Heads by what they do: role scores computed from attention patterns.

The scores are functions of one layer's weights ``(H, Q, K)`` (every head at once) and, where
the role needs it, the tokens or the positions the pattern is expected to hit:

* previous-token / next-token: the share of each query's attention on position ``i-1`` /
  ``i+1``, averaged over the queries that have such a position (:func:`shift_share`);
* first token, ``[CLS]``, ``[SEP]``, punctuation (Clark et al. 2019, "What does BERT look
  at?"): the attention each query gives those keys, averaged over queries (:func:`key_share`);
* broad heads: the mean entropy of the rows (nats), and the same normalised by the log of the
  number of keys each row may see, 1.0 for uniform attention (:func:`row_entropy`);
* duplicate-token and induction heads on random tokens repeated twice (TransformerLens,
  ``head_detector.py``, ``error_measure="mul"``: the attention that lands where the pattern
  expects over all the attention of the counted rows, :func:`pattern_share`). Differences,
  stated: only queries in the second half count (TransformerLens also divides by the first
  half's rows, which no pattern can hit, so a perfect head scores below 1 there); attention to
  the tokens the model puts before the sequence (``[CLS]``, ``[BOS]``: TransformerLens's
  ``exclude_bos``) is left out of both sums; the current token is kept (its
  ``exclude_current_token=False`` default).
* the in-context learning score of Olsson et al. 2022 needs per-position losses of a model that
  predicts the next token: :func:`in_context_score` takes them.
  :func:`~attnlab.inspect.roles_probe.head_roles` sees only attention patterns, so it does not
  compute it.

Legend: ``H`` heads, ``Q`` query tokens, ``K`` key tokens, ``B`` sequences, ``T`` positions.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

import torch
from torch import Tensor

from attnlab.errors import InputError

__all__ = ["CLS_TOKENS", "ROLES", "SEP_TOKENS", "in_context_score", "is_punctuation",
           "key_share", "pattern_share", "repeat_targets", "row_entropy", "shift_share",
           "text_roles"]

# the roles scored, in table order (all in [0, 1] except "entropy", in nats)
ROLES = ("previous", "next", "first", "cls", "sep", "punctuation", "entropy", "broad",
         "duplicate", "induction")
CLS_TOKENS = frozenset({"[CLS]", "<s>", "[BOS]", "<bos>", "<|startoftext|>"})  # sentence start
SEP_TOKENS = frozenset({"[SEP]", "</s>", "[EOS]", "<eos>", "<|endoftext|>"})  # sentence end
_SUBWORD_MARKS = ("##", "Ġ", "▁")


def _check(weights: Tensor) -> Tensor:
    if not isinstance(weights, Tensor) or weights.dim() != 3 or 0 in weights.shape:
        shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise InputError(f"weights must be a non-empty tensor (H, Q, K), got {shape}")
    return weights.double()


def shift_share(weights: Tensor, shift: int) -> Tensor:
    """Attention of query ``q`` on key ``q + shift``, averaged over the queries that have that
    key: ``shift=-1`` scores previous-token heads, ``+1`` next-token heads. ``(H,)``.

    Positions are indices of the pass's query and key tokens (for cross-attention they are
    positions in two different sequences)."""
    w = _check(weights)
    _, n_queries, n_keys = w.shape
    queries = torch.arange(n_queries)
    keys = queries + shift
    has = (keys >= 0) & (keys < n_keys)
    if not bool(has.any()):
        raise InputError(f"no query has a key at offset {shift} (Q={n_queries}, K={n_keys})")
    return w[:, queries[has], keys[has]].mean(-1)  # (H, q) -> (H,)


def key_share(weights: Tensor, keys: Tensor | Sequence[bool]) -> Tensor:
    """Attention each query gives the keys marked in ``keys`` ``(K,)``, averaged over queries
    (Clark et al.'s attention to ``[CLS]``, ``[SEP]``, punctuation). ``(H,)``."""
    w = _check(weights)
    marked = torch.as_tensor(keys, dtype=torch.bool)
    if marked.shape != (w.shape[-1],):
        raise InputError(f"keys must mark each of the {w.shape[-1]} keys, got shape "
                         f"{tuple(marked.shape)}")
    return w[:, :, marked].sum(-1).mean(-1)  # (H, Q) -> (H,)


def row_entropy(weights: Tensor, visible: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean entropy of each head's rows in nats, and the mean of each row's entropy over the
    log of the number of keys it may see (``visible`` ``(Q,)``; default all ``K``): 1.0 for
    uniform attention. Rows that see a single key have no normalised entropy and are left out
    of that mean. ``((H,), (H,))``."""
    w = _check(weights)
    n_queries, n_keys = w.shape[1:]
    seen = torch.full((n_queries,), n_keys) if visible is None else torch.as_tensor(visible)
    if seen.shape != (n_queries,):
        raise InputError(f"visible must count keys for each of the {n_queries} queries, got "
                         f"shape {tuple(seen.shape)}")
    logs = torch.where(w > 0, w.log(), torch.zeros_like(w))
    entropy = -(w * logs).sum(-1)  # (H, Q)
    several = seen > 1
    if not bool(several.any()):
        raise InputError("every query sees a single key: the normalised entropy is undefined")
    normalised = entropy[:, several] / seen[several].double().log()  # (H, q)
    return entropy.mean(-1), normalised.mean(-1)


def repeat_targets(half: int, n_queries: int, query_offset: int, key_offset: int,
                   kind: str) -> Tensor:
    """The key each query should attend to on a sequence of ``half`` tokens repeated twice
    that starts at query position ``query_offset`` and key position ``key_offset``; -1 where
    the pattern expects nothing (the first half, tokens around the sequence). ``(Q,)``.

    ``kind``: ``"duplicate"`` (sequence position ``i`` of the second half attends to ``i-n``,
    the same token's earlier occurrence) or ``"induction"`` (to ``i-n+1``, the token after
    it)."""
    if kind not in ("duplicate", "induction"):
        raise InputError(f"kind must be 'duplicate' or 'induction', got {kind!r}")
    if half < 2:
        raise InputError(f"the repeated half must hold at least 2 tokens, got {half}")
    targets = torch.full((n_queries,), -1, dtype=torch.long)
    second = torch.arange(half, 2 * half)  # sequence positions of the second half
    rows = second + query_offset
    keep = rows < n_queries
    shift = half if kind == "duplicate" else half - 1
    targets[rows[keep]] = second[keep] - shift + key_offset
    return targets


def pattern_share(weights: Tensor, targets: Tensor, *, excluded_keys: int = 0) -> Tensor:
    """Share of the counted rows' attention that lands on their target key (TransformerLens's
    ``"mul"`` score): rows with ``targets >= 0`` count; the first ``excluded_keys`` keys (what
    the model put before the sequence) are left out of both sums. ``(H,)``."""
    w = _check(weights).clone()
    targets = torch.as_tensor(targets, dtype=torch.long)
    if targets.shape != (w.shape[1],):
        raise InputError(f"targets must name a key for each of the {w.shape[1]} queries, got "
                         f"shape {tuple(targets.shape)}")
    rows = torch.nonzero(targets >= 0).flatten()
    if rows.numel() == 0:
        raise InputError("no query has a target key")
    w[:, :, :excluded_keys] = 0
    hit = w[:, rows, targets[rows]].sum(-1)  # (H,)
    total = w[:, rows].sum((-1, -2))  # (H,)
    return torch.where(total > 0, hit / total.clamp_min(1e-300), torch.zeros_like(total))


def is_punctuation(token: str) -> bool:
    """A token made only of punctuation characters (after a subword mark such as ``##``)."""
    for mark in _SUBWORD_MARKS:
        if token.startswith(mark):
            token = token[len(mark):]
            break
    return bool(token) and all(unicodedata.category(c).startswith("P") for c in token)


def text_roles(weights: Tensor, key_tokens: Sequence[str], visible: Tensor | None = None
               ) -> dict[str, Tensor]:
    """The natural-text roles of one layer on one pass: previous, next, first, cls, sep,
    punctuation, entropy and broad, each ``(H,)``."""
    w = _check(weights)
    if len(key_tokens) != w.shape[-1]:
        raise InputError(f"key_tokens must hold {w.shape[-1]} tokens, got {len(key_tokens)}")
    first = torch.zeros(w.shape[-1], dtype=torch.bool)
    first[0] = True
    entropy, broad = row_entropy(w, visible)
    return {
        "previous": shift_share(w, -1), "next": shift_share(w, 1),
        "first": key_share(w, first),
        "cls": key_share(w, [t in CLS_TOKENS for t in key_tokens]),
        "sep": key_share(w, [t in SEP_TOKENS for t in key_tokens]),
        "punctuation": key_share(w, [is_punctuation(t) for t in key_tokens]),
        "entropy": entropy, "broad": broad}


def in_context_score(losses: Tensor, *, early: int = 50, late: int = 500) -> float:
    """Olsson et al. 2022's in-context learning score: the mean loss at position ``late``
    minus that at position ``early`` (negative: the model predicts better later in its
    context). ``losses``: per-position next-token losses ``(T,)`` or ``(B, T)``.

    The hook for models that predict the next token; :func:`~attnlab.inspect.roles_probe.
    head_roles` does not compute it (it sees only attention patterns)."""
    losses = torch.as_tensor(losses, dtype=torch.float64)
    if losses.dim() == 1:
        losses = losses[None]  # (1, T)
    if losses.dim() != 2 or losses.shape[0] == 0:
        raise InputError(f"losses must be (T,) or (B, T), got shape {tuple(losses.shape)}")
    if not 0 <= early < late < losses.shape[1]:
        raise InputError(f"need 0 <= early < late < T={losses.shape[1]}, got early={early}, "
                         f"late={late}")
    score = float(losses[:, late].mean() - losses[:, early].mean())
    if math.isnan(score):
        raise InputError("losses hold NaN at the positions compared")
    return score
