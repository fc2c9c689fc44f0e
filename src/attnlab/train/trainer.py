"""A model-agnostic trainer: AdamW, warm-up then decay, clipping, evaluation, early stopping,
atomic checkpoints, exact resume, and data parallelism under ``torchrun``.

The trainer knows nothing of the model beyond ``model(**batch)`` returning an object with
``.loss`` (a scalar) and ``.logits`` (``(B, C)``), nor of the data beyond:

- ``train_data``: iterable of batch dicts (tensors; ``"labels"`` among them), with ``len()``
  the number of batches per epoch *in this process*, and optionally ``set_epoch(epoch)`` that
  fixes the order of that epoch from the seed (needed for exact resume). Under ``torchrun``
  each process must get its own shard, ``batch_size // world_size`` examples per batch, and the
  same number of batches.
- ``eval_data``: iterable of batch dicts; under ``torchrun`` each example on exactly one process
  (results are summed over processes).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from attnlab.io.checkpoint import load_checkpoint, load_weights, save_checkpoint
from attnlab.train.averaging import ExponentialMovingAverage
from attnlab.train.config import TrainConfig
from attnlab.train.distributed import DistInfo, all_reduce_sum, barrier, setup_distributed
from attnlab.train.evaluation import evaluate
from attnlab.train.metrics import EvalResult, MetricsLog
from attnlab.train.optim import build_optimizer, lr_factor, set_lr, warmup_steps_for
from attnlab.train.progress import ProgressBar

__all__ = [
    "Callback",
    "EpochRecord",
    "FitResult",
    "RunArtifacts",
    "StepInfo",
    "Trainer",
    "seed_everything",
]

# Fields that may differ between an interrupted run and its resumption (they do not change
# the arithmetic of training).
_RESUME_MAY_DIFFER = {"log_every", "save_every", "device", "time_limit"}


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class RunArtifacts:
    """What a checkpoint needs besides the weights to rebuild and use the model.

    Attributes:
        model_config: JSON-ready dict the model is rebuilt from.
        model_type: name of the model family (e.g. ``"classifier"``).
        labels: class names, index ``i`` is class ``i``.
        tokenizer: a ``tokenizers.Tokenizer`` or a path to tokenizer.json, or ``None``.
        extra: more JSON-ready entries for config.json (e.g. the data source).
    """

    model_config: dict[str, Any]
    model_type: str = "classifier"
    labels: list[str] | None = None
    tokenizer: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepInfo:
    """Passed to :meth:`Callback.on_step_end` after each optimizer step."""

    step: int  # optimizer steps done so far (1 after the first)
    epoch: int  # 0-based
    loss: float  # this step's training loss (this process)
    lr: float  # learning rate used for this step


@dataclass
class EpochRecord:
    """One epoch: training averages and, if evaluated, the dev metrics."""

    epoch: int  # 1-based
    step: int  # optimizer steps done at the end of the epoch
    train_loss: float  # mean training loss over the epoch's examples (all processes)
    train_accuracy: float  # running accuracy over the epoch (weights changing under it)
    val: EvalResult | None  # dev metrics after the epoch, or None if not evaluated
    seconds: float  # wall time of the epoch (training + evaluation)
    tokens_per_s: float  # training throughput (non-padding tokens, all processes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["val"] = None if self.val is None else self.val.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochRecord:
        val = None if d["val"] is None else EvalResult(**d["val"])
        return cls(**{**d, "val": val})


@dataclass
class FitResult:
    """Outcome of :meth:`Trainer.fit`."""

    history: list[EpochRecord]  # one record per (possibly partial, at max_steps) epoch
    best_epoch: int | None  # 1-based epoch of the lowest val loss (None: no evaluation)
    best_val: EvalResult | None  # dev metrics of the best evaluation (the weights in best/)
    global_step: int  # optimizer steps done
    stopped_early: bool  # patience ran out
    wall_time: float  # seconds spent in fit (this invocation plus any interrupted ones)
    out_of_time: bool = False  # training stopped at config.time_limit
    best_step: int | None = None  # optimizer steps done at the best evaluation

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": [r.to_dict() for r in self.history],
            "best_epoch": self.best_epoch,
            "best_val": None if self.best_val is None else self.best_val.to_dict(),
            "global_step": self.global_step,
            "stopped_early": self.stopped_early,
            "wall_time": self.wall_time,
            "out_of_time": self.out_of_time,
            "best_step": self.best_step,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitResult:
        return cls(
            history=[EpochRecord.from_dict(r) for r in d["history"]],
            best_epoch=d["best_epoch"],
            best_val=None if d["best_val"] is None else EvalResult(**d["best_val"]),
            global_step=d["global_step"],
            stopped_early=d["stopped_early"],
            wall_time=d["wall_time"],
            out_of_time=d.get("out_of_time", False),
            best_step=d.get("best_step"),
        )


class Callback:
    """Hooks into :meth:`Trainer.fit`; override what you need. Every process calls them."""

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> None:
        """After each optimizer step (and the periodic save, if any)."""

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """After each epoch's evaluation and checkpoints."""

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        """After training, once result.json is written."""


