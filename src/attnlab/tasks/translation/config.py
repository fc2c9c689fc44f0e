"""The settings of a translation run: which parallel data, how it becomes subword ids, and the
training defaults that translation uses instead of :class:`~attnlab.train.TrainConfig`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnlab.configs import DictConfig
from attnlab.errors import InputError

__all__ = ["DEFAULT_RECIPE", "SMALL_RECIPE", "TRANSLATION_DEFAULTS", "TranslationDataConfig",
           "recipe_options"]

# Training a translator from scratch: these replace the TrainConfig defaults (which suit the
# SST-2 classifier); options given win.
TRANSLATION_DEFAULTS = {
    "lr": 2e-3,  # peak of AdamW after warm-up, then linear decay to 0 (at 1e-3 the dev loss
    #   was 0.28-0.32 higher after 25 minutes)
    "adam_beta2": 0.98,  # as Vaswani et al. (2017)
    "batch_size": 128,  # sentence pairs per step when batches are not sized by tokens
    "epochs": 14,  # planned: 4,396 steps of 1.5k-token batches on Multi30k (the time ends first)
    "warmup_ratio": 0.1,
    "label_smoothing": 0.1,  # token-level, as in Vaswani et al. (2017)
    "ema_decay": None,
    "patience": None,
    "eval_every": 2,  # (epochs) each dev evaluation (loss, greedy BLEU) costs ~20 s here
    "eval_steps": None,
    "save_every": 500,
    "time_limit": 2700.0,  # (seconds) the 45 minutes of the goal
    "decay_to_time_limit": True,  # the decay ends at the time limit when that comes first, so
    #   a run stopped by the clock ends at a learning rate of 0 on any machine
}

# The default recipe, per options group: field -> value on top of the config dataclasses'
# defaults; what `attnlab train --task translation` trains unless options say otherwise. On a
# 2-core CPU (two threads) it trained 3,877 steps in 45 min (its decay ending with the time):
# 39.7 BLEU on test_2016_flickr with beam 5 (37.7 greedy), 34.6 on test_2017_flickr (the
# README's results).
DEFAULT_RECIPE: dict[str, dict[str, object]] = {
    "data": {  # TranslationDataConfig fields
        "batch_tokens": 1536,  # ~92 pairs a batch (the peer's 2,048 hold as many), 4% padding
    },
    "model": {  # Seq2SeqConfig fields (6,002,688 parameters with a joint 8k vocabulary)
        "n_heads": 4,  # d_k = 64, as Vaswani et al.'s base model
        "d_ff": 512,  # the peer's size: 1.25x the steps per second of 8 heads and 1024
        "attn_dropout": 0.1,  # as torch.nn.Transformer (and the peer)
    },
    "train": TRANSLATION_DEFAULTS,  # TrainConfig fields
}

# The small recipe: 10 minutes of training on a 2-core CPU (two threads) gave 31.9 BLEU on
# test_2016_flickr with beam 5 (25.9 greedy); what `attnlab experiment heads --task translation`
# runs unless options say otherwise. Per options group, field -> value, on top of
# DEFAULT_RECIPE; the same as the command line in the README's results.
SMALL_RECIPE: dict[str, dict[str, object]] = {
    "data": {  # TranslationDataConfig fields
        "batch_tokens": None,  # batches of batch_size pairs
        "dev_bleu_sentences": 100,  # one dev BLEU at the end: greedy on 100 sentences
    },
    "model": {  # Seq2SeqConfig fields (n_heads is what the experiment varies)
        "d_model": 256,  # every head count splits this width: d_k = d_model / n_heads
        "n_heads": 4,
        "n_encoder_layers": 3,
        "n_decoder_layers": 3,
        "d_ff": 512,
        "attn_dropout": 0.0,  # the runs measured had none
    },
    "train": {  # TrainConfig fields
        "batch_size": 64,  # more, smaller steps: 1,059 of them in 10 minutes
        "lr": 1.5e-3,
        "adam_beta2": 0.999,
        "epochs": 10,  # more than max_steps needs: the runs measured had these two settings
        "warmup_ratio": 0.05,  # (warmup_steps wins)
        "warmup_steps": 100,
        "max_steps": 1100,  # the linear decay ends here, about when the time is up
        "time_limit": 600.0,  # seconds of training per run, whichever ends first (measured: the
        #   time, after 1,059 steps)
        "eval_steps": None,  # no evaluation before the end
        "eval_every": 10,  # (epochs) i.e. only at the end of training
        "decay_to_time_limit": False,  # the decay follows the steps only
    },
}


def recipe_options(recipe: dict[str, dict[str, object]], data: dict[str, Any],
                   model: dict[str, Any], train: dict[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The options given (field -> value per group) on top of ``recipe``. A batch size given
    without ``batch_tokens`` asks for batches of that many pairs, so it turns token batches
    off; giving both sizes is an error."""
    if "batch_size" in train and data.get("batch_tokens") is not None:
        raise InputError(f"give batch_size (pairs per batch) or batch_tokens (tokens per batch), "
                         f"not both: got batch_size={train['batch_size']}, "
                         f"batch_tokens={data['batch_tokens']}")
    by_pairs = {"batch_tokens": None} if "batch_size" in train else {}
    return ({**recipe["data"], **by_pairs, **data}, {**recipe["model"], **model},
            {**recipe["train"], **train})


