"""Text classification end to end: data -> tokenizer -> TextClassifier -> Trainer -> run folder;
and evaluation / prediction from a run folder.

A run folder (``runs/h4``) holds ``best/`` and ``last/`` checkpoints (weights, config.json with
model, training and data settings and label names, tokenizer.json), ``metrics.jsonl`` and
``result.json``. Any model that :func:`attnlab.models.registry.build_model` knows from a
checkpoint's ``model_type`` evaluates and predicts the same way (fine-tuned pretrained encoders
included, see :mod:`attnlab.training.finetune`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnlab.io.checkpoint import load_checkpoint
from attnlab.io.registry import LoadedModel, load_model
from attnlab.models.classifier import ClassifierConfig, TextClassifier
from attnlab.tasks.classification.config import DataConfig
from attnlab.text import (
    LengthGroupedBatches,
    TextDataset,
    encode,
    load_split,
    load_tokenizer,
    pad_sequences,
    train_tokenizer,
)
from attnlab.text.tokenizer import save_tokenizer
from attnlab.train.config import TrainConfig
from attnlab.train.distributed import DistInfo, barrier, setup_distributed
from attnlab.train.evaluation import evaluate
from attnlab.train.metrics import EvalResult
from attnlab.train.sharding import ShardedBatches
from attnlab.train.trainer import (
    Callback,
    FitResult,
    RunArtifacts,
    Trainer,
    seed_everything,
)

__all__ = [
    "Prediction",
    "TrainedRun",
    "differences_from_saved",
    "evaluate_run",
    "fit_on_splits",
    "load_run",
    "load_splits",
    "predict",
    "saved_configs",
    "train_classifier",
]

EVAL_BATCH = 256  # examples per evaluation batch


@dataclass
class TrainedRun:
    """What :func:`train_classifier` returns."""

    out_dir: Path  # the run folder
    result: FitResult  # history, best epoch, steps, wall time
    model: nn.Module  # the model at the end of training (not the best epoch's)
    n_parameters: int  # trainable parameters
    model_config: Any  # ClassifierConfig, or the fine-tuned model's config dict


def saved_configs(out_dir: str | os.PathLike) -> tuple[DataConfig, dict[str, Any], TrainConfig]:
    """The data, model and training settings stored in ``out_dir/last`` (to resume a run)."""
    ckpt = load_checkpoint(Path(out_dir) / "last")
    cfg = ckpt.config
    return (DataConfig.from_dict(cfg["data"]), dict(cfg["model"]),
            TrainConfig.from_dict(cfg["train"]))


def train_classifier(
    out_dir: str | os.PathLike,
    data: DataConfig | None = None,
    model_options: dict[str, Any] | None = None,
    train: TrainConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    dist_info: DistInfo | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainedRun:
    """Train a :class:`~attnlab.models.TextClassifier` on ``data`` into ``out_dir``.

    Args:
        out_dir: the run folder (created).
        data: data settings (default SST-2, word tokenizer).
        model_options: :class:`~attnlab.models.ClassifierConfig` fields besides
            ``vocab_size``/``n_classes`` (which come from the tokenizer and the data).
        train: training settings (default :class:`TrainConfig`).
        resume: continue from ``out_dir/last``: the settings must equal the saved ones (see
            :func:`saved_configs`), the saved tokenizer is reused.
        progress: progress bar and per-epoch lines on stderr.
        dist_info: process placement; default from the ``torchrun`` environment.
        callbacks: passed to the :class:`~attnlab.training.Trainer`.

    Under ``torchrun`` every process reads the data; rank 0 trains the tokenizer and the others
    load it; each global batch is split across processes (see :mod:`~attnlab.training.sharding`).
    """
    out_dir = Path(out_dir)
    data = data or DataConfig()
    train = train or TrainConfig()
    options = dict(model_options or {})
    for fixed in ("vocab_size", "n_classes"):
        if fixed in options:
            raise ValueError(f"model option {fixed!r} is set from the tokenizer/data, not given")
    info = dist_info or setup_distributed(train.device)
    if resume:
        _check_same_as_saved(out_dir, data, options)
    train_set, dev_set = load_splits(data)
    texts = train_set.texts

    tok_file = out_dir / "tokenizer.json"
    if resume:
        tokenizer = load_tokenizer(load_checkpoint(out_dir / "last").tokenizer_path)
    else:
        if info.is_main:
            tokenizer = train_tokenizer(texts, data.vocab_size, kind=data.tokenizer,
                                        min_frequency=data.min_frequency)
            save_tokenizer(tokenizer, tok_file)
        barrier()
        tokenizer = load_tokenizer(tok_file)
    model_config = ClassifierConfig(vocab_size=tokenizer.get_vocab_size(),
                                    n_classes=data.n_classes, **options)
    seed_everything(train.seed)
    model = TextClassifier(model_config)
    artifacts = RunArtifacts(
        model_config=model_config.to_dict(), model_type="classifier",
        labels=data.label_names(), tokenizer=tokenizer,
        extra={"data": data.to_dict(), "n_parameters": model.num_parameters()},
    )
    result = fit_on_splits(out_dir, model, tokenizer, model_config.max_len, train_set, dev_set,
                           train, artifacts, resume=resume, progress=progress, dist_info=info,
                           callbacks=callbacks)
    return TrainedRun(out_dir, result, model, model.num_parameters(), model_config)


def load_splits(data: DataConfig) -> tuple[TextDataset, TextDataset]:
    """The training split (cut to ``data.train_limit``) and the dev split of ``data``."""
    train_set = load_split(data.source, "train", n_classes=data.n_classes)
    dev_set = load_split(data.source, data.dev_split, n_classes=data.n_classes)
    if data.train_limit is not None:
        train_set = dataclasses.replace(train_set, texts=train_set.texts[: data.train_limit],
                                        labels=train_set.labels[: data.train_limit])
    return train_set, dev_set


def fit_on_splits(
    out_dir: Path, model: nn.Module, tokenizer: Any, max_length: int, train_set: TextDataset,
    dev_set: TextDataset, train: TrainConfig, artifacts: RunArtifacts, *, resume: bool,
    progress: bool, dist_info: DistInfo, callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Tokenize both splits (to ``max_length`` ids), batch them by length (sharded under
    ``torchrun``) and run the :class:`~attnlab.training.Trainer` into ``out_dir``."""
    train_ids = encode(tokenizer, train_set.texts, max_length=max_length)
    dev_ids = encode(tokenizer, dev_set.texts, max_length=max_length)
    train_batches: Any = LengthGroupedBatches(train_ids, train_set.labels, train.batch_size,
                                              seed=train.seed, drop_last=True)
    dev_batches: Any = LengthGroupedBatches(dev_ids, dev_set.labels, EVAL_BATCH, shuffle=False)
    if dist_info.distributed:
        train_batches = ShardedBatches(train_batches, dist_info.world_size, dist_info.rank)
        dev_batches = ShardedBatches(dev_batches, dist_info.world_size, dist_info.rank)
    trainer = Trainer(model, train, train_batches, dev_batches, out_dir=out_dir,
                      artifacts=artifacts, progress=progress, dist_info=dist_info,
                      callbacks=callbacks)
    return trainer.fit(resume=resume)


