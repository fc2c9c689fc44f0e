"""The training loop: a model, batches, a loss function and callbacks; nothing of the task.

One step runs ``outputs = model(**inputs)`` (the batch without its ``targets`` keys),
``loss = loss_fn(outputs, batch)`` (a :class:`~attnlab.train.state.Loss`), backward, gradient
clipping, AdamW with warm-up and decay, and the weight average. The losses stay on the device
and are read back once per ``log_every`` steps (and before an evaluation or a save): the step
itself never waits for the host.

The data: ``train_data`` yields batch dicts of tensors, has ``len()`` (batches per epoch in this
process) and optionally ``set_epoch(epoch)``, which fixes that epoch's order from the seed
(exact resume needs it). Under ``torchrun`` each process gets its own shard of every global
batch, ``batch_size // world_size`` examples, and the same number of batches. A loss that is a
mean over a count differing between shards (target tokens) says so
(``Loss.mean_over_examples``); the loop then weights each process by its share of the global
count (one all-reduce of a scalar per step), so a step follows the global per-token mean.

Collaborators: an :class:`~attnlab.train.evaluation.Evaluator` (dev split, ``best/``, early
stopping), a :class:`~attnlab.train.store.RunStore` (checkpoints, ``metrics.jsonl``,
``result.json``), a :class:`~attnlab.train.progress.ProgressBar`; user :class:`Callback`\\ s.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from attnlab.train.averaging import ExponentialMovingAverage
from attnlab.train.config import TrainConfig
from attnlab.train.distributed import (
    DistInfo,
    all_reduce_max,
    all_reduce_sum,
    global_share,
    setup_distributed,
)
from attnlab.train.evaluation import Evaluator
from attnlab.train.interrupt import ForcedInterrupt, TrainingInterrupted, deferred_interrupts
from attnlab.train.ledger import StepLedger
from attnlab.train.metrics_log import MetricsLog
from attnlab.train.optim import (
    build_optimizer,
    lr_factor,
    set_lr,
    time_progress,
    time_warmup,
    warmup_steps_for,
)
from attnlab.train.progress import ProgressBar, epoch_line, thousands
from attnlab.train.resume import restore_last, save_last
from attnlab.train.state import EpochRecord, FitResult, Loss, StepInfo, TrainState
from attnlab.train.store import RunStore

__all__ = ["Callback", "Trainer"]


class Callback:
    """Hooks into :meth:`Trainer.fit`; override what you need. Every process calls them."""

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> None:
        """After each optimizer step (and the periodic save, if any)."""

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """After each epoch's evaluation and checkpoints."""

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        """After training, once the result is recorded."""


