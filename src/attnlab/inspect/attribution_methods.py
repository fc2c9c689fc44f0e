"""The attribution methods, each a function of one input's :class:`Decisions` returning scores
``(D, L)``: one row per decision, one column per token.

Every method reaches the model through :class:`~attnlab.inspect.decisions.DecisionModel` only,
and runs its decisions in one batched pass where it can: the ``D`` decisions of an input are
``D`` rows of one batch (a translation's input replicated ``D`` times, row ``d`` scored on its
target ``d``), so one backward pass gives every row's gradient; integrated gradients adds its
path points as rows, leave-one-out its deletions.

Legend: ``N`` rows of a pass, ``D`` decisions, ``L`` tokens, ``E`` word-vector width, ``H``
heads, ``Q`` query and ``K`` key positions of an attention layer, ``d_v`` value size per head,
``P`` points on the integration path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from attnlab.inspect.capture import attention_modules
from attnlab.inspect.decisions import TOKENS_PER_PASS, Decisions

__all__ = ["attention", "attention_grad", "gauss_legendre", "grad_input", "integrated_gradients",
           "leave_one_out", "random_scores", "rollout", "saliency", "value_zeroing"]



# --- attention ---------------------------------------------------------------------------

@dataclass
class _Seen:
    """What :func:`_watch` kept of one pass, by module name (tensors still in the graph)."""

    weights: dict[str, Tensor] = field(default_factory=dict)  # (N, H, Q, K)
    heads: dict[str, Tensor] = field(default_factory=dict)  # per-head outputs (N, H, Q, d_v)
    values: dict[str, Tensor] = field(default_factory=dict)  # values per query head (N, H, K, d_v)


@contextmanager
def _watch(module, names: list[str], *, outputs: bool = False) -> Iterator[_Seen]:
    """Keep the attention weights of the named modules during the block; with ``outputs``,
    also their per-head outputs and values (what ``∂f/∂weights`` needs)."""
    modules = attention_modules(module)
    seen, observers = _Seen(), []

    def keeper(store: dict, name: str, per_query_head=None):
        def hook(point, inputs, output):
            store[name] = output if per_query_head is None else output[:, per_query_head]
        return hook

    try:
        for name in names:
            m = modules[name]
            observers.append(m.hook_pattern.observe(None, keeper(seen.weights, name)))
            if outputs:
                observers.append(m.hook_head_output.observe(None, keeper(seen.heads, name)))
                kv = [m.kv_head(h) for h in range(m.n_heads)]  # each query head's value head
                observers.append(m.hook_value.observe(None, keeper(seen.values, name, kv)))
        yield seen
    finally:
        for observer in observers:
            observer.release()


def _one_pass(decisions: Decisions, names: list[str]) -> dict[str, Tensor]:
    """The weights ``(D, H, Q, K)`` of the named modules on the unchanged input: one pass,
    scored on the last decision (which reads every token), shared by the ``D`` decisions."""
    engine, D = decisions.engine, len(decisions)
    with torch.no_grad(), _watch(engine.module, names) as seen:
        engine.log_probs(engine.vectors()[None], torch.tensor([D - 1]))
    return {n: w.expand(D, *w.shape[1:]) for n, w in seen.weights.items()}  # (D, H, Q, K)


def attention(decisions: Decisions, layer: int) -> Tensor:
    """The head-averaged attention of ``attention_layers[layer]``, read by each decision."""
    name = decisions.engine.attention_layers[layer]
    weights = _one_pass(decisions, [name])[name]  # (D, H, Q, K)
    return decisions.engine.pool(weights.mean(1), _rows(decisions))  # (D, L)


def rollout(decisions: Decisions) -> Tensor:
    """Attention rollout, as the subject rolls its attention out."""
    names = list(attention_modules(decisions.engine.module))
    return decisions.engine.rollout(_one_pass(decisions, names), _rows(decisions))  # (D, L)


def attention_grad(decisions: Decisions, layer: int) -> Tensor:
    """``A ⊙ ∂f/∂A`` averaged over heads, for the weights ``A`` of ``attention_layers[layer]``.

    A head's output is ``A V``, so ``∂f/∂A = (∂f/∂(A V)) Vᵀ``: read from the gradient at the
    per-head outputs and the values (the weights of the explicit kernel are not themselves on
    the path to ``f``).
    """
    engine, rows = decisions.engine, _rows(decisions)
    name = engine.attention_layers[layer]
    D = len(rows)
    vectors = engine.vectors().expand(D, -1, -1).clone().requires_grad_(True)  # (D, L, E)
    with torch.enable_grad(), _watch(engine.module, [name], outputs=True) as seen:
        f = engine.log_probs(vectors, rows)  # (D,)
        (grad_heads,) = torch.autograd.grad(f.sum(), seen.heads[name])  # (D, H, Q, d_v)
    grad_weights = grad_heads @ seen.values[name].transpose(-2, -1)  # (D, H, Q, d_v) x
    #                                                   (D, H, d_v, K) -> (D, H, Q, K)
    product = (seen.weights[name].detach() * grad_weights).mean(1)  # (D, Q, K)
    return engine.pool(product, rows)  # (D, L)


def value_zeroing(decisions: Decisions) -> Tensor:
    """Value zeroing rolled out over the layers (the subject's definition)."""
    return decisions.engine.value_zeroing()  # (D, L)


# --- gradients ---------------------------------------------------------------------------

def _gradients(decisions: Decisions, vectors: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """``f`` ``(N,)`` and ``∂f/∂vectors`` ``(N, L, E)`` for ``N`` rows, in passes of at most
    :data:`TOKENS_PER_PASS` tokens (rows do not interact, so one backward serves a pass)."""
    L = vectors.shape[1]
    chunk = max(1, TOKENS_PER_PASS // L)
    scores, grads = [], []
    for start in range(0, len(rows), chunk):
        x = vectors[start:start + chunk].detach().clone().requires_grad_(True)  # (n, L, E)
        with torch.enable_grad():
            f = decisions.engine.log_probs(x, rows[start:start + chunk])  # (n,)
            (g,) = torch.autograd.grad(f.sum(), x)  # (n, L, E)
        scores.append(f.detach())
        grads.append(g)
    return torch.cat(scores), torch.cat(grads)


def saliency(decisions: Decisions) -> Tensor:
    """``‖∂f/∂e_i‖₂`` for each token's word vector ``e_i``."""
    rows = _rows(decisions)
    vectors = decisions.engine.vectors().expand(len(rows), -1, -1)  # (D, L, E)
    return _gradients(decisions, vectors, rows)[1].norm(dim=-1)  # (D, L)


def grad_input(decisions: Decisions) -> Tensor:
    """``∂f/∂e_i · e_i`` (summed over the embedding dimension)."""
    rows = _rows(decisions)
    vectors = decisions.engine.vectors().expand(len(rows), -1, -1)  # (D, L, E)
    return (_gradients(decisions, vectors, rows)[1] * vectors).sum(-1)  # (D, L)


def gauss_legendre(steps: int) -> tuple[Tensor, Tensor]:
    """Nodes ``α`` in ``(0, 1)`` and weights (summing to 1) of the ``steps``-point
    Gauss-Legendre rule, as captum's ``"gausslegendre"`` method (float64)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * weights)


def integrated_gradients(decisions: Decisions, steps: int, baseline: str
                         ) -> tuple[Tensor, Tensor]:
    """Integrated gradients on the word vectors and the completeness gap per decision.

    ``IG_i = Σ_E (e_i − b_i) · Σ_p w_p ∂f/∂e_i (b + α_p (e − b))`` over the ``steps``
    Gauss-Legendre nodes ``α_p`` (weights ``w_p``); ``gap = Σ_i IG_i − (f(e) − f(b))``. The
    ``D × (steps + 2)`` rows (the path, then ``e`` and ``b`` for ``f``) run as one batch.

    Returns:
        scores ``(D, L)`` and gap ``(D,)``.
    """
    engine, rows = decisions.engine, _rows(decisions)
    x, b = engine.vectors(), engine.baseline(baseline)  # (L, E) each
    alphas, weights = (t.to(x.dtype) for t in gauss_legendre(steps))  # (P,) each
    path = b + alphas[:, None, None] * (x - b)  # (P, L, E)
    points = torch.cat([path, x[None], b[None]])  # (P + 2, L, E)
    D, P = len(rows), steps
    f, g = _gradients(decisions, points.repeat(D, 1, 1), rows.repeat_interleave(P + 2))
    f = f.view(D, P + 2)
    g = g.view(D, P + 2, *x.shape)[:, :P]  # (D, P, L, E)
    mean_grad = (weights[None, :, None, None] * g).sum(1)  # (D, L, E)
    scores = ((x - b)[None] * mean_grad).sum(-1)  # (D, L)
    gap = scores.sum(-1) - (f[:, P] - f[:, P + 1])  # (D,)
    return scores, gap


# --- perturbation and the floor ----------------------------------------------------------

def leave_one_out(decisions: Decisions) -> Tensor:
    """``p(target) − p(target | token i deleted)`` for each removable token ``i`` (0 for the
    others); the ``D × R`` deletions run as one batch of :meth:`Decisions.probability`."""
    removable = [i for i, r in enumerate(decisions.removable) if r]
    D, L, R = len(decisions), len(decisions.tokens), len(removable)
    scores = torch.zeros(D, L, dtype=torch.float64)
    if not R:
        return scores
    keep = torch.ones(D, R, L, dtype=torch.bool)
    keep[:, torch.arange(R), torch.tensor(removable)] = False  # row (d, r) deletes token r
    rows = torch.arange(D).repeat_interleave(R)  # (D*R,)
    p = decisions.probability(keep.view(D * R, L), rows).double().view(D, R)
    full = torch.tensor(decisions.probabilities, dtype=torch.float64)  # (D,)
    scores[:, removable] = full[:, None] - p
    return scores


def random_scores(decisions: Decisions, seed: int) -> Tensor:
    """Uniform scores in ``[0, 1)`` from ``seed``; a translation's target-prefix tokens after
    a decision's position get 0, as every method gives them."""
    D, L = len(decisions), len(decisions.tokens)
    scores = torch.rand(D, L, generator=torch.Generator().manual_seed(seed))
    S = decisions.source_length
    if S is not None:
        future = torch.arange(L - S)[None, :] > torch.arange(D)[:, None]  # (D, T)
        scores[:, S:] = scores[:, S:].masked_fill(future, 0.0)
    return scores


def _rows(decisions: Decisions) -> Tensor:
    """``(D,)``: each decision's row index."""
    return torch.arange(len(decisions))
