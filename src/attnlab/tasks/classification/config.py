"""The settings of a classification run: which data, which pretrained encoder to fine-tune,
and the training defaults that fine-tuning uses instead of :class:`~attnlab.train.TrainConfig`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attnlab.configs import DictConfig
from attnlab.errors import InputError

__all__ = ["FINETUNE_DEFAULTS", "INIT_KEY", "KNOWN_LABELS", "DataConfig", "FinetuneConfig"]

# Class names of known data sets (index = class id); others get "0", "1", ...
KNOWN_LABELS = {"sst2": ["negative", "positive"], "sst-2": ["negative", "positive"]}


@dataclass
class DataConfig(DictConfig):
    """Which data, and how it becomes token ids."""

    source: str = field(default="sst2", metadata={
        "help": "a name under $ATTNLAB_DATA, or a folder with train/dev/test files"})
    dev_split: str = field(default="dev", metadata={
        "help": "split evaluated after each epoch (early stopping, best/)"})
    vocab_size: int = field(default=16000, metadata={
        "help": "largest tokenizer vocabulary (SST-2 has ~14k distinct words)"})
    tokenizer: str = field(default="word", metadata={
        "help": '"word" (one id per word) or "wordpiece" (sub-words)'})
    min_frequency: int = field(default=1, metadata={
        "help": "least count for a word to enter the vocabulary"})
    train_limit: int | None = field(default=None, metadata={
        "help": "use only the first N training examples (quick runs)"})
    n_classes: int = field(default=2, metadata={"help": "classes in the labels"})
    text_column: str | None = field(default=None, metadata={
        "help": "column holding the text [default: the first of sentence, text, content]"})
    label_column: str | None = field(default=None, metadata={
        "help": "column holding the label [default: label]"})

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise InputError(f"source must be a non-empty string, got {self.source!r}")
        for name in ("text_column", "label_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{name} must be None or a column name, got {value!r}")
        if self.text_column is not None and self.text_column == self.label_column:
            raise InputError(f"text_column and label_column are both {self.text_column!r}; "
                             f"the text and the label need their own columns")
        for name in ("vocab_size", "min_frequency", "n_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if self.train_limit is not None and (
            not isinstance(self.train_limit, int) or self.train_limit < 1
        ):
            raise InputError(
                f"train_limit must be None or an integer >= 1, got {self.train_limit!r}"
            )
        if self.tokenizer not in ("word", "wordpiece"):
            raise InputError(f"tokenizer must be 'word' or 'wordpiece', got {self.tokenizer!r}")


    def label_names(self) -> list[str]:
        known = KNOWN_LABELS.get(Path(self.source).name.lower())
        if known is not None and len(known) == self.n_classes:
            return list(known)
        return [str(i) for i in range(self.n_classes)]


INIT_KEY = "init"  # config.json key holding the FinetuneConfig of a fine-tuned run
HEAD_POOLINGS = ("mean", "pooler")


@dataclass
class FinetuneConfig(DictConfig):
    """Which pretrained encoder, and the head and inputs put on it."""

    init: str = field(metadata={
        "help": "pretrained name (all-MiniLM-L6-v2) or folder with the model and tokenizer.json"})
    pooling: str = field(default="mean", metadata={
        "help": 'head input: "mean" over real tokens, or "pooler" (tanh(W h_[CLS]))'})
    head_dropout: float = field(default=0.1, metadata={
        "help": "dropout on the pooled vector before the classification layer"})
    max_length: int = field(default=64, metadata={
        "help": "longest input in tokens, [CLS]/[SEP] included (SST-2 dev: 60)"})
    freeze_word_embeddings: bool = field(default=True, metadata={
        "help": "keep the word embeddings fixed (faster steps on CPU)"})

    def __post_init__(self) -> None:
        if not isinstance(self.init, str) or not self.init:
            raise InputError(f"init must be a pretrained name or a folder, got {self.init!r}")
        if self.pooling not in HEAD_POOLINGS:
            raise InputError(f"pooling must be one of {HEAD_POOLINGS}, got {self.pooling!r}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise InputError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or (
                self.max_length < 3):
            raise InputError(f"max_length must be an integer >= 3 ([CLS] text [SEP]), "
                             f"got {self.max_length!r}")
        if not isinstance(self.freeze_word_embeddings, bool):
            raise TypeError(f"freeze_word_embeddings must be a bool, "
                            f"got {self.freeze_word_embeddings!r}")



# Fine-tuning a pretrained encoder (``attnlab train --init``): these replace the TrainConfig
# defaults below (which suit a small classifier trained from scratch); options given win.
FINETUNE_DEFAULTS = {
    "lr": 8e-5,  # small encoders (MiniLM) take more than BERT-base's 2e-5..5e-5 in one epoch
    "batch_size": 32,
    "epochs": 1,  # one pass over SST-2's 67k phrases is enough for a pretrained encoder
    "warmup_ratio": 0.06,
    "schedule": "linear",
    "weight_decay": 0.01,
    "label_smoothing": 0.0,
    "ema_decay": None,  # no gain for MiniLM: an EMA moved dev loss by < 0.001 at the end
    "patience": None,  # one epoch: nothing to stop early
    "eval_steps": 500,  # a dev pass takes ~20 s on two CPU cores: four per epoch
    "save_every": 500,  # last/ every 500 steps, so a long run can resume
}