class Trainer:
    """Train ``model`` on ``train_data`` with ``loss_fn``; evaluate, checkpoint, resume.

    Args:
        model: any module; it is called with the batch's entries as keyword arguments.
        config: the hyper-parameters.
        train_data: batches for training (see the module docstring).
        loss_fn: ``loss_fn(outputs, batch) -> Loss``.
        targets: batch keys the loss reads but the model must not see (e.g. ``labels``).
        evaluator: scores the dev split and keeps ``best/``; ``None``: no evaluation.
        store: where checkpoints and logs go; ``None`` writes nothing.
        callbacks: :class:`Callback` instances.
        progress: a progress bar and epoch lines on stderr (rank 0 only).
        dist_info: process placement; default :func:`setup_distributed` from the environment.
    """

    def __init__(
        self, model: nn.Module, config: TrainConfig, train_data: Iterable[dict[str, Tensor]],
        loss_fn: Callable[[Any, dict[str, Tensor]], Loss], *, targets: Collection[str] = (),
        evaluator: Evaluator | None = None, store: RunStore | None = None,
        callbacks: Sequence[Callback] = (), progress: bool = True,
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
        self.config, self.train_data, self.loss_fn = config, train_data, loss_fn
        self.targets, self.evaluator, self.store = frozenset(targets), evaluator, store
        self.callbacks, self.progress = list(callbacks), progress
        self.dist = dist_info if dist_info is not None else setup_distributed(config.device)
        if config.batch_size is not None and config.batch_size % self.dist.world_size:
            raise ValueError(f"batch_size ({config.batch_size}) must be divisible by the number "
                             f"of processes ({self.dist.world_size})")
        self.model = model.to(self.dist.device)
        self.optimizer = build_optimizer(self.model, config.lr, config.weight_decay,
                                         config.embedding_weight_decay, config.adam_beta2)
        self.ema = (None if config.ema_decay is None
                    else ExponentialMovingAverage(self.model, config.ema_decay))
        self.epochs = config.planned_epochs(self.steps_per_epoch)
        self.total_steps = self.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.warmup_steps = warmup_steps_for(self.total_steps, config.warmup_ratio,
                                             config.warmup_steps)
        writes = store is not None and self.dist.is_main
        self.log = MetricsLog(store.metrics_path if writes else "metrics.jsonl", writes)
        self.state = TrainState()
        self.ledger = StepLedger(self.dist.device)
        self._bar = ProgressBar(None, enabled=False)  # one per epoch, from _train_epoch
        self._epoch_start = time.perf_counter()  # of the current epoch, resumed time included
        self._wrapped: nn.Module = (
            DistributedDataParallel(self.model, device_ids=None if self.dist.device.type == "cpu"
                                    else [self.dist.device])
            if self.dist.distributed else self.model)

    # --- public ---------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> FitResult:
        """Train to the end (or early stop / ``max_steps`` / ``time_limit``); with ``resume``
        continue from ``last/`` so that the final weights equal an uninterrupted run's."""
        cfg = self.config
        if resume:
            self._restore()
            self.state.out_of_time = False  # the limit counts anew (and may have changed)
        else:
            torch.manual_seed(cfg.seed + self.dist.rank)  # dropout; weights were made already
            if self.log.enabled:
                self.log.path.unlink(missing_ok=True)
        st = self.state
        start = time.perf_counter() - st.wall_time
        with deferred_interrupts() as self._sigint:
            try:
                while st.epoch < self.epochs and not (st.stopped_early or st.out_of_time):
                    if st.global_step >= self.total_steps and st.batch_in_epoch == 0:
                        break
                    self._stop_if_interrupted()
                    self._train_epoch(start)
            except ForcedInterrupt:
                raise  # anywhere, even mid-step: nothing is saved
            except KeyboardInterrupt as stop:  # Ctrl-C at a step boundary, or from a callback
                raise self._interrupted(start, coordinated=isinstance(stop, _Boundary)) from None
        st = self.state  # (a resumed state replaced the object)
        st.wall_time = time.perf_counter() - start
        result = self._result()
        if self.store is not None and self.dist.is_main:
            self.store.write_result(result.to_dict())
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        return result

    def averaged_weights(self) -> contextlib.AbstractContextManager:
        """A context in which the model holds the weights evaluated (the average, if kept)."""
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext()

    # --- one epoch ------------------------------------------------------------------------

    def _train_epoch(self, fit_start: float) -> None:
        cfg, st = self.config, self.state
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(st.epoch)
        self._bar = ProgressBar(self.steps_per_epoch, f"epoch {st.epoch + 1}/{self.epochs}",
                                enabled=self.progress and self.dist.is_main,
                                line_every=cfg.log_every)
        self._bar.n = st.batch_in_epoch
        self._epoch_start = time.perf_counter() - st.epoch_seconds
        if st.batch_in_epoch == 0:  # a resumed epoch keeps the running loss saved in last/
            self.ledger.start_window()
        self.model.train()
        for i, batch in enumerate(self.train_data):
            if i < st.batch_in_epoch:
                continue  # seen before the interruption; same order since set_epoch(epoch)
            if st.global_step >= self.total_steps:
                break
            self._stop_if_interrupted()
            elapsed = self._elapsed(fit_start)
            if elapsed is not None and elapsed >= cfg.time_limit:
                st.out_of_time = True
                break
            loss, lr = self._step(batch, elapsed)
            if st.global_step % cfg.log_every == 0:
                self._log_step(lr, fit_start)
            self._bar.update(1)
            if self.evaluator is not None and self.evaluator.due_mid_epoch(self):
                self._evaluate_mid_epoch(fit_start)
                if st.stopped_early:
                    break
            if cfg.save_every and st.global_step % cfg.save_every == 0 and self.store:
                self._save_last(fit_start)
            info = StepInfo(st.global_step, st.epoch, loss.value, lr)
            for cb in self.callbacks:
                cb.on_step_end(self, info)
        self._bar.close()
        self._end_epoch(fit_start)

    def _step(self, batch: dict[str, Tensor], elapsed: float | None) -> tuple[Loss, float]:
        """One optimizer step, ``elapsed`` seconds into training (``None`` without a time
        limit); the loss stays on the device (see :meth:`_read_back`)."""
        cfg, st = self.config, self.state
        dev = self.dist.device
        batch = {k: v.to(dev, non_blocking=True) if isinstance(v, Tensor) else v
                 for k, v in batch.items()}
        inputs = {k: v for k, v in batch.items() if k not in self.targets}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            outputs = self._wrapped(**inputs)
        loss = self.loss_fn(outputs, batch)
        self._backward(loss)
        grad_norm = None
        if cfg.grad_clip:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        lr = cfg.lr * self._lr_factor(elapsed)
        set_lr(self.optimizer, lr)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        st.global_step += 1
        st.batch_in_epoch += 1
        return self.ledger.add(st.global_step, loss, grad_norm), lr

    def _backward(self, loss: Loss) -> None:
        """Backpropagate ``loss.value``; under ``torchrun`` a mean over a count that differs
        between processes is first scaled by this process's share of the global count, so the
        averaged gradient is that of the mean over the global batch (see
        :attr:`~attnlab.train.state.Loss.mean_over_examples`)."""
        if not (self.dist.distributed and loss.mean_over_examples):
            loss.value.backward()
            return
        share = global_share(loss.examples, self.dist.world_size, self.dist.device)
        (loss.value * share.to(loss.value.dtype)).backward()

    def _read_back(self) -> None:
        """Read the pending steps' losses from the device (one synchronisation)."""
        if self.ledger.read_back(self.state, self.config.lr) and self.state.examples:
            self._bar.set_stats(loss=self.state.loss_sum / self.state.examples,
                                **{"tok/s": thousands(self._tokens_per_s())})

    def _tokens_per_s(self) -> float:
        elapsed = time.perf_counter() - self._epoch_start
        return self.state.tokens * self.dist.world_size / max(elapsed, 1e-9)

    def _log_step(self, lr: float, fit_start: float) -> None:
        self._read_back()
        st = self.state
        self.log.write({
            "type": "step", "step": st.global_step, "epoch": st.epoch + 1,
            "loss": self.ledger.window_mean(), "lr": lr,
            "grad_norm": self.ledger.grad_norm_value, "tokens_per_s": self._tokens_per_s(),
            "time": time.perf_counter() - fit_start,
        })

    def _end_epoch(self, fit_start: float) -> None:
        st = self.state
        self._read_back()
        names = sorted(st.stat_sums)
        totals = torch.tensor([st.loss_sum, st.examples, st.tokens,
                               *(st.stat_sums[k] for k in names)],
                              dtype=torch.float64, device=self.dist.device)
        loss_sum, examples, tokens, *sums = all_reduce_sum(totals).tolist()
        last_epoch = (st.epoch + 1 == self.epochs or st.global_step >= self.total_steps
                      or st.out_of_time)
        val, fresh = None, False
        if self.evaluator is not None:
            val = self.evaluator.latest_at(st.global_step)  # evaluated mid-epoch at this step
            if val is None and self.evaluator.due_at_epoch_end(self, last_epoch):
                val, fresh = self.evaluator.evaluate(self), True
        seconds = time.perf_counter() - self._epoch_start
        record = EpochRecord(
            epoch=st.epoch + 1, step=st.global_step, train_loss=loss_sum / max(examples, 1),
            train_stats={k: s / max(examples, 1) for k, s in zip(names, sums, strict=True)},
            val=val, seconds=seconds, tokens_per_s=tokens / max(seconds, 1e-9))
        st.history.append(record.to_dict())
        improved = fresh and self.evaluator.track(self, val, metrics=record.to_dict())
        self.log.write({"type": "eval" if fresh else "epoch", "step": st.global_step,
                        "epoch": record.epoch, **({} if val is None else val.to_dict()),
                        **{k: v for k, v in record.to_dict().items() if k.startswith("train_")},
                        "best": improved, "time": time.perf_counter() - fit_start})
        if self.dist.is_main and self.progress:
            print(epoch_line(record, improved), file=sys.stderr, flush=True)
        st.epoch += 1
        st.start_epoch_sums()
        if self.store is not None:
            self._save_last(fit_start, epoch_done=True)
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)

    def _evaluate_mid_epoch(self, fit_start: float) -> None:
        self._read_back()
        st = self.state
        val = self.evaluator.evaluate(self)
        metrics = {"epoch": st.epoch + 1, "step": st.global_step, "val": val.to_dict()}
        improved = self.evaluator.track(self, val, metrics)
        self.log.write({"type": "eval", "step": st.global_step, "epoch": st.epoch + 1,
                        **val.to_dict(), "best": improved,
                        "time": time.perf_counter() - fit_start})
        if self._bar.enabled:
            lead = "\n" if self._bar.tty else ""  # on a terminal, leave the bar's line first
            print(f"{lead}step {st.global_step}: val {val.describe()}{' *' if improved else ''}",
                  file=sys.stderr, flush=True)

    # --- Ctrl-C -----------------------------------------------------------------------------

    def _stop_if_interrupted(self) -> None:
        """At a step boundary: stop if Ctrl-C was pressed (on any process under torchrun)."""
        hit = float(self._sigint())
        if self.dist.distributed:
            hit = float(all_reduce_sum(torch.tensor([hit], device=self.dist.device)).item())
        if hit:
            raise _Boundary

    def _interrupted(self, fit_start: float, coordinated: bool) -> TrainingInterrupted:
        """Save last/ at this step (every process when all stopped together) and say so."""
        saved = self.store is not None and (coordinated or not self.dist.distributed)
        if saved:
            self.state.wall_time = time.perf_counter() - fit_start
            self._save_last(fit_start, epoch_done=self.state.batch_in_epoch == 0)
        return TrainingInterrupted(self.state.global_step, saved)

    # --- checkpoints ----------------------------------------------------------------------

    def _save_last(self, fit_start: float | None = None, epoch_done: bool = False) -> None:
        """Save last/ with everything needed to resume (all processes take part)."""
        self._read_back()
        st = self.state
        if fit_start is not None:
            if not epoch_done:
                st.epoch_seconds = time.perf_counter() - self._epoch_start
            st.wall_time = time.perf_counter() - fit_start
        save_last(self)

    def _restore(self) -> None:
        if self.store is None:
            raise ValueError("resume needs a run store (the run folder holding last/)")
        restore_last(self)
        self.log.truncate_after(self.state.global_step)

    # --- helpers --------------------------------------------------------------------------

    def _result(self) -> FitResult:
        st, ev = self.state, self.evaluator
        metrics = ev.metrics if ev is not None else None
        return FitResult(
            history=[EpochRecord.from_dict(r, metrics) for r in st.history],
            best_epoch=None if ev is None else ev.state.best_epoch,
            best_val=None if ev is None else ev.best(), global_step=st.global_step,
            stopped_early=st.stopped_early, wall_time=st.wall_time, out_of_time=st.out_of_time,
            best_step=None if ev is None else ev.state.best_step)

    def _elapsed(self, fit_start: float) -> float | None:
        """Seconds of training so far when there is a time limit (else ``None``): under
        ``torchrun`` the longest of the processes', so that all stop at the same step and set
        the same learning rate."""
        if self.config.time_limit is None:
            return None
        elapsed = time.perf_counter() - fit_start
        if self.dist.distributed:
            elapsed = all_reduce_max(torch.tensor([elapsed], dtype=torch.float64,
                                                  device=self.dist.device)).item()
        return elapsed

    def _lr_factor(self, elapsed: float | None) -> float:
        """The schedule's multiplier for the coming step; with ``decay_to_time_limit`` the
        warm-up and the decay also follow the time (see :mod:`attnlab.train.optim`): warm-up
        ends after its share of the time limit, the decay with the limit."""
        cfg, st = self.config, self.state
        progress = warm = 0.0
        if cfg.decay_to_time_limit and elapsed is not None:
            warmup_time = cfg.time_limit * self.warmup_steps / self.total_steps
            warm = time_warmup(elapsed, warmup_time)
            if st.warmup_end is None and (st.global_step >= self.warmup_steps or warm >= 1.0):
                st.warmup_end = min(elapsed, warmup_time)  # the clock's end may have come first
            progress = time_progress(elapsed, st.warmup_end, cfg.time_limit)
        return lr_factor(st.global_step, self.total_steps, self.warmup_steps, cfg.schedule,
                         time_progress=progress, time_warmup=warm)


class _Boundary(KeyboardInterrupt):
    """Raised by the loop itself at a step boundary after Ctrl-C."""
