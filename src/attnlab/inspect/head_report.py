"""What each head is worth on a labelled data set: importance, statistics, masking, pruning.

:func:`head_report` measures, for every head of a classifier, over ``texts``/``labels``:

* its importance (Michel et al., 2019; normalised per layer, as the paper ranks heads),
* its entropy, mean attention distance and share of attention on special tokens,
* the accuracy when that head alone is masked (its output multiplied by 0),

and the curve of accuracy against the share of heads masked, least important first. Masking a
head gives exactly the output of pruning it (see :func:`~attnlab.inspect.prune_heads`).
:func:`write_report` writes ``report.md``, ``pruning_curve.png`` and ``heads.json``.

Legend: ``B`` batch, ``H`` heads of a layer, ``L`` tokens.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from attnlab.errors import InputError
from attnlab.inspect.capture import capture
from attnlab.inspect.gates import head_gates
from attnlab.inspect.html import model_name
from attnlab.inspect.importance import HeadImportance, head_importance
from attnlab.inspect.statistics import HeadStats, head_statistics
from attnlab.inspect.subject import Encoded, Subject
from attnlab.io.atomic import write_text_atomic
from attnlab.text import by_length

__all__ = [
    "HeadReport",
    "PruningResult",
    "compare_pruned",
    "curve_figure",
    "data_name",
    "encode_batches",
    "evaluate_accuracy",
    "head_report",
    "heads_to_prune",
    "write_report",
]

DEFAULT_SHARES = tuple(i / 10 for i in range(11))  # shares of heads masked on the curve
_DATA_NAMES = {"sst2": "SST-2", "sst-2": "SST-2", "multi30k": "Multi30k"}  # names as written


def data_name(source: str | os.PathLike, split: str) -> str:
    """The name reports and pictures show for a split: ``SST-2 dev``, or the data folder's last
    path component and the split (``toy dev``), never a whole local path."""
    path = Path(source)
    if path.suffix.lower() in (".tsv", ".csv", ".jsonl") or path.is_file():
        path = path.parent  # a split file: name its folder
    name = path.name or path.resolve().name or str(source)
    return f"{_DATA_NAMES.get(name.lower(), name)} {split}"


@dataclass(frozen=True)
class HeadReport:
    """Per-head measurements of one model on one data set (lists are per layer, ``(H,)``)."""

    model: str  # the model's name
    data: str  # the data set's name
    examples: int  # labelled texts measured on
    names: list[str]  # dotted names of the attention modules
    importance: list[Tensor]  # Michel et al. importance, L2-normalised per layer
    entropy: list[Tensor]  # nats, mean over real query positions
    distance: list[Tensor]  # tokens, mean attention distance
    special: list[Tensor]  # share of attention on special tokens
    masked_accuracy: list[Tensor]  # accuracy with only that head masked
    accuracy: float  # accuracy of the whole model
    curve: list[tuple[float, int, float]]  # (share masked, heads masked, accuracy)


def encode_batches(subject: Subject, texts: Sequence[str], labels: Sequence[int], batch_size: int
                   ) -> list[tuple[Encoded, Tensor]]:
    """Texts grouped by token length and cut into padded batches (little padding)."""
    lengths = [len(ids) for ids in subject.tokenizer.encode(texts, allow_empty=True)]
    out = []
    for rows in by_length(lengths, batch_size):
        enc = subject.encode([texts[i] for i in rows])
        out.append((enc, torch.tensor([labels[i] for i in rows], dtype=torch.long)))  # (B,)
    return out


@torch.no_grad()
def evaluate_accuracy(subject: Subject, batches: list[tuple[Encoded, Tensor]],
                      gates: dict[str, Tensor] | None = None) -> float:
    """Accuracy over ``batches`` with each head's output multiplied by ``gates`` (if given)."""
    correct = total = 0
    with head_gates(subject.model, gates or {}):
        for enc, labels in batches:
            logits = subject.logits(enc.input_ids, enc.attention_mask)  # (B, C)
            correct += int((logits.argmax(-1) == labels).sum())
            total += labels.numel()
    return correct / total


