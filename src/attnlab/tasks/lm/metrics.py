"""How a language model is scored: the mean cross-entropy per token (nats), its perplexity, and
bits per character (tokenizer ``"char"``) or per UTF-8 byte (``"byte-bpe"``) of the text scored,
which compare across tokenizers: ``total nats / (ln 2 · characters or bytes)``; and the
in-context learning score of Olsson et al. (2022): the mean loss at a window's last position
minus that at position ``C/8`` (their positions 500 and 50 need long contexts), negative when
the model predicts later tokens better for having read the earlier ones.

Legend: ``B`` windows, ``C`` context, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.text.tokenizer import CLS, PAD, SEP, SPECIAL_TOKENS, TextTokenizer
from attnlab.train.distributed import all_reduce_sum

__all__ = ["TARGETS", "LMMetrics", "score_lm", "units_per_token"]

TARGETS = ("labels",)  # batch entries the loss reads, the model does not see


@dataclass(frozen=True)
class LMMetrics:
    """Figures of a language model on some text (teacher forcing, every window scored)."""

    loss: float  # mean cross-entropy per token, in nats
    perplexity: float  # exp(loss)
    bits: float  # bits per unit of text: total nats / (ln 2 · units)
    unit: str  # "char" or "byte"
    tokens: int  # tokens scored
    units: int  # characters or UTF-8 bytes those tokens spell
    in_context: float | None = None  # loss at the last position minus at C/8 (nats)

    def to_dict(self) -> dict[str, Any]:
        """The fields, and the bits again under ``bits_per_char`` or ``bits_per_byte``."""
        return {**asdict(self), f"bits_per_{self.unit}": self.bits}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LMMetrics:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        shown = f"loss {self.loss:.4f} ppl {self.perplexity:.2f} bits/{self.unit} {self.bits:.4f}"
        if self.in_context is not None:
            shown += f" in-context {self.in_context:+.3f}"
        return shown


def units_per_token(tokenizer: TextTokenizer, unit: str) -> Tensor:
    """How many characters (``unit="char"``: one per token, an unseen one read as ``[UNK]``
    included) or UTF-8 bytes (``"byte"``: a byte-level token's symbols are its bytes) each id
    spells ``(V,)``; 0 for ``[PAD]``, ``[CLS]`` and ``[SEP]``."""
    size = tokenizer.tokenizer.get_vocab_size(with_added_tokens=True)
    tokens = [tokenizer.tokenizer.id_to_token(i) for i in range(size)]
    if unit not in ("char", "byte"):
        raise ValueError(f"unit must be 'char' or 'byte', got {unit!r}")
    silent = {PAD, CLS, SEP} if unit == "char" else set(SPECIAL_TOKENS)  # spell nothing
    counts = [0 if t in silent else 1 if unit == "char" else len(t) for t in tokens]
    return torch.tensor(counts, dtype=torch.long)


@torch.no_grad()
def score_lm(model: nn.Module, batches: Iterable[dict[str, Tensor]], units: Tensor, unit: str,
             *, device: torch.device | str = "cpu", bf16: bool = False) -> LMMetrics:
    """Loss, perplexity and bits per ``unit`` of ``model`` over ``batches`` of windows;
    ``units`` ``(V,)`` is :func:`units_per_token`."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    nats = torch.zeros((), dtype=torch.float64, device=device)
    counts = torch.zeros(3, dtype=torch.long, device=device)  # tokens, units, windows
    by_position = None  # (C,) nats summed over windows
    units = units.to(device)
    try:
        for batch in batches:
            ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)  # (B, C)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(ids).float()  # (B, C, V)
            losses = F.cross_entropy(logits.transpose(1, 2), labels,  # (B, V, C) -> (B, C)
                                     reduction="none").double()
            nats += losses.sum()
            by_position = losses.sum(0) if by_position is None else by_position + losses.sum(0)
            counts += torch.stack([labels.new_tensor(labels.numel()), units[labels].sum(),
                                   labels.new_tensor(len(labels))])
    finally:
        model.train(was_training)
    all_reduce_sum(nats)  # under torchrun each window is on one process
    all_reduce_sum(counts)
    tokens, n_units, windows = (int(x) for x in counts)
    if tokens == 0:
        raise ValueError("evaluation data yielded no tokens")
    all_reduce_sum(by_position)
    C = len(by_position)
    in_context = float(by_position[C - 1] - by_position[C // 8]) / windows if C >= 2 else None
    loss = float(nats) / tokens
    bits = float(nats) / (math.log(2) * max(n_units, 1))
    return LMMetrics(loss, math.exp(min(loss, 700.0)), bits, unit, tokens, n_units, in_context)