@dataclass
class _Progress:
    """Counters that a resumed run must get back exactly (saved in trainer_state)."""

    global_step: int = 0
    epoch: int = 0  # current 0-based epoch
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    loss_sum: float = 0.0  # this epoch, this process: sum of per-example training loss
    correct: int = 0  # this epoch, this process: correct arg-max predictions
    examples: int = 0  # this epoch, this process
    tokens: int = 0  # this epoch, this process
    epoch_seconds: float = 0.0  # training time spent in this epoch before the last save
    best_val_loss: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    best_val: dict[str, Any] | None = None  # EvalResult dict of the best evaluation
    last_eval_step: int | None = None  # global_step of the latest evaluation
    last_val: dict[str, Any] | None = None  # EvalResult dict of the latest evaluation
    bad_evals: int = 0  # evaluations since the last improvement
    stopped_early: bool = False
    out_of_time: bool = False  # training stopped at config.time_limit
    wall_time: float = 0.0  # fit time before this invocation
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Train ``model`` on ``train_data``, evaluate on ``eval_data``, keep best/ and last/.

    Args:
        model: any module with ``forward(**batch) -> object with .loss and .logits``.
        config: the hyper-parameters.
        train_data: batches for training (see the module docstring for the contract).
        eval_data: batches of the dev split, or ``None`` (no evaluation, no early stopping).
        out_dir: run folder for ``best/``, ``last/``, ``metrics.jsonl`` and ``result.json``;
            ``None`` writes nothing.
        artifacts: model config, label names and tokenizer stored with each checkpoint.
        callbacks: :class:`Callback` instances.
        progress: show a progress bar on stderr (rank 0 only).
        dist_info: process placement; default :func:`setup_distributed` from the environment.

    Example::

        trainer = Trainer(model, TrainConfig(epochs=3), train_batches, dev_batches,
                          out_dir="runs/h4", artifacts=RunArtifacts(model_config=cfg.to_dict()))
        result = trainer.fit()                   # or fit(resume=True) after an interruption
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_data: Iterable[dict[str, Tensor]],
        eval_data: Iterable[dict[str, Tensor]] | None = None,
        *,
        out_dir: str | Path | None = None,
        artifacts: RunArtifacts | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        dist_info: DistInfo | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        try:
            self.steps_per_epoch = len(train_data)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError("train_data must have len() (batches per epoch)") from None
        if self.steps_per_epoch == 0:
            raise ValueError("train_data yields no batches")
        self.config = config
        self.dist = dist_info if dist_info is not None else setup_distributed(config.device)
        if config.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size ({config.batch_size}) must be divisible by the number of "
                f"processes ({self.dist.world_size})"
            )
        self.model = model.to(self.dist.device)
        self.train_data = train_data
        self.eval_data = eval_data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.artifacts = artifacts or RunArtifacts(model_config={})
        self.callbacks = list(callbacks)
        self.progress = progress
        self.optimizer = build_optimizer(self.model, config.lr, config.weight_decay,
                                         config.embedding_weight_decay)
        self.ema = (None if config.ema_decay is None
                    else ExponentialMovingAverage(self.model, config.ema_decay))
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.warmup_steps = warmup_steps_for(
            self.total_steps, config.warmup_ratio, config.warmup_steps
        )
        writes = self.out_dir is not None and self.dist.is_main
        self.log = MetricsLog(self.out_dir / "metrics.jsonl" if writes else "metrics.jsonl", writes)
        self.state = _Progress()
        self._wrapped: nn.Module = (
            DistributedDataParallel(self.model, device_ids=None if self.dist.device.type == "cpu"
                                    else [self.dist.device])
            if self.dist.distributed
            else self.model
        )

    # --- public ---------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> FitResult:
        """Train to the end (or early stop / ``max_steps`` / ``time_limit``); with ``resume``
        continue from ``out_dir/last`` so the final weights equal those of an uninterrupted
        run."""
        cfg = self.config
        if resume:
            self._restore()  # replaces self.state
            self.state.out_of_time = False  # the limit counts anew (and may have changed)
        else:
            torch.manual_seed(cfg.seed + self.dist.rank)  # dropout; weights were made already
            if self.out_dir is not None and self.dist.is_main:
                self.log.path.unlink(missing_ok=True)
        st = self.state
        start = time.perf_counter() - st.wall_time
        try:
            while st.epoch < cfg.epochs and not (st.stopped_early or st.out_of_time):
                if st.global_step >= self.total_steps and st.batch_in_epoch == 0:
                    break
                self._train_epoch(start)
        except KeyboardInterrupt:
            if not self.dist.distributed and self.out_dir is not None:
                st.wall_time = time.perf_counter() - start
                self._save_last()
            raise
        st.wall_time = time.perf_counter() - start
        result = FitResult(
            history=[EpochRecord.from_dict(r) for r in st.history],
            best_epoch=st.best_epoch,
            best_val=None if st.best_val is None else EvalResult(**st.best_val),
            global_step=st.global_step,
            stopped_early=st.stopped_early,
            wall_time=st.wall_time,
            out_of_time=st.out_of_time,
            best_step=st.best_step,
        )
        if self.out_dir is not None and self.dist.is_main:
            _write_json_atomic(self.out_dir / "result.json", result.to_dict())
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        return result

    def evaluate(self, data: Iterable[dict[str, Tensor]]) -> EvalResult:
        """Loss (unsmoothed cross-entropy), accuracy and macro F1 over ``data`` (see
        :func:`~attnlab.training.evaluation.evaluate`)."""
        return evaluate(self.model, data, device=self.dist.device, bf16=self.config.bf16)

    # --- one epoch ------------------------------------------------------------------------

    def _train_epoch(self, fit_start: float) -> None:
        cfg, st = self.config, self.state
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(st.epoch)
        bar = ProgressBar(
            self.steps_per_epoch,
            f"epoch {st.epoch + 1}/{cfg.epochs}",
            enabled=self.progress and self.dist.is_main,
            line_every=cfg.log_every,
        )
        bar.n = st.batch_in_epoch
        epoch_start = time.perf_counter() - st.epoch_seconds
        window_loss, window_n = 0.0, 0
        self.model.train()
        for i, batch in enumerate(self.train_data):
            if i < st.batch_in_epoch:
                continue  # seen before the interruption; same order since set_epoch(epoch)
            if st.global_step >= self.total_steps:
                break
            if self._out_of_time(fit_start):
                st.out_of_time = True
                break
            loss, correct, n, tokens, lr, grad_norm = self._step(batch)
            st.global_step += 1
            st.batch_in_epoch += 1
            st.loss_sum += loss * n
            st.correct += correct
            st.examples += n
            st.tokens += tokens
            window_loss, window_n = window_loss + loss, window_n + 1
            elapsed = time.perf_counter() - epoch_start
            tok_s = st.tokens * self.dist.world_size / max(elapsed, 1e-9)
            bar.update(1, loss=st.loss_sum / st.examples, **{"tok/s": _si(tok_s)})
            if st.global_step % cfg.log_every == 0:
                self.log.write({
                    "type": "step", "step": st.global_step, "epoch": st.epoch + 1,
                    "loss": window_loss / window_n, "lr": lr, "grad_norm": grad_norm,
                    "tokens_per_s": tok_s, "time": time.perf_counter() - fit_start,
                })
                window_loss, window_n = 0.0, 0
            if self._evaluate_now():
                self._evaluate_mid_epoch(fit_start, bar)
                if st.stopped_early:
                    break
            if cfg.save_every and st.global_step % cfg.save_every == 0 and self.out_dir:
                st.epoch_seconds = time.perf_counter() - epoch_start
                st.wall_time = time.perf_counter() - fit_start
                self._save_last()
            info = StepInfo(st.global_step, st.epoch, loss, lr)
            for cb in self.callbacks:
                cb.on_step_end(self, info)
        bar.close()
        self._end_epoch(epoch_start, fit_start)

    def _step(self, batch: dict[str, Tensor]) -> tuple[float, int, int, int, float, float | None]:
        """One optimizer step; returns (loss, correct, examples, tokens, lr, grad norm)."""
        cfg, st = self.config, self.state
        batch = self._to_device(batch)
        labels = batch["labels"]
        smooth = cfg.label_smoothing > 0
        inputs = {k: v for k, v in batch.items() if not (smooth and k == "labels")}
        with self._autocast():
            out = self._wrapped(**inputs)
        logits = out.logits
        if smooth:
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
        else:
            loss = out.loss
        if loss is None:
            raise ValueError("the model returned loss=None although labels were given")
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"training loss is {loss_value} at step {st.global_step + 1} (epoch "
                f"{st.epoch + 1}); lower lr (now {cfg.lr}) or enable grad_clip"
            )
        loss.backward()
        grad_norm = None
        if cfg.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            grad_norm = float(norm)
        lr = cfg.lr * lr_factor(st.global_step, self.total_steps, self.warmup_steps, cfg.schedule)
        set_lr(self.optimizer, lr)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        correct = 0
        if logits is not None and logits.dim() == 2:
            correct = int((logits.detach().argmax(-1) == labels).sum())
        mask = batch.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        return loss_value, correct, int(labels.shape[0]), tokens, lr, grad_norm

    def _end_epoch(self, epoch_start: float, fit_start: float) -> None:
        cfg, st = self.config, self.state
        totals = torch.tensor(
            [st.loss_sum, st.correct, st.examples, st.tokens], dtype=torch.float64,
            device=self.dist.device,
        )
        loss_sum, correct, examples, tokens = all_reduce_sum(totals).tolist()
        epoch_no = st.epoch + 1
        last_epoch = (epoch_no == cfg.epochs or st.global_step >= self.total_steps
                      or st.out_of_time)
        val, fresh = None, False
        if st.last_eval_step == st.global_step and st.last_val is not None:
            val = EvalResult(**st.last_val)  # evaluated mid-epoch at this very step
        elif self.eval_data is not None and (epoch_no % cfg.eval_every == 0 or last_epoch):
            val, fresh = self._evaluate_dev(), True
        train_seconds = time.perf_counter() - epoch_start
        record = EpochRecord(
            epoch=epoch_no,
            step=st.global_step,
            train_loss=loss_sum / max(examples, 1),
            train_accuracy=correct / max(examples, 1),
            val=val,
            seconds=train_seconds,
            tokens_per_s=tokens / max(train_seconds, 1e-9),
        )
        st.history.append(record.to_dict())
        improved = fresh and self._track_best(val, metrics=record.to_dict())
        self.log.write({
            "type": "eval" if fresh else "epoch", "step": st.global_step,
            "epoch": epoch_no, **({} if val is None else val.to_dict()),
            "train_loss": record.train_loss, "train_accuracy": record.train_accuracy,
            "best": improved, "time": time.perf_counter() - fit_start,
        })
        if self.dist.is_main and self.progress:
            print(_epoch_line(record, improved), file=sys.stderr, flush=True)
        st.epoch += 1
        st.batch_in_epoch = 0
        st.loss_sum, st.correct, st.examples, st.tokens, st.epoch_seconds = 0.0, 0, 0, 0, 0.0
        if self.out_dir is not None:
            st.wall_time = time.perf_counter() - fit_start
            self._save_last()
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)

    # --- evaluation and the best checkpoint -----------------------------------------------

    def _evaluate_now(self) -> bool:
        """A mid-epoch evaluation is due (``eval_steps``); the epoch's last step is left to
        the end-of-epoch evaluation."""
        cfg, st = self.config, self.state
        return bool(
            cfg.eval_steps and self.eval_data is not None
            and st.global_step % cfg.eval_steps == 0
            and st.batch_in_epoch < self.steps_per_epoch
            and st.global_step < self.total_steps
        )

    def _evaluate_mid_epoch(self, fit_start: float, bar: ProgressBar) -> None:
        st = self.state
        val = self._evaluate_dev()
        metrics = {"epoch": st.epoch + 1, "step": st.global_step, "val": val.to_dict()}
        improved = self._track_best(val, metrics)
        self.log.write({"type": "eval", "step": st.global_step, "epoch": st.epoch + 1,
                        **val.to_dict(), "best": improved,
                        "time": time.perf_counter() - fit_start})
        if bar.enabled:
            lead = "\n" if bar.tty else ""  # on a terminal, leave the bar's line first
            print(f"{lead}step {st.global_step}: val loss {val.loss:.4f} acc {val.accuracy:.4f} "
                  f"f1 {val.f1:.4f}{' *' if improved else ''}", file=sys.stderr, flush=True)

    def _evaluate_dev(self) -> EvalResult:
        """The dev split's metrics, of the averaged weights when ``ema_decay`` is set."""
        with self._averaged_weights():
            return self.evaluate(self.eval_data)

    def _averaged_weights(self) -> Any:
        """Context in which the model holds the EMA weights (the weights evaluated)."""
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext()

    def _track_best(self, val: EvalResult, metrics: dict[str, Any]) -> bool:
        """Note an evaluation at the current step: a lower val loss saves best/ (with
        ``metrics``), otherwise it counts towards ``patience``. True if it is the new best."""
        cfg, st = self.config, self.state
        st.last_eval_step, st.last_val = st.global_step, val.to_dict()
        if st.best_val_loss is not None and val.loss >= st.best_val_loss - cfg.min_delta:
            st.bad_evals += 1
            finished = st.global_step >= self.total_steps  # nothing left to stop
            if cfg.patience is not None and st.bad_evals >= cfg.patience and not finished:
                st.stopped_early = True
            return False
        st.best_val_loss, st.best_val, st.bad_evals = val.loss, val.to_dict(), 0
        st.best_epoch, st.best_step = st.epoch + 1, st.global_step
        if self.out_dir is not None and self.dist.is_main:
            with self._averaged_weights():
                self._save(self.out_dir / "best", metrics=metrics)
        return True

    # --- checkpoints ----------------------------------------------------------------------

    def _save(self, path: Path, metrics: dict[str, Any] | None, state: dict | None = None) -> None:
        art = self.artifacts
        config = {
            "model_type": art.model_type,
            "model": art.model_config,
            "train": self.config.to_dict(),
            "labels": art.labels,
            **art.extra,
        }
        save_checkpoint(path, self.model, config, tokenizer=art.tokenizer, metrics=metrics,
                        trainer_state=state)

    def _save_last(self) -> None:
        """Save last/ with everything needed to resume (all processes take part)."""
        rng = _rng_state()
        rngs = [rng]
        if self.dist.distributed:
            rngs = [None] * self.dist.world_size
            dist.all_gather_object(rngs, rng)  # each process continues its own streams
        if self.dist.is_main:
            state = {
                "progress": asdict(self.state),
                "optimizer": self.optimizer.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "rng": rngs,
                "world_size": self.dist.world_size,
            }
            metrics = self.state.history[-1] if self.state.history else None
            self._save(self.out_dir / "last", metrics=metrics, state=state)
        barrier()

    def _restore(self) -> None:
        if self.out_dir is None:
            raise ValueError("resume needs out_dir (the run folder holding last/)")
        last = self.out_dir / "last"
        ckpt = load_checkpoint(last, with_state=True)
        if ckpt.trainer_state is None:  # pragma: no cover - with_state always reads it
            raise FileNotFoundError(f"no trainer state in {last}")
        saved = ckpt.config.get("train", {})
        now = self.config.to_dict()
        differ = sorted(k for k in now if k not in _RESUME_MAY_DIFFER and saved.get(k) != now[k])
        if differ:
            raise ValueError(
                "cannot resume with a different training config: "
                + ", ".join(f"{k} (saved {saved.get(k)!r}, now {now[k]!r})" for k in differ)
            )
        load_weights(self.model, ckpt)
        state = ckpt.trainer_state
        if state["world_size"] != self.dist.world_size:
            raise ValueError(
                f"cannot resume on {self.dist.world_size} processes a run saved on "
                f"{state['world_size']} (the data shards would differ)"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.state = _Progress(**state["progress"])
        _set_rng_state(state["rng"][self.dist.rank])
        self.log.truncate_after(self.state.global_step)

    # --- helpers --------------------------------------------------------------------------

    def _out_of_time(self, fit_start: float) -> bool:
        """``config.time_limit`` passed (on any process: all stop at the same step)."""
        limit = self.config.time_limit
        if limit is None:
            return False
        late = float(time.perf_counter() - fit_start >= limit)
        if self.dist.distributed:
            late = float(all_reduce_sum(torch.tensor([late], device=self.dist.device)).item())
        return late > 0

    def _to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        dev = self.dist.device
        return {k: v.to(dev, non_blocking=True) if isinstance(v, Tensor) else v
                for k, v in batch.items()}

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _epoch_line(record: EpochRecord, improved: bool) -> str:
    line = (f"epoch {record.epoch}: train loss {record.train_loss:.4f} "
            f"acc {record.train_accuracy:.4f}")
    if record.val is not None:
        line += (f" | val loss {record.val.loss:.4f} acc {record.val.accuracy:.4f} "
                 f"f1 {record.val.f1:.4f}{' *' if improved else ''}")
    return line + f" | {record.seconds:.1f}s"


def _si(x: float) -> str:
    return f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