def _mask_gates(names: list[str], heads: list[int], masked: Sequence[tuple[int, int]]
                ) -> dict[str, Tensor]:
    gates = {n: torch.ones(h) for n, h in zip(names, heads, strict=True)}
    for layer, h in masked:
        gates[names[layer]][h] = 0.0
    return gates


def head_report(
    subject: Subject,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    data_name: str = "data",
    batch_size: int = 32,
    shares: Sequence[float] = DEFAULT_SHARES,
) -> HeadReport:
    """Measure every head of ``subject`` on labelled ``texts`` (see the module docstring).

    Args:
        subject: a classifier (``subject.labels`` is not ``None``).
        texts: the texts, e.g. the SST-2 dev sentences.
        labels: their class indices.
        data_name: shown in the report and the picture (see :func:`data_name`).
        batch_size: texts per forward pass.
        shares: points of the pruning curve, shares of all heads in ``[0, 1]``.
    """
    if subject.labels is None:
        raise InputError(f"{subject.name} has no classification head; head report needs a "
                         f"classifier (a training run folder)")
    if len(texts) != len(labels) or not texts:
        raise InputError(f"texts and labels must be non-empty and of equal length, got "
                         f"{len(texts)} texts and {len(labels)} labels")
    if any(not 0.0 <= s <= 1.0 for s in shares):
        raise InputError(f"shares must lie in [0, 1], got {list(shares)}")
    subject.model.eval()
    batches = encode_batches(subject, texts, labels, batch_size)

    # statistics and the full model's accuracy in one pass
    stats: dict[str, HeadStats] = {}
    correct = 0
    with torch.no_grad():
        for enc, y in batches:
            with capture(subject.model) as cap:
                logits = subject.logits(enc.input_ids, enc.attention_mask)
            correct += int((logits.argmax(-1) == y).sum())
            for name in cap.names:
                s = head_statistics(cap[name], enc.attention_mask, enc.special_mask)
                stats[name] = s if name not in stats else stats[name] + s
    names = cap.names
    accuracy = correct / len(texts)

    def loss_fn(model, batch):
        enc, y = batch
        return F.cross_entropy(subject.logits(enc.input_ids, enc.attention_mask).float(), y,
                               reduction="none")  # (B,)

    importance = head_importance(subject.model, batches, loss_fn, normalize=True)
    heads = [s.numel() for s in importance.scores]
    masked = []
    for layer, n_heads in enumerate(heads):
        row = [evaluate_accuracy(subject, batches, _mask_gates(names, heads, [(layer, h)]))
               for h in range(n_heads)]
        masked.append(torch.tensor(row))
    order = importance.ranking()
    curve = []
    for share in sorted(set(shares)):
        k = round(share * len(order))
        acc = accuracy if k == 0 else evaluate_accuracy(
            subject, batches, _mask_gates(names, heads, order[:k]))
        curve.append((share, k, acc))
    return HeadReport(
        model=model_name(subject.name), data=data_name, examples=len(texts), names=names,
        importance=importance.scores, entropy=[stats[n].entropy for n in names],
        distance=[stats[n].distance for n in names], special=[stats[n].special for n in names],
        masked_accuracy=masked, accuracy=accuracy, curve=curve)


def heads_to_prune(report: HeadReport, share: float) -> list[tuple[int, int]]:
    """The least important ``share`` of all heads as ``(layer, head)``, never a layer's last."""
    if not 0.0 <= share < 1.0:
        raise InputError(f"share must be in [0, 1), got {share}")
    order = HeadImportance(report.names, report.importance, report.examples).ranking()
    left = [row.numel() for row in report.importance]
    chosen: list[tuple[int, int]] = []
    for layer, h in order:
        if len(chosen) >= round(share * len(order)):
            break
        if left[layer] > 1:
            chosen.append((layer, h))
            left[layer] -= 1
    return chosen


@dataclass(frozen=True)
class PruningResult:
    """A model and its pruned copy, measured on the same batches."""

    accuracy: tuple[float, float]  # (original, pruned)
    parameters: tuple[int, int]  # (original, pruned)
    seconds: tuple[float, float]  # (original, pruned): best of 3 interleaved passes over the data


