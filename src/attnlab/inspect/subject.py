"""A model under inspection: the module, its tokenizer, its class names, and how it pools.

:func:`load_subject` opens a training run folder (``config.json`` + ``model.safetensors`` +
``tokenizer.json``, or a run folder holding ``best/`` or ``last/``) or a pretrained name
(``all-MiniLM-L6-v2``). :meth:`Subject.attend` runs texts through the model under
:func:`~attnlab.inspect.capture` and returns, per text, its tokens, the attention of every head
of every layer, the rollout relevance and the prediction: what pictures, the HTML view and the
live app draw. With ``vectors=True`` it also keeps every head's queries, keys and values and the
mask its scores got: what the neuron view needs to redo one head's arithmetic.

A :class:`Subject` meets :class:`~attnlab.inspect.protocol.Inspectable`: :meth:`Subject.look`
is what ``attnlab show`` prints and draws, :meth:`Subject.head_pass` what the neuron view
captures, :meth:`Subject.payload` what the live app draws, :meth:`Subject.ids_pass` what the
head-role probe runs on random tokens.

Legend: ``B`` batch, ``H`` heads, ``L`` tokens, ``C`` classes, ``d_k``/``d_v`` query-key and
value size per head.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.inspect.attended import Attended, Encoded
from attnlab.inspect.attribution_subject import encoder_decisions
from attnlab.inspect.capture import attention_modules, capture
from attnlab.inspect.causal_subject import CausalSubject
from attnlab.inspect.decisions import Decisions
from attnlab.inspect.html import AttentionView, attention_payload, model_name, render_page
from attnlab.inspect.mattered import Mattered, read_faithfulness, what_mattered
from attnlab.inspect.protocol import HeadPass, Look
from attnlab.inspect.pruning import prune_heads
from attnlab.inspect.rollout import attention_rollout
from attnlab.inspect.subject_parts import (
    TextPasses,
    checked_ids,
    picture_of,
    text_vectors,
)
from attnlab.io.checkpoint import FORMAT, save_checkpoint
from attnlab.io.families import load_family, read_config
from attnlab.io.pretrained import load_pretrained
from attnlab.io.registry import KEPT_HEADS_KEY, LoadedModel, load_model
from attnlab.models.bert import BertConfig
from attnlab.models.prediction import Prediction
from attnlab.text import TextTokenizer, pad_sequences

__all__ = ["EXAMPLE", "Attended", "Encoded", "Subject", "attention_view", "load_subject",
           "save_pruned_run"]

EXAMPLE = "a gripping , funny film"  # the sentence the live app opens on


@dataclass
class Subject(TextPasses):
    """A model to inspect and what turns text into its inputs.

    Attributes:
        model: a module built from MultiHeadAttention; ``model(input_ids, attention_mask)``
            returns logits ``(B, C)``, an object with ``.logits``, or hidden states (encoder).
        tokenizer: turns texts into the model's inputs; it truncates to the model's longest
            input (``tokenizer.max_length``).
        labels: class names, or ``None`` when the model has no classification head.
        pooling: ``"cls"`` or ``"mean"``: which rows the prediction reads (for rollout).
        name: shown in pictures and pages.
    """

    model: nn.Module
    tokenizer: TextTokenizer
    labels: list[str] | None
    pooling: str
    name: str

    task: ClassVar[str] = "classification"  # what pages call it
    attention_kinds: ClassVar[tuple[str, ...]] = ("self",)  # an encoder's only kind
    show_options: ClassVar[tuple[str, ...]] = ()  # no options of `show` beyond the common ones
    default_example: ClassVar[str] = EXAMPLE

    def __post_init__(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.tokenizer.max_length is None:
            raise ValueError("the tokenizer must truncate to the model's longest input "
                             "(TextTokenizer(..., max_length=N))")

    @property
    def max_length(self) -> int:
        """Longest input in tokens; longer texts are truncated."""
        return self.tokenizer.max_length

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Tokenize and pad ``texts``."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a sequence of strings")
        if not texts:
            raise InputError("texts must not be empty")
        seen = self.tokenizer.tokenize(texts)
        batch = self.tokenizer.pad([t.ids for t in seen])  # (B, L) each
        return Encoded(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask,
            special_mask=pad_sequences([t.special for t in seen], 0)[0],  # (B, L)
            tokens=[t.tokens for t in seen], truncated=[t.truncated for t in seen])

    def logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor | None:
        """The model's class scores ``(B, C)``, or ``None`` if it has no classification head."""
        out = self.model(input_ids, attention_mask)
        logits = getattr(out, "logits", out)
        if self.labels is None or not isinstance(logits, Tensor) or logits.dim() != 2:
            return None
        return logits

    @torch.no_grad()
    def attend(self, texts: Sequence[str], *, vectors: bool = False) -> list[Attended]:
        """Run ``texts`` (one batch) and return what every head did on each of them.

        ``vectors=True`` also keeps each layer's queries, keys, values and mask (see
        :class:`Attended`); they cost ``3·H·L·d`` numbers per layer and text.
        """
        enc = self.encode(texts)
        self.model.eval()
        with capture(self.model, tokens=enc.tokens, vectors=vectors) as cap:
            logits = self.logits(enc.input_ids, enc.attention_mask)
        names = [n for n in cap.names if n in cap.weights]
        layers = [cap.weights[n] for n in names]  # (B, H_l, L, L)
        if not layers:
            raise ValueError(f"{self.name}: the forward pass ran no attention module")
        heads = {w.shape[1] for w in layers}
        mean = [w.mean(1, keepdim=True) for w in layers] if len(heads) > 1 else layers
        relevance = attention_rollout(mean, enc.attention_mask, pooling=self.pooling).relevance
        probs = None if logits is None else torch.softmax(logits.float(), dim=-1)  # (B, C)
        out = []
        for b, text in enumerate(texts):
            n = len(enc.tokens[b])
            prediction = None
            if probs is not None:
                prediction = Prediction.from_probs(text, self.labels, probs[b].tolist())
            out.append(Attended(
                text=text, tokens=enc.tokens[b], special=enc.special_mask[b, :n].tolist(),
                layer_names=list(names),
                weights=[w[b, :, :n, :n].clone() for w in layers],  # (H_l, L, L)
                relevance=relevance[b, :n].clone(), prediction=prediction,
                truncated=enc.truncated[b], **(text_vectors(cap, names, b, n) if vectors else {})))
        return out


    def look(self, texts: Sequence[str]) -> Look:
        """Each text's prediction, rollout and top tokens by each attribution method as lines;
        pictures of the first text (rollout, a layer's heads, one head) and the explorer page
        of all of them."""
        self.tokenizer.encode(texts)  # refuses a text without tokens before any work
        attended = self.attend_batches(texts)
        mattered = _mattered(self, texts)
        warnings = [f"text {i} was cut to {self.max_length} tokens (the model's longest input)"
                    for i, a in enumerate(attended) if a.truncated]
        lines = []
        for i, a in enumerate(attended):
            lines.append(a.text)
            if a.prediction is not None:
                probs = ", ".join(f"{n} {p:.3f}" for n, p in
                                  zip(self.labels, a.prediction.probs, strict=True))
                lines.append(f"  prediction: {a.prediction.label} ({probs})")
            lines.append("  rollout: " + " ".join(f"{t}:{float(r):.2f}" for t, r in
                                                 zip(a.tokens, a.relevance, strict=True)))
            lines += mattered.lines(i)
        first = attended[0]

        def picture(layer: int | None, head: int | None):
            return picture_of(first, layer, head, name=self.name,
                              rollout_title=f"attention rollout ({self.pooling} pooling)")

        def view() -> AttentionView:
            return _page(self, attended, mattered)

        return Look(lines, warnings, len(first.weights), first.weights[0].shape[0], picture,
                    view)

    def attend_batches(self, texts: Sequence[str], batch_size: int = 16) -> list[Attended]:
        """:meth:`attend` with ``vectors=True``, ``batch_size`` texts per forward pass."""
        return [a for i in range(0, len(texts), batch_size)
                for a in self.attend(texts[i:i + batch_size], vectors=True)]

    def ids_pass(self, ids: Sequence[int], attention: str) -> HeadPass:
        """One pass on ``[CLS] ids [SEP]``; ``ids`` start at position 1 on both sides."""
        wrapped = [self.tokenizer.bos_token_id, *checked_ids(ids, self.tokenizer),
                   self.tokenizer.eos_token_id]
        if len(wrapped) > self.max_length:
            raise InputError(f"ids must fit the model's longest input with [CLS] and [SEP] "
                             f"({self.max_length} tokens), got {len(ids)} ids")
        input_ids = torch.tensor([wrapped])  # (1, L)
        tokens = [self.tokenizer.tokenizer.id_to_token(i) for i in wrapped]
        return HeadPass(self.model, model_name(self.name), list(attention_modules(self.model)),
                        tokens, tokens, lambda: self.model(input_ids, torch.ones_like(input_ids)),
                        offsets=(1, 1))

    def payload(self, text: str) -> dict:
        """The live app's data for ``text``: prediction, rollout, what mattered, every head,
        the vectors."""
        return _payload(self, self.attend([text], vectors=True), _mattered(self, [text]))

    def decisions(self, text: str, *, target: str | int | None = None,
                  reference: str | None = None) -> Decisions:
        """``text``'s decision (``target``: a label name or index; ``None``: the predicted
        label) prepared for :func:`~attnlab.inspect.attribute` and faithfulness; an
        :class:`~attnlab.errors.InputError` without a classification head."""
        return encoder_decisions(self, text, target=target, reference=reference)


