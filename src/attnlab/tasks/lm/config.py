"""The settings of a language-model run: which text, how it becomes token ids, and the training
defaults that language modelling uses instead of :class:`~attnlab.train.TrainConfig`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnlab.configs import DictConfig
from attnlab.errors import InputError
from attnlab.text.tokenizer import STREAM_KINDS

__all__ = ["DEFAULT_RECIPE", "INDUCTION_RECIPE", "LM_DEFAULTS", "LMDataConfig", "UNITS",
           "recipe_options"]

UNITS = {"char": "char", "byte-bpe": "byte"}  # tokenizer kind -> what bits are counted per

# Training a language model from scratch on a 2-core CPU: these replace the TrainConfig defaults
# (which suit the SST-2 classifier); options given win.
LM_DEFAULTS: dict[str, Any] = {
    "lr": 2e-3,  # peak of AdamW after warm-up; a small model takes a high rate
    "weight_decay": 0.1,  # as nanoGPT and the peer (../shared/baselines/lm_char_transformer.py)
    "adam_beta2": 0.95,  # as nanoGPT and the peer
    "batch_size": 32,  # windows of `context` tokens per step: 4,096 tokens, as the peer's step
    "epochs": 8,  # 1,960 planned steps on Tiny Shakespeare; on a 2-core CPU (~7k tokens/s)
    #   the clock ends the run first, and warm-up is ~5% of the planned steps
    "warmup_steps": 100,  # as the peer
    "schedule": "cosine",  # to 0, as the peer
    "label_smoothing": 0.0,  # the loss is the figure reported (nats per token)
    "ema_decay": None,  # the decay to 0 at the time limit does the averaging's work
    "patience": None,
    "eval_every": 1000,  # (epochs) i.e. the dev split is scored at the end only
    "eval_steps": None,
    "log_every": 50,
    "save_every": 500,  # last/ for resume, besides each epoch's end
    "time_limit": 600.0,  # (seconds) the peer's default 10 minutes
    "decay_to_time_limit": True,  # the decay ends at the time limit, on any machine
}

# The default recipe, per options group: field -> value on top of the config dataclasses'
# defaults; what `attnlab train --task lm` trains unless options say otherwise.
DEFAULT_RECIPE: dict[str, dict[str, Any]] = {
    "data": {"context": 128},  # LMDataConfig fields: tinyshakespeare, characters; the peer's
    #   context, so that both are scored on the same validation windows
    "model": {  # LMConfig fields
        "d_model": 128,  # a small model sees more tokens in ten CPU minutes
        "n_heads": 4,
        "n_layers": 4,
        "dropout": 0.0,  # ten minutes see the 1M characters a few times: no overfitting yet
        "positions": "rotary",
    },
    "train": LM_DEFAULTS,  # TrainConfig fields
}

# The induction experiment's recipe (`attnlab experiment induction`): small, attention-only
# models that take many steps a second, on windows that reward copying. Measured on a 2-core
# CPU: the two-layer model's phase change came after 700-1,400 steps at lr 1e-3; at 3e-3 it had
# not come after 2,000, nor with init_std 0.1; with half or three quarters of the windows
# natural text, not after 4,000.
INDUCTION_RECIPE: dict[str, dict[str, Any]] = {
    "data": {
        "context": 64,  # short windows: more steps a second
        "repeat_share": 1.0,  # every window random tokens with a span repeated (repeats.py)
    },
    "model": {
        "d_model": 64,
        "n_heads": 4,
        "attention_only": True,  # the circuits of Elhage et al. (2021), nothing else
        "positions": "rotary",  # relative positions: a previous-token head is easy to form
        "dropout": 0.0,
    },
    "train": {
        **LM_DEFAULTS,
        "lr": 1e-3,  # higher rates stayed on the plateau longer
        "weight_decay": 0.0,
        "adam_beta2": 0.999,
        "batch_size": 32,
        "epochs": 100,  # the clock ends the run
        "warmup_steps": 0,
        "schedule": "constant",  # a phase change late in the run still gets the full rate
        "decay_to_time_limit": False,
        "max_steps": 3000,  # the same budget on any machine; phase changes came by step 1,400
        "time_limit": 900.0,  # (seconds) per model at most
        "save_every": 1000,
    },
}


def recipe_options(recipe: dict[str, dict[str, Any]], data: dict[str, Any],
                   model: dict[str, Any], train: dict[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The options given (field -> value per group) on top of ``recipe``."""
    return ({**recipe["data"], **data}, {**recipe["model"], **model},
            {**recipe["train"], **train})


@dataclass
class LMDataConfig(DictConfig):
    """Which text, how it becomes token ids, and how long a window the model reads."""

    source: str = field(default="tinyshakespeare", metadata={
        "help": "a name under $ATTNLAB_DATA (a folder), a .txt file, or a folder with "
                "train.txt and valid.txt (and test.txt), or with one .txt file"})
    tokenizer: str = field(default="char", metadata={
        "help": '"char" (one token per character) or "byte-bpe" (GPT-2 byte-level BPE)'})
    vocab_size: int = field(default=4096, metadata={
        "help": "byte-bpe only: vocabulary size, the 4 special tokens and 256 bytes included"})
    context: int = field(default=256, metadata={
        "help": "tokens the model reads at once (training windows, the model's longest input)"})
    valid_share: float = field(default=0.1, metadata={
        "help": "one text file: the share at its end kept for validation (as nanoGPT)"})
    repeat_share: float = field(default=0.0, metadata={
        "help": "share of training windows replaced by random tokens with a span repeated "
                "later (where induction heads form; tasks/lm/repeats.py)"})

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise InputError(f"source must be a non-empty string, got {self.source!r}")
        if self.tokenizer not in STREAM_KINDS:
            raise InputError(f"tokenizer must be one of {STREAM_KINDS}, got {self.tokenizer!r}")
        for name, low in (("vocab_size", 261), ("context", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
        share = self.valid_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) \
                or not 0.0 < share < 1.0:
            raise InputError(f"valid_share must be a number in (0, 1), got {share!r}")
        share = self.repeat_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) \
                or not 0.0 <= share <= 1.0:
            raise InputError(f"repeat_share must be a number in [0, 1], got {share!r}")

    @property
    def unit(self) -> str:
        """What bits are counted per: ``"char"`` or ``"byte"``."""
        return UNITS[self.tokenizer]
