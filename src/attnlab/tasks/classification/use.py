"""Using a trained classification run: load it, evaluate it on a split, predict texts.

Any model that :func:`attnlab.io.build_model` knows from a checkpoint's ``model_type``
evaluates and predicts the same way (fine-tuned pretrained encoders included).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnlab.io.registry import LoadedModel, load_model
from attnlab.tasks.classification.evaluation import evaluate
from attnlab.tasks.classification.metrics import EvalResult
from attnlab.text import LengthGroupedBatches, encode, load_split, pad_sequences

__all__ = ["EVAL_BATCH", "Prediction", "evaluate_run", "load_run", "predict"]

EVAL_BATCH = 256  # examples per evaluation batch


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one text."""

    text: str
    label: str  # the most probable class name
    probability: float  # its softmax probability
    probs: dict[str, float]  # every class name -> probability

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_run(path: str | os.PathLike, device: str = "cpu") -> LoadedModel:
    """The model, tokenizer and labels of a run folder (its ``best/``, else ``last/``) or of a
    checkpoint folder, in eval mode (see :func:`attnlab.io.load_model`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run folder not found: {path}")
    run = load_model(path, device=device)
    if run.tokenizer is None:
        raise FileNotFoundError(f"{run.path} has no tokenizer.json; cannot turn text into ids")
    return run


def evaluate_run(
    path: str | os.PathLike, source: str = "sst2", split: str = "test", *,
    batch_size: int = EVAL_BATCH, device: str = "cpu",
) -> EvalResult:
    """Loss, accuracy and macro F1 of a trained run on ``split`` of ``source``."""
    run = load_run(path, device)
    dataset = load_split(source, split, n_classes=len(run.labels))
    ids = encode(run.tokenizer, dataset.texts, max_length=run.max_length)
    batches = LengthGroupedBatches(ids, dataset.labels, batch_size, shuffle=False,
                                   pad_id=_pad_id(run))
    return evaluate(run.model, batches, device=device)


def _pad_id(run: LoadedModel) -> int:
    pad = run.tokenizer.token_to_id("[PAD]")
    return 0 if pad is None else pad


@torch.no_grad()
def predict(
    path_or_run: str | os.PathLike | LoadedModel, texts: Sequence[str], *,
    batch_size: int = EVAL_BATCH, device: str = "cpu",
) -> list[Prediction]:
    """Class and probability for each text, from a run folder (or a run loaded with
    :func:`load_run`)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, got a single str; wrap it in a list")
    if not texts:
        raise ValueError("texts is empty: give at least one text to classify")
    run = (path_or_run if isinstance(path_or_run, LoadedModel)
           else load_run(path_or_run, device))
    run.model.eval()
    out: list[Prediction] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        ids = encode(run.tokenizer, chunk, max_length=run.max_length)
        input_ids, attention_mask = pad_sequences(ids, _pad_id(run))  # (B, L) each
        output = run.model(input_ids.to(device), attention_mask.to(device))
        logits = getattr(output, "logits", output)  # (B, C)
        probs = torch.softmax(logits.float(), dim=-1).cpu()  # (B, C)
        for text, row in zip(chunk, probs.tolist(), strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            out.append(Prediction(text, run.labels[best], row[best],
                                  dict(zip(run.labels, row, strict=True))))
    return out