def _check_same_as_saved(out_dir: Path, data: DataConfig, options: dict[str, Any]) -> None:
    differ = differences_from_saved(out_dir, data, options)
    if differ:
        raise ValueError("cannot resume with different settings: " + ", ".join(differ))


def differences_from_saved(out_dir: str | os.PathLike, data: DataConfig,
                           model_options: dict[str, Any],
                           train: TrainConfig | None = None) -> list[str]:
    """How the run saved in ``out_dir/last`` differs from ``data``, the classifier that
    ``model_options`` give, defaults filled in (an option left out means its default, not
    whatever was saved), and ``train`` if given, as ``"name (saved x, now y)"`` strings; empty
    if it does not."""
    saved_data, saved_model, saved_train = saved_configs(out_dir)
    data_now = data.to_dict()
    differ = [f"data.{k} (saved {v!r}, now {data_now[k]!r})"
              for k, v in saved_data.to_dict().items() if data_now[k] != v]
    defaults = {f.name: f.default for f in dataclasses.fields(ClassifierConfig)
                if f.default is not dataclasses.MISSING and f.name != "n_classes"}
    wanted = {**defaults, **model_options}
    # a field missing from the saved config did not exist when the run was saved
    differ += [f"model.{k} (saved {saved_model[k]!r}, now {v!r})"
               for k, v in wanted.items() if k in saved_model and saved_model[k] != v]
    if train is not None:
        train_now = train.to_dict()
        differ += [f"train.{k} (saved {v!r}, now {train_now[k]!r})"
                   for k, v in saved_train.to_dict().items() if train_now[k] != v]
    return differ


# --- using a trained run ----------------------------------------------------------------------


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
    checkpoint folder, in eval mode (see :func:`attnlab.models.registry.load_model`)."""
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
