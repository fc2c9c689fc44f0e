"""The repeated-random-token probe of a language model, as the induction-head papers define it,
and a training callback that records it every N steps (``probe.jsonl`` in the run folder).

On ``sequences`` rows of ``half`` random tokens followed by the same ``half`` tokens
(TransformerLens's ``get_repeated_tokens``; no token before them):

- **induction score** of each head: the share of its attention, from the second half's queries,
  that lands on the token after the current token's earlier copy (query ``i`` to key
  ``i - half + 1``; :func:`~attnlab.inspect.roles.repeat_targets` and
  :func:`~attnlab.inspect.roles.pattern_share`, the definitions ``attnlab heads --roles`` uses);
  the figure reported is the best head's;
- **previous-token score**: the share on key ``i - 1`` (:func:`~attnlab.inspect.roles.shift_share`);
- **loss of each half**: mean next-token loss (nats) of the tokens of the first half (which no
  model can predict: about ``ln`` of the pool size) and of the second half after its first token
  (which a copying model predicts);
- **in-context learning score** (Olsson et al. 2022): mean loss at the last position of
  natural validation windows minus that at position ``C/8`` (their positions 500 and 50 do not
  exist in short contexts): negative when later tokens are predicted better.

Legend: ``B`` sequences, ``H`` heads, ``T`` tokens, ``V`` vocabulary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.inspect.capture import attention_modules, capture
from attnlab.inspect.roles import in_context_score, pattern_share, repeat_targets, shift_share
from attnlab.tasks.lm.config import LMDataConfig
from attnlab.tasks.lm.data import encode_stream, load_lm_text
from attnlab.text import TextTokenizer
from attnlab.train import Callback

__all__ = ["INDUCTION_BAR", "PROBE_FILE", "ProbeCallback", "ProbeRecord", "phase_change",
           "read_probe", "repeat_probe", "repeated_tokens"]

PROBE_FILE = "probe.jsonl"  # one ProbeRecord per line, in the run folder
INDUCTION_BAR = 0.5  # an induction head: at least this share of attention where induction goes
NATURAL_WINDOWS = 32  # validation windows the in-context score averages over


@dataclass(frozen=True)
class ProbeRecord:
    """The probe's figures at one training step."""

    step: int
    induction: float  # best head's induction score
    induction_head: str  # that head, "L1.H3"
    previous: float  # best head's previous-token score
    previous_head: str
    first_half_loss: float  # nats per token: unpredictable random tokens
    repeat_loss: float  # nats per token of the second half (after its first token)
    in_context: float | None  # loss at the last position minus at C/8 (None: no windows)
    seconds: float = 0.0  # training time when probed (this process's, probes excluded)

    def to_dict(self) -> dict:
        return asdict(self)


def repeated_tokens(pool: Sequence[int], half: int, sequences: int, seed: int) -> Tensor:
    """``sequences`` rows of ``half`` random tokens of ``pool``, then the same again
    ``(B, 2·half)``."""
    generator = torch.Generator().manual_seed(seed)
    pool_t = torch.as_tensor(list(pool), dtype=torch.long)
    first = pool_t[torch.randint(len(pool_t), (sequences, half), generator=generator)]  # (B, half)
    return torch.cat([first, first], dim=1)  # (B, 2·half)


def _best(scores: dict[str, Tensor]) -> tuple[float, str]:
    """The highest score over every layer's heads, and the head as ``L{layer}.H{head}``."""
    best, label = -1.0, ""
    for layer, per_head in enumerate(scores.values()):
        head = int(per_head.argmax())
        if float(per_head[head]) > best:
            best, label = float(per_head[head]), f"L{layer}.H{head}"
    return best, label


