"""The settings of a translation run: which parallel data, how it becomes subword ids, and the
training defaults that translation uses instead of :class:`~attnlab.train.TrainConfig`'s."""

from __future__ import annotations

from dataclasses import dataclass, field

from attnlab.configs import DictConfig

__all__ = ["SMALL_RECIPE", "TRANSLATION_DEFAULTS", "TranslationDataConfig"]

# Training a translator from scratch: these replace the TrainConfig defaults (which suit the
# SST-2 classifier); options given win.
TRANSLATION_DEFAULTS = {
    "lr": 1e-3,  # peak of AdamW after warm-up, then linear decay
    "batch_size": 128,  # sentence pairs per step (about 1.6k target tokens on Multi30k)
    "epochs": 10,
    "warmup_ratio": 0.05,
    "label_smoothing": 0.1,  # token-level, as in Vaswani et al. (2017)
    "ema_decay": None,
    "patience": None,
    "eval_steps": 500,
    "save_every": 500,
}

# The small recipe: 10 minutes of training on a 2-core CPU (two threads) gave 31.9 BLEU on
# test_2016_flickr with beam 5 (25.9 greedy); what `attnlab experiment heads --task translation`
# runs unless options say otherwise. Per options group, field -> value, on top of
# TRANSLATION_DEFAULTS; the same as the command line in the README's results.
SMALL_RECIPE: dict[str, dict[str, object]] = {
    "data": {  # TranslationDataConfig fields
        "dev_bleu_sentences": 100,  # one dev BLEU at the end: greedy on 100 sentences
    },
    "model": {  # Seq2SeqConfig fields (n_heads is what the experiment varies)
        "d_model": 256,  # every head count splits this width: d_k = d_model / n_heads
        "n_encoder_layers": 3,
        "n_decoder_layers": 3,
        "d_ff": 512,  # half the default: 1.2x the training tokens/s here
    },
    "train": {  # TrainConfig fields
        "batch_size": 64,  # more, smaller steps: 1,059 of them in 10 minutes
        "lr": 1.5e-3,
        "warmup_steps": 100,
        "max_steps": 1100,  # the linear decay ends here, about when the time is up
        "time_limit": 600.0,  # seconds of training per run, whichever ends first (measured: the
        #   time, after 1,059 steps)
        "eval_steps": None,  # no evaluation before the end
        "eval_every": 10,  # (epochs) i.e. only at the end of training
    },
}


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
    dev_bleu_sentences: int = field(default=200, metadata={
        "help": "dev sentences translated (greedy) for the BLEU of each evaluation (0: none)"})

    def __post_init__(self) -> None:
        for name in ("source", "source_lang", "target_lang", "dev_split"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if self.source_lang == self.target_lang:
            raise ValueError(f"source_lang and target_lang must differ, both are "
                             f"{self.source_lang!r}")
        for name, low in (("vocab_size", 16), ("max_tokens", 3), ("dev_bleu_sentences", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.train_limit is not None and (
                isinstance(self.train_limit, bool) or not isinstance(self.train_limit, int)
                or self.train_limit < 1):
            raise ValueError(f"train_limit must be None or an integer >= 1, "
                             f"got {self.train_limit!r}")
        if self.tokenizer != "bpe":
            raise ValueError(f"tokenizer must be 'bpe', got {self.tokenizer!r}")