def attention_view(subject: Subject, texts: Sequence[str] | str, *, batch_size: int = 16
                   ) -> AttentionView:
    """Run ``texts`` through the model and build the explorer page for all of them.

    Args:
        subject: the model (see :func:`load_subject`).
        texts: one sentence or several; the page has a selector for them.
        batch_size: texts per forward pass.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("texts must hold at least one sentence")
    return _page(subject, subject.attend_batches(texts, batch_size), _mattered(subject, texts))


def _mattered(subject: Subject, texts: Sequence[str]) -> Mattered:
    """What mattered to each text's predicted label, by every method shown (nothing for an
    encoder without a classification head: it decides nothing)."""
    return what_mattered(subject, texts) if subject.labels is not None else Mattered({})


def _payload(subject: Subject, attended: list[Attended], mattered: Mattered) -> dict:
    """The page's data for texts already run through ``subject``, with the faithfulness
    report of its run folder if there is one."""
    return attention_payload(subject.name, attended, subject.labels,
                             mattered=mattered.blocks(len(attended)),
                             faithfulness=read_faithfulness(subject.name))


def _page(subject: Subject, attended: list[Attended], mattered: Mattered) -> AttentionView:
    """The explorer page of texts already run through ``subject``."""
    return AttentionView(render_page("view.html", _payload(subject, attended, mattered)))


def load_subject(spec: str | os.PathLike, *, device: str = "cpu") -> Subject | CausalSubject:
    """Open a model to inspect: a run/checkpoint folder or a pretrained model name.

    Args:
        spec: a checkpoint folder (``config.json``, ``model.safetensors``, ``tokenizer.json``),
            a run folder holding ``best/`` or ``last/``, or a pretrained name such as
            ``all-MiniLM-L6-v2`` (a sentence encoder: no prediction, mean pooling), or a Hugging
            Face folder of a family of :data:`~attnlab.io.families.FAMILIES` (an encoder as
            all-MiniLM-L6-v2; a decoder as a :class:`CausalSubject`).
        device: where the weights go.

    Raises:
        FileNotFoundError: the folder lacks a checkpoint (the message says what it looked for).
        ValueError: an unknown model type or pretrained name.
    """
    path = Path(spec)
    if (path.is_dir() and not _is_pretrained_dir(path)) or (
            not path.is_dir() and path.parent != Path(".")):
        return _load_run(path, device)
    if path.is_dir() and not _is_bert_dir(path):  # a family of the registry, or its error
        family, config = read_config(path)
        return _FAMILY_SUBJECTS[family.kind](path, config, load_family(path).to(device))
    encoder = load_pretrained(str(spec), device=device)
    return Subject(encoder, encoder.tokenizer, labels=None, pooling="mean", name=str(spec))


def _encoder_subject(path: Path, config: BertConfig, model: nn.Module) -> Subject:
    """A family's encoder as a sentence encoder (as all-MiniLM-L6-v2): mean pooling, no labels."""
    tokenizer = TextTokenizer.load(path / "tokenizer.json", max_length=config.max_length)
    return Subject(model, tokenizer, labels=None, pooling="mean", name=str(path))


