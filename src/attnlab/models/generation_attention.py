"""Cross-attention recorded while generating: what ``attention=True`` of
:func:`~attnlab.models.generation.greedy_search` and
:func:`~attnlab.models.generation.beam_search_nbest` returns with each hypothesis.

Every decoder layer's ``cross_attn.hook_pattern`` is observed at each step; beam search also
records its back-pointers, so that a hypothesis's attention is traced back along its own beam.

Legend: ``N`` rows (sentences or beams), ``L`` decoder layers, ``H`` heads, ``S`` source
length, ``T`` tokens of a hypothesis, ``m`` rows asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["CrossAttentionRecorder", "recording"]


class CrossAttentionRecorder:
    """Every decoder layer's cross-attention at each step, observed on its ``hook_pattern``,
    and the beams' back-pointers, to trace a hypothesis's attention back along its beam."""

    def __init__(self, model: nn.Module, lengths: list[int]) -> None:
        self.points = [layer.cross_attn.hook_pattern for layer in model.decoder.layers]
        self.lengths = lengths  # unpadded source length of each sentence
        self.latest: list[Tensor | None] = [None] * len(self.points)  # (N, H, S) per layer
        self.steps: list[Tensor] = []  # step s: (N_s, L, H, S)
        self.parents: list[Tensor | None] = []  # step s: (N_s+1,) row of step s, None: same

    def observe(self) -> list:
        def keeper(layer: int):
            def hook(_point, inputs: tuple[Tensor, ...], _output) -> None:
                self.latest[layer] = inputs[0][:, :, -1]  # (N, H, t|1, S) -> (N, H, S): newest
            return hook
        return [point.observe(None, keeper(i)) for i, point in enumerate(self.points)]

    def record(self) -> None:
        """Keep the step just run."""
        self.steps.append(torch.stack(self.latest, dim=1))  # (N, L, H, S)
        self.parents.append(None)

    def reorder(self, rows: Tensor) -> None:
        """The rows ``rows`` ``(N',)`` of the last step go on, in that order."""
        self.parents[-1] = rows

    def attention(self, rows: list[int], sentences: list[int], lengths: list[int]
                  ) -> list[Tensor]:
        """The attention ``(L, H, T, S_b)`` of the batch's current rows ``rows``, traced back
        step by step along their beams: their first ``lengths`` steps, over the unpadded source
        of their ``sentences``."""
        if not rows:
            return []
        index = torch.tensor(rows, dtype=torch.long, device=self.steps[0].device)  # (m,)
        traced = []
        for step, parents in zip(reversed(self.steps), reversed(self.parents), strict=True):
            index = index if parents is None else parents.index_select(0, index)  # (m,)
            traced.append(step.index_select(0, index))  # (m, L, H, S)
        traced = torch.stack(traced[::-1], dim=3)  # (m, L, H, t, S)
        return [traced[n, :, :, :T, :self.lengths[b]]  # (L, H, T, S_b)
                for n, (b, T) in enumerate(zip(sentences, lengths, strict=True))]


@contextmanager
def recording(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None,
               attention: bool) -> Iterator[CrossAttentionRecorder | None]:
    """A :class:`CrossAttentionRecorder` observing ``model`` (``None`` without ``attention``); its
    observers are released on leaving, whatever happens."""
    if not isinstance(attention, bool):
        raise ValueError(f"attention must be a bool, got {attention!r}")
    if not attention:
        yield None
        return
    B, S = input_ids.shape
    lengths = [S] * B if attention_mask is None else attention_mask.sum(dim=1).tolist()
    recorder = CrossAttentionRecorder(model, [int(n) for n in lengths])
    observers = recorder.observe()
    try:
        yield recorder
    finally:
        for observer in observers:
            observer.release()