@torch.no_grad()
def compare_pruned(original: Subject, pruned: Subject, batches: list[tuple[Encoded, Tensor]]
                   ) -> PruningResult:
    """Accuracy, parameter count and forward time of ``original`` and ``pruned``."""
    def one_pass(subject: Subject) -> float:
        start = time.perf_counter()
        for enc, _labels in batches:
            subject.logits(enc.input_ids, enc.attention_mask)
        return time.perf_counter() - start

    pair = (original, pruned)
    for subject in pair:  # warm-up
        one_pass(subject)
    rounds = [[one_pass(subject) for subject in pair] for _ in range(3)]  # interleaved
    seconds = tuple(min(r[i] for r in rounds) for i in range(2))
    return PruningResult(
        accuracy=tuple(evaluate_accuracy(m, batches) for m in pair),
        parameters=tuple(sum(p.numel() for p in m.model.parameters()) for m in pair),
        seconds=seconds)


def format_table(report: HeadReport) -> str:
    """The per-head table as Markdown."""
    lines = ["| layer | head | importance | entropy (nats) | distance (tokens) | special share "
             "| accuracy, head masked | change |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for layer in range(len(report.names)):
        for h in range(report.importance[layer].numel()):
            acc = float(report.masked_accuracy[layer][h])
            lines.append(
                f"| {layer} | {h} | {float(report.importance[layer][h]):.3f} "
                f"| {float(report.entropy[layer][h]):.3f} | {float(report.distance[layer][h]):.2f} "
                f"| {float(report.special[layer][h]):.3f} | {acc:.4f} "
                f"| {100 * (acc - report.accuracy):+.2f} pt |")
    return "\n".join(lines)


def format_curve(report: HeadReport) -> str:
    """The pruning curve as Markdown."""
    lines = ["| share of heads masked | heads masked | accuracy |", "|---:|---:|---:|"]
    lines += [f"| {share:.0%} | {k} | {acc:.4f} |" for share, k, acc in report.curve]
    return "\n".join(lines)


def curve_figure(report: HeadReport) -> Figure:
    """Accuracy against the share of heads masked, least important first."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    xs = [100 * s for s, _, _ in report.curve]
    ax.plot(xs, [100 * a for _, _, a in report.curve], marker="o")
    ax.set_xlabel("heads masked, least important first (%)")
    ax.set_ylabel(f"accuracy on {report.data} (%)")
    ax.set_title(f"{report.model}: pruning heads", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_report(report: HeadReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.md``, ``pruning_curve.png`` and ``heads.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.md", "curve": out / "pruning_curve.png",
             "json": out / "heads.json"}
    curve_figure(report).savefig(paths["curve"], dpi=120)
    n_heads = sum(s.numel() for s in report.importance)
    text = "\n".join([
        f"# Heads of {report.model}",
        "",
        f"Measured on {report.data}: {report.examples} examples; accuracy of the whole model "
        f"{report.accuracy:.4f}; {len(report.names)} layers, {n_heads} heads.",
        "",
        "Importance: expected absolute gradient of the loss with respect to a gate on the "
        "head's output (Michel et al., 2019), L2-normalised per layer. Entropy, distance and "
        "special share: means over real query positions. Accuracy, head masked: the whole "
        "model with only that head's output set to 0.",
        "",
        format_table(report),
        "",
        "## Pruning curve",
        "",
        "Heads masked in increasing order of importance (masking a head gives the same output "
        "as pruning it).",
        "",
        f"![pruning curve]({paths['curve'].name})",
        "",
        format_curve(report),
        "",
    ])
    write_text_atomic(paths["report"], text)
    write_text_atomic(paths["json"], json.dumps({
        "model": report.model, "data": report.data, "examples": report.examples,
        "accuracy": report.accuracy, "names": report.names,
        "importance": [t.tolist() for t in report.importance],
        "entropy": [t.tolist() for t in report.entropy],
        "distance": [t.tolist() for t in report.distance],
        "special": [t.tolist() for t in report.special],
        "masked_accuracy": [t.tolist() for t in report.masked_accuracy],
        "curve": [{"share": s, "heads_masked": k, "accuracy": a} for s, k, a in report.curve],
    }, indent=2))
    return paths