@torch.no_grad()
def repeat_probe(model: nn.Module, pool: Sequence[int], *, half: int, sequences: int = 32,
                 seed: int = 0, natural: Tensor | None = None, step: int = 0,
                 seconds: float = 0.0) -> ProbeRecord:
    """The probe's figures for a decoder-only ``model`` (``model(ids) -> logits (B, T, V)``);
    ``natural`` ``(B, C)``: validation windows for the in-context score."""
    was_training = model.training
    model.eval()
    try:
        ids = repeated_tokens(pool, half, sequences, seed)  # (B, 2·half)
        names = list(attention_modules(model))
        with capture(model, layers=names) as cap:
            logits = model(ids)  # (B, 2·half, V)
        targets = repeat_targets(half, 2 * half, 0, 0, "induction")  # (2·half,)
        induction = {n: torch.stack([pattern_share(w, targets) for w in cap.weights[n]]).mean(0)
                     for n in names}  # name -> (H,)
        previous = {n: torch.stack([shift_share(w, -1) for w in cap.weights[n]]).mean(0)
                    for n in names}  # name -> (H,)
        losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(),
                                 reduction="none").view(sequences, -1)  # (B, 2·half - 1)
        in_context = None
        if natural is not None:
            natural_logits = model(natural[:, :-1])  # (B, C, V)
            natural_losses = F.cross_entropy(
                natural_logits.flatten(0, 1).float(), natural[:, 1:].flatten(),
                reduction="none").view(len(natural), -1)  # (B, C)
            C = natural_losses.shape[1]
            in_context = in_context_score(natural_losses, early=C // 8, late=C - 1)
    finally:
        model.train(was_training)
    best_induction, induction_head = _best(induction)
    best_previous, previous_head = _best(previous)
    return ProbeRecord(step, best_induction, induction_head, best_previous, previous_head,
                       float(losses[:, :half - 1].mean()), float(losses[:, half:].mean()),
                       in_context, seconds)


def phase_change(records: Sequence[ProbeRecord], bar: float = INDUCTION_BAR
                 ) -> ProbeRecord | None:
    """The first record whose induction score reaches ``bar`` (``None``: none did)."""
    return next((r for r in records if r.induction >= bar), None)


def read_probe(run_dir: str | Path) -> list[ProbeRecord]:
    """The records of ``run_dir/probe.jsonl`` in step order (the last one of a step wins)."""
    path = Path(run_dir) / PROBE_FILE
    if not path.exists():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = ProbeRecord(**json.loads(line))
            by_step[record.step] = record
    return [by_step[s] for s in sorted(by_step)]


class ProbeCallback(Callback):
    """Runs :func:`repeat_probe` every ``every`` optimizer steps and at the end of training,
    appending each record to ``run_dir/probe.jsonl`` (main process only).

    The random tokens are drawn from the run's whole vocabulary (its ``tokenizer.json``, written
    before the first step), as in training (:mod:`attnlab.tasks.lm.repeats`); the in-context
    score reads the first windows of ``data``'s validation text; both are read at the first
    probe. ``seconds`` counts this process's training time, the
    probes' own time left out."""

    def __init__(self, run_dir: str | Path, data: LMDataConfig, *, every: int, half: int,
                 sequences: int = 32, seed: int = 0) -> None:
        self.run_dir, self.path = Path(run_dir), Path(run_dir) / PROBE_FILE
        self.data, self.every, self.half = data, every, half
        self.sequences, self.seed = sequences, seed
        self.pool: list[int] | None = None
        self.natural: Tensor | None = None
        self.started: float | None = None
        self.probing = 0.0  # seconds spent probing
        self.last_step: int | None = None  # the step of the last record written

    def _setup(self) -> None:
        tokenizer = TextTokenizer.load(self.run_dir / "tokenizer.json")
        self.pool = list(range(tokenizer.vocab_size))
        C = self.data.context
        valid = encode_stream(tokenizer, load_lm_text(self.data).valid)
        n = min(NATURAL_WINDOWS, len(valid) // (C + 1))
        self.natural = valid[:n * (C + 1)].view(n, C + 1) if n else None  # (n, C + 1)

    def _record(self, trainer, step: int) -> None:
        if not trainer.dist.is_main:
            return
        began = time.perf_counter()
        if self.pool is None:
            self._setup()
        seconds = began - (self.started or began) - self.probing
        record = repeat_probe(trainer.model, self.pool, half=self.half,
                              sequences=self.sequences, seed=self.seed, natural=self.natural,
                              step=step, seconds=seconds)
        with self.path.open("a") as out:
            out.write(json.dumps(record.to_dict()) + "\n")
        self.last_step = step
        self.probing += time.perf_counter() - began

    def on_step_end(self, trainer, info) -> None:
        if self.started is None:
            self.started = time.perf_counter()
        if info.step % self.every == 0:
            self._record(trainer, info.step)

    def on_fit_end(self, trainer, result) -> None:
        if self.last_step != result.global_step:  # the last step's probe, unless just taken
            self._record(trainer, result.global_step)