# What each kind of family opens as (``Family.kind``): an encoder, or a language model.
_FAMILY_SUBJECTS = {"encoder": _encoder_subject, "decoder": CausalSubject.open}


def _is_bert_dir(path: Path) -> bool:
    """A folder whose config.json BERT's reader accepts (all-MiniLM-L6-v2's layout)."""
    try:
        BertConfig.from_dict(json.loads((path / "config.json").read_text(encoding="utf-8")))
        return True
    except (InputError, TypeError, ValueError, AttributeError):
        return False


def _is_pretrained_dir(path: Path) -> bool:
    """A Hugging Face model folder (its config.json is not an attnlab checkpoint's)."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") != FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def _read_run(path: Path) -> LoadedModel:
    """The model of a run or checkpoint folder, pruned as recorded, weights loaded."""
    return load_model(path)


def save_pruned_run(run: str | os.PathLike, heads, out: str | os.PathLike) -> Path:
    """Prune ``heads`` from the model of a run folder for real and save it as a checkpoint.

    Args:
        run: a run or checkpoint folder (see :func:`load_subject`).
        heads: what to remove, as for :func:`~attnlab.inspect.prune_heads` (module → heads, or
            ``(layer, head)`` pairs), in the model's current numbering.
        out: the new checkpoint folder; its config records the remaining heads under
            ``kept_heads`` so that :func:`load_subject` rebuilds the smaller model.
    """
    run_model = _read_run(Path(run))
    config = {k: v for k, v in run_model.config.items() if k not in ("format", "version")}
    config[KEPT_HEADS_KEY] = prune_heads(run_model.model, heads,
                                         previous=config.get(KEPT_HEADS_KEY))
    return save_checkpoint(out, run_model.model, config, tokenizer=run_model.tokenizer_path)


def _load_run(path: Path, device: str) -> Subject:
    run_model = _read_run(path)
    if run_model.tokenizer is None:
        raise FileNotFoundError(f"{run_model.path} has no tokenizer.json; cannot turn text "
                                f"into ids")
    return Subject(run_model.model.to(device).eval(), run_model.tokenizer,
                   labels=run_model.labels, pooling=run_model.pooling, name=str(path))
