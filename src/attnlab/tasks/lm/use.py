"""Using a trained language model: score a split of its text (loss, perplexity, bits per
character or byte), and continue a prompt, greedily or by sampling, with an attnlab run or a
Hugging Face decoder folder (GPT-2, the Llama layout).

Legend: ``P`` prompt tokens, ``T`` tokens so far.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.io.checkpoint import CheckpointError
from attnlab.io.families import load_family
from attnlab.io.registry import LANGUAGE_MODEL, MODEL_TYPES, load_model, model_type_of
from attnlab.models.causal_generation import check_sampling, greedy_generate, sample_generate
from attnlab.tasks.lm.config import LMDataConfig
from attnlab.tasks.lm.data import WindowBatches, encode_stream, load_lm_text
from attnlab.tasks.lm.metrics import LMMetrics, score_lm, units_per_token
from attnlab.text import TextTokenizer

__all__ = ["Generated", "LanguageModel", "evaluate_lm", "generate_text", "open_language_model"]

EVAL_BATCH = 32  # windows per batch when scoring


@dataclass(frozen=True)
class LanguageModel:
    """A decoder-only model ready to score and generate, with its tokenizer."""

    model: nn.Module  # model(ids (B, L)) -> logits (B, L, V), in eval mode
    tokenizer: TextTokenizer  # max_length: the model's longest input
    config: dict[str, Any] | None  # an attnlab run's config.json; None for a Hugging Face folder
    name: str  # the folder opened


def open_language_model(path: str | os.PathLike, device: str = "cpu") -> LanguageModel:
    """An attnlab language-model run (its ``best/``, else ``last/``) or a Hugging Face decoder
    folder (``config.json``, ``model.safetensors``, ``tokenizer.json``)."""
    try:
        model_type = model_type_of(path)
    except FileNotFoundError as err:
        raise InputError(f"{path}: neither a run folder nor a model folder ({err})") from err
    except CheckpointError:  # a config.json not written by attnlab: a Hugging Face folder
        model_type = None
    if model_type == LANGUAGE_MODEL:
        loaded = load_model(path, device=device)
        if loaded.tokenizer is None:
            raise InputError(f"{path}: the run has no tokenizer.json")
        return LanguageModel(loaded.model, loaded.tokenizer, loaded.config, str(path))
    if model_type in MODEL_TYPES:
        raise InputError(f"{path} is a {model_type!r} run, not a language model; give a run of "
                         f"--task lm or a Hugging Face decoder folder")
    model = load_family(path).to(device)  # an unsupported model type is named there
    tokenizer_file = Path(path) / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise InputError(f"{path} has no tokenizer.json (only that format is read)")
    return LanguageModel(model, TextTokenizer.load(tokenizer_file, model.max_positions), None,
                         str(path))


def evaluate_lm(run: str | os.PathLike, split: str = "valid", *, data: str | None = None,
                device: str = "cpu") -> LMMetrics:
    """Loss, perplexity and bits per character (or byte) of an attnlab language-model run on
    the consecutive windows of ``split`` (``"valid"`` or ``"test"``) of the text it was trained
    on, or of the text ``data`` names (split as the run's settings say)."""
    if split not in ("valid", "test"):
        raise InputError(f"split must be 'valid' or 'test', got {split!r}")
    lm = open_language_model(run, device)
    if lm.config is None:
        raise InputError(f"{run} is a Hugging Face folder; evaluate scores attnlab runs")
    settings = LMDataConfig.from_dict(lm.config["data"])
    if data is not None:
        settings = replace(settings, source=data)
    text = load_lm_text(settings)
    scored = text.valid if split == "valid" else text.test
    if scored is None:
        raise InputError(f"split 'test' needs a folder with test.txt; {text.about}")
    ids = encode_stream(lm.tokenizer, scored)
    batches = WindowBatches(ids, settings.context, EVAL_BATCH, shuffle=False)
    return score_lm(lm.model, batches, units_per_token(lm.tokenizer, settings.unit),
                    settings.unit, device=device)


@dataclass(frozen=True)
class Generated:
    """A prompt and its continuation."""

    prompt: str
    continuation: str  # the new text only
    tokens: int  # new tokens
    prompt_tokens: int  # tokens of the prompt the model read (its end, if it was cut)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate_text(path: str | os.PathLike, prompt: str, max_new_tokens: int = 200, *,
                  temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, seed: int = 0, greedy: bool = False,
                  device: str = "cpu") -> Generated:
    """Continue ``prompt`` with the model in ``path`` (see :func:`open_language_model`):
    the most likely token at each step (``greedy``), or tokens drawn after temperature, top-k
    and top-p (:func:`~attnlab.models.causal_generation.sample_generate`) from a generator
    seeded with ``seed``, so the same seed gives the same text. The key/value cache is used.

    A model reads at most its context: a longer prompt keeps its last tokens, and past the
    context the text so far is cut to its last half-context and read again (a sliding window).
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not greedy:
        check_sampling(temperature, top_k, top_p)
    lm = open_language_model(path, device)
    ids = lm.tokenizer.tokenizer.encode(prompt).ids  # the tokenizer's own specials, if any
    if not ids:
        raise InputError(f"the prompt {prompt!r} has no tokens; give some text to continue")
    generator = torch.Generator(device).manual_seed(seed)

    def step(window: Tensor, n: int) -> Tensor:
        if greedy:
            return greedy_generate(lm.model, window, max_new_tokens=n)
        return sample_generate(lm.model, window, max_new_tokens=n, temperature=temperature,
                               top_k=top_k, top_p=top_p, generator=generator)

    context = lm.tokenizer.max_length
    read = min(len(ids), context - 1)
    new = _slide(step, torch.tensor([ids], device=device), max_new_tokens, context)
    decode = lm.tokenizer.tokenizer.decode
    head, whole = decode(ids), decode(ids + new)
    continuation = whole[len(head):] if whole.startswith(head) else decode(new)
    if read < len(ids):
        print(f"generate: the prompt was cut to its last {read} of {len(ids)} tokens (the "
              f"model's context is {context})", file=sys.stderr)
    return Generated(prompt, continuation, len(new), read)


def _slide(step: Callable[[Tensor, int], Tensor], ids: Tensor, max_new_tokens: int,
           context: int) -> list[int]:
    """Up to ``max_new_tokens`` new ids after ``ids`` ``(1, P)`` from ``step(window, n)``
    (a generate call), each window at most ``context`` tokens long with its continuation."""
    tokens, new = ids, 0
    window = tokens[:, -(context - 1):]  # (1, <= C - 1)
    while new < max_new_tokens:
        n = min(max_new_tokens - new, context - window.shape[1])
        out = step(window, n)  # (1, w + m), m <= n
        added = out.shape[1] - window.shape[1]
        tokens = torch.cat([tokens, out[:, window.shape[1]:]], dim=1)  # (1, T)
        new += added
        if added < n:  # the model ended the text (its end-of-text token)
            break
        window = tokens[:, -max(1, context // 2):]  # (1, C / 2)
    return tokens[0, ids.shape[1]:].tolist()
