"""Using a trained classification run: load it, evaluate it on a split, predict texts.

Any model that :func:`attnlab.io.build_model` knows from a checkpoint's ``model_type``
evaluates and predicts the same way (fine-tuned pretrained encoders included).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from attnlab.errors import InputError
from attnlab.io.registry import LoadedModel, load_model
from attnlab.models.prediction import Prediction
from attnlab.tasks.classification.metrics import EvalResult, evaluate
from attnlab.text import (
    DataFormatError,
    LengthGroupedBatches,
    TextDataset,
    TextTokenizer,
    load_split,
)

__all__ = ["EVAL_BATCH", "Prediction", "encode_dataset", "evaluate_run", "load_run", "predict"]

EVAL_BATCH = 256  # examples per evaluation batch


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


def encode_dataset(tokenizer: TextTokenizer, dataset: TextDataset,
                   max_length: int | None = None) -> list[list[int]]:
    """Token ids of each text of ``dataset`` (see :meth:`TextTokenizer.encode`).

    Raises:
        DataFormatError: a text with no tokens at all (only combining marks, say), naming its
            file and line.
    """
    try:
        return tokenizer.encode(dataset.texts, max_length=max_length)
    except ValueError as err:
        pieces = tokenizer.encode(dataset.texts, add_special_tokens=False, allow_empty=True)
        empty = [i for i, row in enumerate(pieces) if not row]
        if "has no tokens" not in str(err) or not empty:
            raise
    first = empty[0]
    more = f" (and {len(empty) - 1} more texts)" if len(empty) > 1 else ""
    raise DataFormatError(f"{dataset.where(first)}: text {dataset.texts[first]!r} has no "
                          f"tokens{more}; remove the row or give it words") from None


def evaluate_run(
    path: str | os.PathLike, source: str = "sst2", split: str = "test", *,
    batch_size: int = EVAL_BATCH, device: str = "cpu",
    text_column: str | None = None, label_column: str | None = None,
) -> EvalResult:
    """Loss, accuracy and macro F1 of a trained run on ``split`` of ``source``; the text and
    label columns default to those the run was trained with."""
    run = load_run(path, device)
    saved = run.config.get("data") or {}
    dataset = load_split(source, split, n_classes=len(run.labels),
                         text_column=text_column or saved.get("text_column"),
                         label_column=label_column or saved.get("label_column"))
    ids = encode_dataset(run.tokenizer, dataset)
    batches = LengthGroupedBatches(ids, dataset.labels, batch_size, shuffle=False,
                                   pad_id=run.tokenizer.pad_token_id)
    return evaluate(run.model, batches, device=device)


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
        raise InputError("texts is empty: give at least one text to classify")
    run = (path_or_run if isinstance(path_or_run, LoadedModel)
           else load_run(path_or_run, device))
    run.model.eval()
    out: list[Prediction] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        batch = run.tokenizer.pad(run.tokenizer.encode(chunk))  # (B, L) each
        output = run.model(batch.input_ids.to(device), batch.attention_mask.to(device))
        logits = getattr(output, "logits", output)  # (B, C)
        probs = torch.softmax(logits.float(), dim=-1).cpu()  # (B, C)
        out += [Prediction.from_probs(text, run.labels, row)
                for text, row in zip(chunk, probs.tolist(), strict=True)]
    return out
