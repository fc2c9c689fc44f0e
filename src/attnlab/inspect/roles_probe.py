"""Every head of a model scored on the roles of :mod:`attnlab.inspect.roles`.

:func:`head_roles` asks the subject (any :class:`~attnlab.inspect.protocol.Inspectable`) for
its passes, never which model it holds: :meth:`~attnlab.inspect.protocol.Inspectable.head_pass`
on a few natural texts (previous/next-token, first token, ``[CLS]``, ``[SEP]``, punctuation,
entropy) and :meth:`~attnlab.inspect.protocol.Inspectable.ids_pass` on random ordinary tokens
repeated twice (duplicate-token, induction), for each of its kinds of attention; it captures
each pass with :func:`~attnlab.inspect.capture` (the mask the scores got tells which keys each
query may see, causal or not) and averages each head's scores over texts and over sequences.

Legend: ``H`` heads, ``Q`` query tokens, ``K`` key tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from attnlab.errors import InputError
from attnlab.inspect.capture import capture
from attnlab.inspect.html import model_name
from attnlab.inspect.protocol import HeadPass, Inspectable
from attnlab.inspect.roles import ROLES, pattern_share, repeat_targets, text_roles

__all__ = ["DEFAULT_TEXTS", "HeadRoles", "RoleTable", "head_roles"]

DEFAULT_TEXTS = (  # natural text for the positional and token roles (with the subject's example)
    "The cat sat on the mat, and the dog slept by the door.",
    "A gripping, funny film: the best of the year!",
    "She said that he would come back tomorrow; nobody believed her.",
    "Two men are playing football in the park.",
)
REPEAT_ROLES = ("duplicate", "induction")  # scored on random tokens repeated twice


@dataclass(frozen=True)
class HeadRoles:
    """One head's role scores."""

    attention: str  # the kind of attention ("self", "decoder", "cross", ...)
    layer: int  # index within that kind's stack
    head: int
    module: str  # dotted name of its attention module
    scores: dict[str, float]  # role -> score (see attnlab.inspect.roles.ROLES)

    @property
    def label(self) -> str:
        """``self L0.H3``: how tables and pictures name the head."""
        return f"{self.attention} L{self.layer}.H{self.head}"


@dataclass(frozen=True)
class RoleTable:
    """Every head's role scores and how they were probed."""

    model: str  # the model as shown
    heads: list[HeadRoles]
    probe: dict = field(default_factory=dict)  # texts, repeat length, sequences, seed, exclusions
    roles: tuple[str, ...] = ROLES

    def top(self, role: str, k: int = 3) -> list[HeadRoles]:
        """The ``k`` heads with the highest ``role`` score, best first."""
        if role not in self.roles:
            raise InputError(f"role must be one of {', '.join(self.roles)}, got {role!r}")
        return sorted(self.heads, key=lambda h: -h.scores[role])[:k]

    def to_dict(self, k: int = 3) -> dict:
        """A JSON-ready dict: every head's scores, the top ``k`` heads per role, the probe."""
        return {"model": self.model, "roles": list(self.roles), "probe": self.probe,
                "heads": [{"attention": h.attention, "layer": h.layer, "head": h.head,
                           "module": h.module, "scores": h.scores} for h in self.heads],
                "top": {role: [{"attention": h.attention, "layer": h.layer, "head": h.head,
                                "score": h.scores[role]} for h in self.top(role, k)]
                        for role in self.roles}}