@dataclass
class TranslationDataConfig(DictConfig):
    """Which parallel data, which languages, and how the text becomes subword ids."""

    source: str = field(default="multi30k", metadata={
        "help": "a name under $ATTNLAB_DATA, or a folder with SPLIT.LANG files (or tables)"})
    source_lang: str = field(default="de", metadata={"help": "language code of the input"})
    target_lang: str = field(default="en", metadata={"help": "language code of the output"})
    dev_split: str = field(default="val", metadata={
        "help": "split scored during training (early stopping, best/)"})
    vocab_size: int = field(default=8000, metadata={
        "help": "joint subword vocabulary of both languages"})
    tokenizer: str = field(default="bpe", metadata={"help": '"bpe" (byte-pair merges)'})
    max_tokens: int = field(default=100, metadata={
        "help": "longest sentence in subword tokens; longer training pairs are dropped"})
    train_limit: int | None = field(default=None, metadata={
        "help": "use only the first N training pairs (quick runs)"})
    batch_tokens: int | None = field(default=None, metadata={
        "help": "size training batches by tokens: pairs x longer side <= this (fairseq's "
                "--max-tokens) instead of batch_size pairs; none: by pairs"})
    dev_bleu_sentences: int = field(default=200, metadata={
        "help": "dev sentences translated (greedy) for the BLEU of each evaluation (0: none)"})

    def __post_init__(self) -> None:
        for name in ("source", "source_lang", "target_lang", "dev_split"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(f"{name} must be a non-empty string, got {value!r}")
        if self.source_lang == self.target_lang:
            raise InputError(f"source_lang and target_lang must differ, both are "
                             f"{self.source_lang!r}")
        for name, low in (("vocab_size", 16), ("max_tokens", 3), ("dev_bleu_sentences", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.train_limit is not None and (
                isinstance(self.train_limit, bool) or not isinstance(self.train_limit, int)
                or self.train_limit < 1):
            raise InputError(f"train_limit must be None or an integer >= 1, "
                             f"got {self.train_limit!r}")
        if self.batch_tokens is not None and (
                isinstance(self.batch_tokens, bool) or not isinstance(self.batch_tokens, int)
                or self.batch_tokens < self.max_tokens):
            raise InputError(f"batch_tokens must be None or an integer >= max_tokens "
                             f"({self.max_tokens}), got {self.batch_tokens!r}")
        if self.tokenizer != "bpe":
            raise InputError(f"tokenizer must be 'bpe', got {self.tokenizer!r}")

