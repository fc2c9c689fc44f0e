"""Pictures of attention with matplotlib (the Agg canvas; no display, no pyplot state).

* :func:`heatmap`: one head's weights, query tokens down, key tokens across.
* :func:`head_grid`: every head of one layer, as many panels as the tensor has heads.
* :func:`relevance_plot`: rollout relevance of each token of a sentence.
* :func:`cross_attention_map` and :func:`cross_attention_grid`: a translator's cross-attention,
  source tokens across and generated tokens down: one map, or every head of every layer with
  each layer's mean.

Each returns a :class:`matplotlib.figure.Figure`; ``fig.savefig("fig.png")`` writes it.

Legend: ``H`` heads, ``L`` query length, ``S`` key length (for cross-attention: ``n_layers``
decoder layers, ``T`` generated tokens, ``S`` source tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["cross_attention_grid", "cross_attention_map", "head_grid", "heatmap",
           "relevance_plot"]

_MAX_LABELLED = 48  # beyond this many tokens, axes show positions instead of token labels


def heatmap(
    weights: Tensor,
    tokens: Sequence[str],
    key_tokens: Sequence[str] | None = None,
    *,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """One head's attention as a heat map, tokens on both axes.

    Args:
        weights: ``(L, S)`` attention weights of one head and one sequence.
        tokens: the ``L`` query tokens (rows).
        key_tokens: the ``S`` key tokens (columns); default ``tokens``.
        title: panel title.
        ax: draw into this axes instead of a new figure.

    Returns:
        The figure drawn into.
    """
    key_tokens = tokens if key_tokens is None else key_tokens
    if weights.dim() != 2 or tuple(weights.shape) != (len(tokens), len(key_tokens)):
        raise ValueError(f"weights must have shape (L, S) = ({len(tokens)}, {len(key_tokens)}) "
                         f"to match the tokens, got {tuple(weights.shape)}")
    fig = ax.figure if ax is not None else Figure(figsize=_square_size(len(tokens)))
    ax = ax if ax is not None else fig.add_subplot()
    image = ax.imshow(weights.detach().float().cpu().numpy(), cmap="viridis", vmin=0.0,
                      vmax=1.0, aspect="auto", interpolation="nearest")
    _label_axis(ax, "y", tokens)
    _label_axis(ax, "x", key_tokens)
    ax.set_ylabel("query")
    ax.set_xlabel("key")
    if title:
        ax.set_title(title, fontsize=9)
    if len(fig.axes) == 1:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
    return fig


def head_grid(weights: Tensor, tokens: Sequence[str], *, layer: int | str | None = None) -> Figure:
    """Every head of one layer, one heat map each, in a near-square grid.

    Args:
        weights: ``(H, L, L)`` weights of one layer for one sequence; ``H`` sets the panels.
        tokens: the ``L`` tokens.
        layer: shown in the title.
    """
    if weights.dim() != 3:
        raise ValueError(f"weights must have shape (H, L, S), got {tuple(weights.shape)}")
    n_heads = weights.shape[0]
    cols = math.ceil(math.sqrt(n_heads))
    rows = math.ceil(n_heads / cols)
    side = 2.2 if len(tokens) <= 16 else 3.0
    fig = Figure(figsize=(cols * side + 0.5, rows * side + 0.6))
    for h in range(n_heads):
        ax = fig.add_subplot(rows, cols, h + 1)
        ax.imshow(weights[h].detach().float().cpu().numpy(), cmap="viridis", vmin=0.0,
                  vmax=1.0, interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=8)
        show = len(tokens) <= 16
        _label_axis(ax, "y", tokens if show and h % cols == 0 else [], fontsize=6)
        _label_axis(ax, "x", tokens if show and h >= (rows - 1) * cols else [], fontsize=6)
    if layer is not None:
        fig.suptitle(f"layer {layer}: {n_heads} heads", fontsize=10)
    fig.tight_layout()
    return fig


def relevance_plot(tokens: Sequence[str], relevance: Tensor, *, title: str | None = None
                   ) -> Figure:
    """Relevance of each token (e.g. attention rollout) as bars under the sentence."""
    if relevance.dim() != 1 or relevance.shape[0] != len(tokens):
        raise ValueError(f"relevance must have shape (L,) = ({len(tokens)},) to match the "
                         f"tokens, got {tuple(relevance.shape)}")
    fig = Figure(figsize=(max(4.0, 0.35 * len(tokens) + 1.0), 3.0))
    ax = fig.add_subplot()
    ax.bar(range(len(tokens)), relevance.detach().float().cpu().numpy(), color="tab:orange")
    _label_axis(ax, "x", tokens)
    ax.set_ylabel("relevance")
    ax.set_xlim(-0.5, len(tokens) - 0.5)
    ax.set_title(title or "attention rollout", fontsize=9)
    fig.tight_layout()
    return fig


def cross_attention_map(weights: Tensor, target_tokens: Sequence[str],
                        source_tokens: Sequence[str], *, title: str | None = None) -> Figure:
    """One map of cross-attention ``(T, S)``: generated tokens down, source tokens across."""
    fig = heatmap(weights, target_tokens, source_tokens, title=title)
    fig.axes[0].set_ylabel("generated")
    fig.axes[0].set_xlabel("source")
    return fig


def cross_attention_grid(weights: Tensor, target_tokens: Sequence[str],
                         source_tokens: Sequence[str], *, layers: Sequence[int] | None = None,
                         title: str | None = None) -> Figure:
    """Every head of every layer, one row a layer, and each layer's mean over its heads last.

    Args:
        weights: ``(n_layers, H, T, S)`` cross-attention of one sentence.
        target_tokens: the ``T`` generated tokens (rows of each map).
        source_tokens: the ``S`` source tokens (columns).
        layers: the layer numbers shown in the panel titles (default ``0 ..``).
        title: the figure's title.
    """
    if weights.dim() != 4 or tuple(weights.shape[2:]) != (len(target_tokens),
                                                          len(source_tokens)):
        raise ValueError(f"weights must have shape (n_layers, H, T, S) with (T, S) = "
                         f"({len(target_tokens)}, {len(source_tokens)}), got "
                         f"{tuple(weights.shape)}")
    n_layers, n_heads = weights.shape[:2]
    layers = list(range(n_layers)) if layers is None else list(layers)
    panels = torch.cat([weights, weights.mean(dim=1, keepdim=True)], dim=1)  # (n, H + 1, T, S)
    rows, cols = n_layers, n_heads + 1
    show = max(len(target_tokens), len(source_tokens)) <= 24
    side = 2.4 if show else 2.0
    fig = Figure(figsize=(cols * side + 0.6, rows * side + 0.8))
    for layer in range(rows):
        for h in range(cols):
            ax = fig.add_subplot(rows, cols, layer * cols + h + 1)
            ax.imshow(panels[layer, h].detach().float().cpu().numpy(), cmap="viridis",
                      vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
            name = "mean" if h == n_heads else f"head {h}"
            ax.set_title(f"layer {layers[layer]}, {name}", fontsize=8)
            _label_axis(ax, "y", target_tokens if show and h == 0 else [], fontsize=6)
            _label_axis(ax, "x", source_tokens if show and layer == rows - 1 else [],
                        fontsize=6)
    fig.suptitle(title or "cross-attention: generated tokens down, source tokens across",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _label_axis(ax: Axes, which: str, tokens: Sequence[str], fontsize: int = 7) -> None:
    set_ticks, set_labels = ((ax.set_xticks, ax.set_xticklabels) if which == "x"
                             else (ax.set_yticks, ax.set_yticklabels))
    if not tokens:
        set_ticks([])
        return
    if len(tokens) > _MAX_LABELLED:
        return  # matplotlib's own position ticks
    set_ticks(range(len(tokens)))
    # "$" would start mathtext; show tokens literally
    set_labels([t.replace("$", r"\$") for t in tokens], fontsize=fontsize,
               rotation=90 if which == "x" else 0)


def _square_size(n: int) -> tuple[float, float]:
    side = min(14.0, max(4.0, 0.28 * n + 2.0))
    return side + 1.0, side