def head_roles(subject: Inspectable, texts: Sequence[str] | None = None, *,
               attention: Sequence[str] | None = None, repeat_length: int = 20,
               sequences: int = 4, seed: int = 0) -> RoleTable:
    """Score every head of ``subject`` on every role.

    Args:
        subject: any :class:`~attnlab.inspect.protocol.Inspectable`.
        texts: natural texts for the positional and token roles (default: the subject's
            example sentence and :data:`DEFAULT_TEXTS`).
        attention: the kinds of attention to score (default: all of the subject's).
        repeat_length: random tokens in each half of a repeated sequence.
        sequences: random repeated sequences averaged over.
        seed: seeds the random tokens.
    """
    texts = [subject.default_example, *DEFAULT_TEXTS] if texts is None else list(texts)
    kinds = list(subject.attention_kinds if attention is None else attention)
    _check_arguments(subject, texts, kinds, repeat_length, sequences)
    repeated = _random_repeats(subject.ordinary_ids(), repeat_length, sequences, seed)
    heads = []
    for kind in kinds:
        runs = [subject.head_pass(t, kind) for t in texts]
        natural = _mean([_text_scores(run) for run in runs])
        try:
            passes = [subject.ids_pass(ids, kind) for ids in repeated]
        except InputError as err:
            raise InputError(f"repeat_length {repeat_length} (twice: {2 * repeat_length} "
                             f"tokens) does not fit {model_name(subject.name)}: {err}") from None
        repeats = _mean([_repeat_scores(run, repeat_length) for run in passes])
        for layer, module in enumerate(runs[0].stack):
            scores = {**natural[layer], **repeats[layer]}  # role -> (H,)
            n_heads = len(scores[ROLES[0]])
            heads += [HeadRoles(kind, layer, h, module,
                                {r: float(scores[r][h]) for r in ROLES}) for h in range(n_heads)]
    probe = {"texts": len(texts), "repeat_length": repeat_length, "sequences": sequences,
             "seed": seed, "attention": kinds,
             "exclusions": "duplicate/induction: only second-half queries count; attention to "
                           "tokens before the sequence ([CLS], [BOS]) is left out; the current "
                           "token is kept",
             "in_context_score": "not computed by head_roles (it needs next-token losses)"}
    return RoleTable(model_name(subject.name), heads, probe)


def _check_arguments(subject: Inspectable, texts: list[str], kinds: list[str],
                     repeat_length: int, sequences: int) -> None:
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InputError("texts must hold at least one non-empty text")
    unknown = [k for k in kinds if k not in subject.attention_kinds]
    if not kinds or unknown:
        raise InputError(f"attention must name kinds among {', '.join(subject.attention_kinds)},"
                         f" got {unknown[0] if unknown else 'none'}")
    if not isinstance(repeat_length, int) or repeat_length < 2:
        raise InputError(f"repeat_length must be an integer >= 2, got {repeat_length!r}")
    if not isinstance(sequences, int) or sequences < 1:
        raise InputError(f"sequences must be an integer >= 1, got {sequences!r}")


def _random_repeats(pool: list[int], n: int, sequences: int, seed: int) -> list[list[int]]:
    """``sequences`` lists of ``n`` random ids from ``pool`` followed by the same ``n``."""
    if not pool:
        raise InputError("the model's vocabulary has no ordinary tokens to draw")
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(sequences):
        half = [pool[i] for i in torch.randint(len(pool), (n,), generator=generator).tolist()]
        out.append(half + half)
    return out


@torch.no_grad()
def _captured(run: HeadPass) -> list[tuple[Tensor, Tensor]]:
    """Each layer of the pass: its weights ``(H, Q, K)`` and the keys each query may see
    ``(Q,)`` (from the mask the scores got)."""
    with capture(run.model, layers=run.stack, vectors=True) as cap:
        run.forward()
    out = []
    for name in run.stack:
        weights = cap.weights[name][0]  # (H, Q, K)
        mask = cap.masks.get(name)
        if mask is None:
            visible = torch.full((weights.shape[1],), weights.shape[2])
        else:
            mask = mask[0, 0]  # (Q, K)
            allowed = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
            visible = allowed.sum(-1)  # (Q,)
        out.append((weights, visible))
    return out


def _text_scores(run: HeadPass) -> list[dict[str, Tensor]]:
    return [text_roles(w, run.key_tokens, visible) for w, visible in _captured(run)]


def _repeat_scores(run: HeadPass, n: int) -> list[dict[str, Tensor]]:
    query_offset, key_offset = run.offsets
    out = []
    for weights, _ in _captured(run):
        targets = {kind: repeat_targets(n, weights.shape[1], query_offset, key_offset, kind)
                   for kind in REPEAT_ROLES}
        out.append({kind: pattern_share(weights, t, excluded_keys=key_offset)
                    for kind, t in targets.items()})
    return out


def _mean(passes: list[list[dict[str, Tensor]]]) -> list[dict[str, Tensor]]:
    """Per layer and role, the mean over passes of each head's score."""
    return [{role: torch.stack([p[layer][role] for p in passes]).mean(0)  # (passes, H) -> (H,)
             for role in passes[0][layer]} for layer in range(len(passes[0]))]
