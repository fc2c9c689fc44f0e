"""Trainer: schedule, optimizer groups, metrics, learning, seeds, exact resume, early stopping,
bf16, and data parallelism under torchrun (on the toy task of tests/toy_training.py)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from attnlab.io import load_checkpoint
from attnlab.tasks.classification.metrics import confusion_matrix, evaluate, macro_f1, summarize
from attnlab.tasks.classification.training import ClassificationLoss, classification_trainer
from attnlab.train import Callback, MetricsLog, TrainConfig, Trainer
from attnlab.train.averaging import ExponentialMovingAverage
from attnlab.train.optim import build_optimizer, lr_factor, time_progress, warmup_steps_for
from attnlab.train.progress import ProgressBar
from attnlab.train.sharding import ShardedBatches
from conftest import run_torchrun
from toy_training import (
    TOKEN_CONFIG,
    NaiveShardMean,
    StepClock,
    ToyClassifier,
    token_batches,
    toy_loaders,
    train_tokens,
    train_toy,
)

ROOT = Path(__file__).resolve().parents[1]
# The toy runs only 16-48 steps: too few for the default weight average (the EMA tests set it).
FAST = dict(batch_size=32, lr=5e-3, log_every=4, label_smoothing=0.0, ema_decay=None)


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if atol == 0.0:
            assert torch.equal(a[k], b[k]), f"{k} differs by {(a[k] - b[k]).abs().max()}"
        else:
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


# --- schedule, optimizer, metrics ----------------------------------------------------------


@pytest.mark.parametrize(
    "schedule, step, expected",
    [
        ("linear", 0, 1 / 4), ("linear", 3, 1.0), ("linear", 4, 1.0), ("linear", 8, 0.5),
        ("linear", 11, 1 / 8), ("cosine", 4, 1.0), ("cosine", 8, 0.5),
        ("cosine", 10, 0.5 * (1 + math.cos(math.pi * 6 / 8))), ("constant", 11, 1.0),
        ("constant", 1, 0.5), ("inverse_sqrt", 1, 0.5), ("inverse_sqrt", 3, 1.0),
        ("inverse_sqrt", 15, 0.5), ("inverse_sqrt", 63, 0.25),
    ],
)
def test_lr_factor_hand_computed(schedule, step, expected):
    # 12 steps, 4 of warm-up: factors 1/4, 2/4, 3/4, 4/4, then decay over the 8 remaining.
    assert lr_factor(step, 12, 4, schedule) == pytest.approx(expected)


def test_adam_beta2_reaches_the_optimizer_and_is_checked():
    model = nn.Linear(2, 2)
    assert build_optimizer(model, 1e-3, 0.0).param_groups[0]["betas"] == (0.9, 0.999)
    assert build_optimizer(model, 1e-3, 0.0, beta2=0.98).param_groups[0]["betas"] == (0.9, 0.98)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"adam_beta2 must be in \(0, 1\), got {bad}"):
            TrainConfig(adam_beta2=bad)
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="inverse-sqrt")


def test_warmup_steps_ratio_and_override():
    assert warmup_steps_for(100, 0.1, None) == 10
    assert warmup_steps_for(101, 0.1, None) == 11  # ceil
    assert warmup_steps_for(100, 0.1, 3) == 3
    assert warmup_steps_for(5, 0.1, 30) == 5


def test_without_batch_size_small_data_sets_get_smaller_batches():
    cfg = TrainConfig()
    assert cfg.batch_size is None
    assert cfg.planned_batch_size(67_349) == 128  # SST-2: 526 steps an epoch, as before
    assert cfg.planned_batch_size(20_000) == 128  # 156 steps
    assert cfg.planned_batch_size(19_200) == 128  # exactly 150 batches of 128
    assert cfg.planned_batch_size(19_199) == 64
    assert cfg.planned_batch_size(10_000) == 64  # 78 batches of 128 are too few; 156 of 64
    assert cfg.planned_batch_size(8_000) == 32  # 62 of 128, 125 of 64, 250 of 32
    assert cfg.planned_batch_size(5_000) == 32
    assert cfg.planned_batch_size(100) == 32  # the smallest, however few the examples
    assert cfg.replace(batch_size=128).planned_batch_size(5_000) == 128  # given wins
    assert cfg.replace(min_epoch_steps=10).planned_batch_size(5_000) == 128
    assert cfg.planned_batch_size(5_000, world_size=4) == 32  # 8 examples a process
    with pytest.raises(ValueError, match="batches of 32 examples do not split evenly over 3 "
                                         "processes; give a --batch-size divisible by 3"):
        cfg.planned_batch_size(5_000, world_size=3)
    with pytest.raises(ValueError, match="min_epoch_steps must be > 0"):
        TrainConfig(min_epoch_steps=0)
    with pytest.raises(ValueError, match="batch_size must be > 0, got 0"):
        TrainConfig(batch_size=0)


def test_without_epochs_the_schedule_follows_the_data_size():
    cfg = TrainConfig()
    assert cfg.epochs is None
    # SST-2: 67,349 phrases in full batches of 128 make 526 steps: one epoch, as before
    assert cfg.planned_epochs(526) == 1
    assert cfg.planned_epochs(78) == 7  # 10k sentences: 546 steps
    assert cfg.planned_epochs(39) == 13  # 5k: 507 steps
    assert cfg.planned_epochs(1) == 30  # capped by max_epochs
    assert cfg.replace(epochs=2).planned_epochs(1) == 2  # given epochs win
    assert cfg.replace(min_steps=48, max_epochs=4).planned_epochs(16) == 3
    with pytest.raises(ValueError, match="min_steps must be > 0"):
        TrainConfig(min_steps=0)


def test_the_trainer_plans_whole_epochs_and_its_schedule_from_min_steps():
    seen = []

    class Steps(Callback):
        def on_step_end(self, trainer, info):
            seen.append(trainer.optimizer.param_groups[0]["lr"])

    # 512 toy examples in batches of 32: 16 steps an epoch; 40 steps need 3 epochs (48 steps)
    _, result = train_toy(TrainConfig(min_steps=40, warmup_ratio=0.25, **FAST),
                          callbacks=[Steps()])
    assert result.global_step == 48 and len(result.history) == 3
    assert seen[11] == pytest.approx(5e-3)  # warm-up is a quarter of the 48 planned steps
    assert seen[-1] == pytest.approx(5e-3 / 36)  # linear decay ends with the last planned step


def test_optimizer_no_decay_on_bias_norm_embedding():
    model = ToyClassifier()
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert names == {"head.weight"}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1, embedding_weight_decay=2.0)
    by_decay = {g["weight_decay"]: {n for n, p in model.named_parameters()
                                    if any(p is q for q in g["params"])}
                for g in opt.param_groups}
    assert by_decay[2.0] == {"emb.weight"} and by_decay[0.1] == {"head.weight"}
    # one step on zero gradients: only the decay moves the embedding, by lr * decay
    before = model.emb.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(model.emb.weight.detach(), before * (1 - 1e-3 * 2.0))


def test_confusion_matrix_and_macro_f1_hand_computed():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 0, 1, 0, 2])
    m = confusion_matrix(preds, labels, 3)
    assert m.tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    # class 0: P 2/3, R 2/3 -> 2/3; class 1: P 1/2, R 1/2 -> 1/2; class 2: 1.
    assert macro_f1(m) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    result = summarize(3.0, m)
    assert (result.n, result.loss, result.accuracy) == (6, 0.5, pytest.approx(4 / 6))


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="labels must lie in"):
        confusion_matrix(torch.tensor([0]), torch.tensor([3]), 2)
    with pytest.raises(ValueError, match="not finite"):
        summarize(float("nan"), torch.eye(2, dtype=torch.long))


def test_train_config_checks():
    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="step")
    with pytest.raises(TypeError, match="batch_size must be an int"):
        TrainConfig(batch_size=3.5)
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"lr": 1e-3, "learning_rate": 1})
    assert TrainConfig.from_dict(TrainConfig(lr=3e-4).to_dict()) == TrainConfig(lr=3e-4)
    with pytest.raises(ValueError, match=r"ema_decay must be None or in \[0, 1\), got 1.0"):
        TrainConfig(ema_decay=1.0)
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "ema_decay"}
    assert TrainConfig.from_dict(old).ema_decay is None  # saved before the EMA: trained without


# --- training -------------------------------------------------------------------------------


def test_toy_training_learns_and_writes_run(tmp_path):
    model, result = train_toy(TrainConfig(epochs=3, **FAST), tmp_path)
    assert result.best_val.accuracy > 0.95
    assert result.global_step == 3 * (512 // 32)
    assert [r.epoch for r in result.history] == [1, 2, 3]
    assert result.history[-1].train_loss < result.history[0].train_loss
    records = MetricsLog.read(tmp_path / "metrics.jsonl")
    steps = [r["step"] for r in records if r["type"] == "step"]
    assert steps == list(range(4, 49, 4))
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2, 3]
    assert {"loss", "accuracy", "f1", "n", "train_loss"} <= evals[0].keys()
    best = load_checkpoint(tmp_path / "best")
    assert best.metrics["epoch"] == result.best_epoch
    assert best.config["labels"] == ["bad", "good"] and best.config["model_type"] == "toy"
    last = load_checkpoint(tmp_path / "last", with_state=True)
    assert last.trainer_state["progress"]["global_step"] == result.global_step
    assert_same_weights(last.weights, weights_of(model))
    assert json.loads((tmp_path / "result.json").read_text())["global_step"] == 48


def test_callbacks_see_every_step_epoch_and_the_end():
    class Recorder(Callback):
        def __init__(self):
            self.steps, self.epochs, self.result = [], [], None

        def on_step_end(self, trainer, info):
            self.steps.append((info.step, info.epoch))

        def on_epoch_end(self, trainer, record):
            self.epochs.append(record.epoch)

        def on_fit_end(self, trainer, result):
            self.result = result

    rec = Recorder()
    _, result = train_toy(TrainConfig(epochs=2, **FAST), callbacks=[rec])
    assert rec.steps == [(s, (s - 1) // 16) for s in range(1, 33)]
    assert rec.epochs == [1, 2] and rec.result is result


def test_lr_follows_schedule_in_log(tmp_path):
    cfg = TrainConfig(epochs=1, warmup_steps=4, schedule="linear", **{**FAST, "log_every": 1})
    train_toy(cfg, tmp_path)
    lrs = [r["lr"] for r in MetricsLog.read(tmp_path / "metrics.jsonl") if r["type"] == "step"]
    expected = [cfg.lr * lr_factor(s, 16, 4, "linear") for s in range(16)]
    assert lrs == pytest.approx(expected)


def test_time_progress_hand_computed():
    assert time_progress(30.0, 10.0, 50.0) == 0.5  # 20 of the 40 s after warm-up
    assert time_progress(5.0, 10.0, 50.0) == 0.0  # (clipped) before warm-up ended
    assert time_progress(70.0, 10.0, 50.0) == 1.0
    assert time_progress(30.0, None, 50.0) == 0.0  # still warming up
    assert time_progress(30.0, 10.0, None) == 0.0  # no limit
    assert time_progress(30.0, 60.0, 50.0) == 1.0  # warm-up alone took the budget
    # the decay follows whichever is further along: 1/8 of the steps, half of the time
    assert lr_factor(5, 12, 4, "linear", time_progress=0.5) == 0.5
    assert lr_factor(11, 12, 4, "linear", time_progress=0.5) == pytest.approx(1 / 8)
    assert lr_factor(5, 12, 4, "cosine", time_progress=0.5) == pytest.approx(0.5)
    assert lr_factor(3, 12, 4, "linear", time_progress=0.5) == 1.0  # warm-up is by steps
    assert lr_factor(15, 12, 4, "inverse_sqrt", time_progress=0.9) == 0.5  # ignores both


@pytest.mark.parametrize("decay_to_time_limit", [True, False])
def test_the_decay_ends_at_the_time_limit_when_asked(tmp_path, monkeypatch,
                                                     decay_to_time_limit):
    # 16 planned steps, 4 of warm-up; the clock says 1 s a step and the limit is 10 s, so 10
    # steps run. Timed, warm-up gets its share of the time, 10 x 4/16 = 2.5 s, and the decay
    # the 7.5 s after it, reaching 2/15 at step 9; by steps it would still be at 7/12.
    clock = StepClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    cfg = TrainConfig(epochs=1, warmup_steps=4, schedule="linear", time_limit=10.0,
                      decay_to_time_limit=decay_to_time_limit, **{**FAST, "log_every": 1})
    _, result = train_toy(cfg, tmp_path, callbacks=[clock])
    assert result.out_of_time and result.global_step == 10
    lrs = [r["lr"] for r in MetricsLog.read(tmp_path / "metrics.jsonl") if r["type"] == "step"]
    timed = [max(0.0, (s - 2.5) / 7.5) if decay_to_time_limit else 0.0 for s in range(10)]
    warm = [min(s / 2.5, 1.0) if decay_to_time_limit else 0.0 for s in range(10)]
    expected = [cfg.lr * lr_factor(s, 16, 4, "linear", time_progress=timed[s],
                                   time_warmup=warm[s]) for s in range(10)]
    assert lrs == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(cfg.lr * (2 / 15 if decay_to_time_limit else 7 / 12))
    saved = json.loads((tmp_path / "last" / "trainer_state.json").read_text())
    assert saved["progress"]["warmup_end"] == (2.5 if decay_to_time_limit else None)


def test_decay_to_time_limit_must_be_a_bool():
    with pytest.raises(TypeError, match="decay_to_time_limit must be a bool, got 'yes'"):
        TrainConfig(decay_to_time_limit="yes")


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_same_seed_same_weights_other_seed_differs(dropout):
    cfg = TrainConfig(epochs=1, **FAST)
    a, ra = train_toy(cfg, dropout=dropout)
    b, rb = train_toy(cfg, dropout=dropout)
    c, _ = train_toy(cfg.replace(seed=1), dropout=dropout)
    assert_same_weights(weights_of(a), weights_of(b))
    assert ra.best_val == rb.best_val
    assert not torch.equal(a.head.weight, c.head.weight)


class Crash(Callback):
    """Raises at a given step, like a process killed after that step."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, trainer, info):
        if info.step == self.at_step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("saved_at, crash_at", [(5, 7), (16, 18), (20, 20)])
def test_resume_reaches_the_uninterrupted_weights(tmp_path, saved_at, crash_at):
    # 16 steps per epoch, 2 epochs; dropout makes the RNG state matter.
    cfg = TrainConfig(epochs=2, save_every=saved_at, **FAST)
    full, full_result = train_toy(cfg, tmp_path / "full", dropout=0.2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_toy(cfg, tmp_path / "cut", dropout=0.2, callbacks=[Crash(crash_at)])
    saved = load_checkpoint(tmp_path / "cut" / "last", with_state=True)
    assert saved.trainer_state["progress"]["global_step"] == saved_at
    resumed, result = train_toy(cfg, tmp_path / "cut", dropout=0.2, resume=True)
    assert_same_weights(weights_of(resumed), weights_of(full))
    assert result.global_step == full_result.global_step
    assert [r.val for r in result.history] == [r.val for r in full_result.history]
    assert [r.train_loss for r in result.history] == pytest.approx(
        [r.train_loss for r in full_result.history], abs=1e-12)
    steps = [r["step"] for r in MetricsLog.read(tmp_path / "cut" / "metrics.jsonl")
             if r["type"] == "step"]
    assert steps == sorted(set(steps))  # no step logged twice after the resume


def test_keyboard_interrupt_saves_last_then_resume_matches(tmp_path):
    class Interrupt(Callback):
        def on_step_end(self, trainer, info):
            if info.step == 11:
                raise KeyboardInterrupt

    cfg = TrainConfig(epochs=2, **FAST)
    full, _ = train_toy(cfg, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_toy(cfg, tmp_path / "cut", callbacks=[Interrupt()])
    state = load_checkpoint(tmp_path / "cut" / "last", with_state=True).trainer_state
    assert state["progress"]["global_step"] == 11
    resumed, _ = train_toy(cfg, tmp_path / "cut", resume=True)
    assert_same_weights(weights_of(resumed), weights_of(full))


def test_resume_refuses_changed_config_and_missing_run(tmp_path):
    cfg = TrainConfig(epochs=1, **FAST)
    train_toy(cfg, tmp_path)
    with pytest.raises(ValueError, match=r"lr \(saved 0.005, now 0.001\)"):
        train_toy(cfg.replace(lr=1e-3), tmp_path, resume=True)
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        train_toy(cfg, tmp_path / "nothing", resume=True)


def test_early_stopping_on_rising_val_loss(tmp_path):
    # Dev labels flipped: the better the model learns, the worse the dev loss.
    cfg = TrainConfig(epochs=5, patience=2, **FAST)
    _, result = train_toy(cfg, tmp_path, flip_dev=True)
    assert result.stopped_early
    assert result.best_epoch == 1
    assert len(result.history) == 3  # epochs 2 and 3 did not improve
    assert load_checkpoint(tmp_path / "best").metrics["epoch"] == 1


def test_eval_steps_evaluates_mid_epoch_and_keeps_the_best_step(tmp_path):
    # 16 steps per epoch: evaluations at steps 6, 12 (mid-epoch), 16 (epoch end), 18, 24, 30,
    # 32 (epoch end); none twice at one step.
    cfg = TrainConfig(epochs=2, eval_steps=6, patience=None, **FAST)
    _, result = train_toy(cfg, tmp_path)
    evals = [r for r in MetricsLog.read(tmp_path / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [6, 12, 16, 18, 24, 30, 32]
    best = min(evals, key=lambda r: r["loss"])
    assert result.best_step == best["step"] and result.best_val.loss == best["loss"]
    assert result.best_epoch == best["epoch"]
    saved = load_checkpoint(tmp_path / "best")
    assert saved.metrics["step"] == best["step"]
    model = ToyClassifier()
    model.load_state_dict(saved.weights)
    _, dev = toy_loaders(FAST["batch_size"])
    assert evaluate(model, dev).loss == pytest.approx(
        best["loss"], abs=1e-6)  # best/ holds the weights of the best evaluation


def test_eval_steps_early_stopping_ends_mid_epoch(tmp_path):
    cfg = TrainConfig(epochs=5, eval_steps=4, patience=2, **FAST)
    _, result = train_toy(cfg, tmp_path, flip_dev=True)
    assert result.stopped_early and result.best_step == 4
    assert result.global_step == 12  # evaluations at 4 (best), 8 and 12 (worse): stop
    assert len(result.history) == 1 and result.history[0].step == 12
    evals = [r["step"] for r in MetricsLog.read(tmp_path / "metrics.jsonl")
             if r["type"] == "eval"]
    assert evals == [4, 8, 12]


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resume_with_eval_steps_matches_uninterrupted(tmp_path, ema_decay):
    cfg = TrainConfig(epochs=2, eval_steps=5, save_every=7, patience=None,
                      **{**FAST, "ema_decay": ema_decay})
    full, full_result = train_toy(cfg, tmp_path / "full", dropout=0.2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_toy(cfg, tmp_path / "cut", dropout=0.2, callbacks=[Crash(9)])
    resumed, result = train_toy(cfg, tmp_path / "cut", dropout=0.2, resume=True)
    assert_same_weights(weights_of(resumed), weights_of(full))
    assert (result.best_step, result.best_val) == (full_result.best_step, full_result.best_val)
    assert_same_weights(load_checkpoint(tmp_path / "cut" / "best").weights,
                        load_checkpoint(tmp_path / "full" / "best").weights)


# --- weight average (EMA) ---------------------------------------------------------------------


def test_ema_hand_computed_and_applied_only_inside_the_block():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False))
    model[1].weight.requires_grad_(False)  # frozen: not averaged, never touched
    ema = ExponentialMovingAverage(model, decay=0.6)
    weight = model[0].weight
    for value in (1.0, 3.0, 5.0):
        with torch.no_grad():
            weight.fill_(value)
        ema.update()
    # update 1 copies (d = 0); update 2: d = min(0.6, 1/2) -> 2; update 3: d = 0.6 -> 3.2
    frozen = model[1].weight.item()
    with ema.applied():
        assert weight.item() == pytest.approx(3.2)
        assert model[1].weight.item() == frozen
    assert weight.item() == 5.0
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1.5"):
        ExponentialMovingAverage(model, 1.5)
    state = ema.state_dict()
    state["average"] = [torch.zeros(2, 2)]
    with pytest.raises(ValueError, match=r"saved average tensor 0 has shape \(2, 2\), the "
                                         r"parameter has \(1, 1\)"):
        ema.load_state_dict(state)


def test_ema_is_what_is_evaluated_and_kept_in_best(tmp_path):
    class Trajectory(Callback):
        def __init__(self):
            self.weights = []

        def on_step_end(self, trainer, info):
            self.weights.append(weights_of(trainer.model))

    decay = 0.8
    record = Trajectory()
    cfg = TrainConfig(epochs=2, eval_steps=4, patience=None, **{**FAST, "ema_decay": decay})
    model, result = train_toy(cfg, tmp_path, callbacks=[record])
    # The average at the best step, computed here from every step's weights.
    expected = None
    for n, w in enumerate(record.weights[: result.best_step], start=1):
        d = min(decay, 1 - 1 / n)
        expected = w if expected is None else {k: d * expected[k] + (1 - d) * w[k] for k in w}
    best = load_checkpoint(tmp_path / "best")
    assert_same_weights(best.weights, expected, atol=1e-6)
    assert not torch.equal(best.weights["head.weight"], model.head.weight)
    last = load_checkpoint(tmp_path / "last", with_state=True)
    assert_same_weights(last.weights, weights_of(model))  # last/ keeps the raw weights
    averaged = ToyClassifier()
    averaged.load_state_dict(best.weights)
    _, dev = toy_loaders(FAST["batch_size"])
    assert evaluate(averaged, dev).loss == pytest.approx(
        result.best_val.loss, abs=1e-6)


def test_max_steps_stops_and_evaluates():
    _, result = train_toy(TrainConfig(epochs=3, max_steps=10, **FAST))
    assert result.global_step == 10
    assert len(result.history) == 1 and result.history[0].val is not None


def test_bf16_autocast_runs_and_learns():
    model, result = train_toy(TrainConfig(epochs=2, bf16=True, **FAST))
    assert model.last_dtype == torch.bfloat16  # the forward ran under autocast
    assert model.head.weight.dtype == torch.float32  # master weights stay float32
    assert result.best_val.accuracy > 0.9


def test_label_smoothing_loss_matches_the_formula():
    """Step 1's loss equals (1 - e) * NLL + e * mean over classes of -log p, at the
    initial weights on the first batch (computed here from the model's logits)."""
    from attnlab.train import seed_everything

    eps = 0.2
    seed_everything(0)
    model = ToyClassifier()
    train, _ = toy_loaders(32)
    train.set_epoch(0)
    batch = next(iter(train))
    with torch.no_grad():
        logp = torch.log_softmax(model(batch["input_ids"], batch["attention_mask"]).logits, -1)
    nll = -logp.gather(1, batch["labels"][:, None]).squeeze(1)  # (B,)
    expected = float(((1 - eps) * nll + eps * (-logp).mean(-1)).mean())

    seen = []

    class First(Callback):
        def on_step_end(self, trainer, info):
            seen.append(info.loss)

    train_toy(TrainConfig(epochs=1, **{**FAST, "label_smoothing": eps}), callbacks=[First()])
    assert seen[0] == pytest.approx(expected, rel=1e-6)
    seen.clear()
    train_toy(TrainConfig(epochs=1, **FAST), callbacks=[First()])
    assert seen[0] == pytest.approx(float(nll.mean()), rel=1e-6)  # no smoothing: the NLL


def test_nan_loss_raises(tmp_path):
    class Broken(ToyClassifier):
        def forward(self, input_ids, attention_mask=None, labels=None):
            out = super().forward(input_ids, attention_mask, labels)
            return out._replace(loss=out.loss * float("nan"))

    train, dev = toy_loaders(32)
    trainer = classification_trainer(Broken(), TrainConfig(epochs=1, **FAST), train, dev,
                                     progress=False)
    with pytest.raises(FloatingPointError, match="training loss is nan at step 1"):
        trainer.fit()


def test_trainer_rejects_bad_arguments():
    train, dev = toy_loaders(32)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        Trainer(ToyClassifier(), {"lr": 1e-3}, train, ClassificationLoss())
    with pytest.raises(TypeError, match="train_data must have len"):
        Trainer(ToyClassifier(), TrainConfig(), iter(train), ClassificationLoss())


def test_progress_bar_plain_lines_when_not_a_tty(capsys):
    import io

    stream = io.StringIO()  # not a TTY: one line per `line_every` steps, no carriage returns
    bar = ProgressBar(10, "epoch 1/1", stream=stream, line_every=4)
    for _ in range(10):
        bar.update(1, loss=0.5, **{"tok/s": "1.0k"})
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split()[2] for line in lines] == ["4/10", "8/10", "10/10"]
    assert "loss 0.500" in lines[0] and "tok/s 1.0k" in lines[0]


def test_sharded_batches_partition_rows_and_trim_padding():
    batch = {"input_ids": torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0], [5, 6, 7, 8], [5, 0, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1],
                                             [1, 0, 0, 0]]),
             "labels": torch.tensor([0, 1, 1, 0])}
    parts = [next(iter(ShardedBatches([batch], 2, r))) for r in range(2)]
    assert parts[0]["input_ids"].tolist() == [[5, 6, 7], [5, 6, 0]]
    assert parts[1]["input_ids"].tolist() == [[5, 6, 7, 8], [5, 0, 0, 0]]
    assert torch.cat([p["labels"] for p in parts]).tolist() == [0, 1, 1, 0]
    tiny = {k: v[:1] for k, v in batch.items()}
    assert list(ShardedBatches([tiny], 2, 1)) == []  # an empty slice is skipped
    with pytest.raises(ValueError, match="rank must be in"):
        ShardedBatches([batch], 2, 2)


def test_sharded_pair_batches_trim_each_side_by_its_own_mask():
    # source and target both 4 wide: the source mask must not cut the decoder's columns
    source_mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    target_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    batch = {"input_ids": source_mask * 7, "attention_mask": source_mask,
             "decoder_input_ids": target_mask * 9, "decoder_attention_mask": target_mask,
             "labels": target_mask * 5 + (target_mask - 1) * 100}  # -100 at padding
    first, second = (next(iter(ShardedBatches([batch], 2, r))) for r in range(2))
    assert first["input_ids"].shape == (2, 2) and first["attention_mask"].shape == (2, 2)
    assert first["decoder_input_ids"].tolist() == [[9, 9, 9, 9], [9, 9, 9, 0]]
    assert first["labels"].tolist() == [[5, 5, 5, 5], [5, 5, 5, -100]]
    assert second["input_ids"].shape == (2, 4)
    assert second["decoder_input_ids"].tolist() == [[9, 9], [9, 0]]
    assert second["labels"].shape == second["decoder_attention_mask"].shape == (2, 2)


def test_batch_size_must_split_over_processes():
    from attnlab.train.distributed import DistInfo

    train, dev = toy_loaders(32)
    fake = DistInfo(rank=0, world_size=3, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"batch_size \(32\) must be divisible by .* \(3\)"):
        classification_trainer(ToyClassifier(), TrainConfig(**FAST), train, dev, dist_info=fake)


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    """torchrun with 2 gloo processes (global batch 32 split 16 + 16) vs 1 process (32)."""
    script = ROOT / "tests" / "toy_training.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    results = {}
    for n in (1, 2):
        out = tmp_path / f"n{n}"
        proc, out = run_torchrun(lambda folder, attempt, n=n: [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n),
            "--master_port", str(29500 + os.getpid() % 1000 + n + 7 * attempt), str(script),
            "--out", str(folder)], out, env=env, timeout=110)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[n] = json.loads((out / "weights.json").read_text())
        assert (out / "run" / "last" / "model.safetensors").exists()
    assert results[1]["steps"] == results[2]["steps"] == 2 * (512 // 32)
    for name, w1 in results[1]["weights"].items():
        torch.testing.assert_close(torch.tensor(results[2]["weights"][name]), torch.tensor(w1),
                                   atol=1e-5, rtol=1e-4, msg=name)
    assert results[2]["val"]["n"] == 128  # every dev example counted once over both ranks
    assert results[1]["val"]["accuracy"] == pytest.approx(results[2]["val"]["accuracy"])


def _torchrun(script: Path, out: Path, *args: str, n: int = 2) -> dict[str, torch.Tensor]:
    """Run ``script`` under torchrun with ``n`` gloo processes; the weights it wrote."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc, folder = run_torchrun(lambda folder, attempt: [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n),
        "--master_port", str(29600 + os.getpid() % 1000 + len(args) + 7 * attempt),
        str(script), "--out", str(folder), *args], out, env=env, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {k: torch.tensor(v) for k, v in
            json.loads((folder / "weights.json").read_text()).items()}


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_two_processes_weight_the_token_mean_like_one_process(tmp_path, one_thread):
    """Shards with different target-token counts: 2 gloo processes reach the weights of one
    process on the global batch (the global per-token mean); each process backpropagating its
    own mean (the mean of the shard means) does not."""
    config = TrainConfig(**TOKEN_CONFIG)
    counts = [[int((b["labels"] != -100).sum()) for b in token_batches(32, 0, 2, rank)]
              for rank in (0, 1)]
    assert sum(a != b for a, b in zip(*counts, strict=True)) >= len(counts[0]) // 2, counts
    one = weights_of(train_tokens(config))
    naive = weights_of(train_tokens(config, NaiveShardMean(2)))
    script = ROOT / "tests" / "toy_training.py"
    exact = _torchrun(script, tmp_path / "exact", "--task", "tokens")
    local = _torchrun(script, tmp_path / "local", "--task", "tokens", "--naive")
    fixed, unfixed = _max_difference(exact, one), _max_difference(local, one)
    simulated = _max_difference(local, naive)
    print(f"max |w| difference from one process: weighted {fixed:.2e}, per-process means "
          f"{unfixed:.2e} (their one-process simulation {simulated:.2e} from them)")
    assert fixed <= 1e-6
    assert unfixed > 100 * 1e-6  # the weighting is what makes them equal
    assert simulated <= 1e-6  # without it, DDP averages the shard means


# --- host synchronisation ---------------------------------------------------------------------


class HostReads(TorchFunctionMode):
    """Counts reads of tensor values by the host (``item``, ``tolist``, ``float()``, ...) made
    directly from the given source files: the loop's own, not the model's or the data's. Reads
    inside ``torch.optim`` are of the optimizer's step counters, which stay on the host even
    when training on a GPU, and are not counted."""

    READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__,
             torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__index__}

    def __init__(self, *sources: str) -> None:
        super().__init__()
        self.sources, self.count = sources, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.READS:
            frame, in_optim = sys._getframe(1), False
            while frame is not None and f"{os.sep}torch{os.sep}" in frame.f_code.co_filename:
                in_optim |= f"{os.sep}torch{os.sep}optim{os.sep}" in frame.f_code.co_filename
                frame = frame.f_back  # from inside torch (clipping, optimizer) to its caller
            if (frame is not None and not in_optim
                    and frame.f_code.co_filename.endswith(self.sources)):
                self.count += 1
        return func(*args, **(kwargs or {}))


LOOP_SOURCES = tuple(os.path.join("attnlab", *p) for p in [
    ("train", "trainer.py"), ("train", "ledger.py"), ("train", "state.py"),
    ("train", "optim.py"), ("train", "averaging.py"),
    ("tasks", "classification", "training.py")])


@pytest.mark.parametrize("log_every", [1, 4, 8])
def test_the_loop_reads_the_device_once_per_log_interval(log_every):
    """16 steps, no evaluation, no saving: one read per ``log_every`` steps (the pending losses,
    statistics and gradient norm together) and one at the epoch's end (the reduced totals)."""
    config = TrainConfig(epochs=1, **{**FAST, "log_every": log_every})
    train, _ = toy_loaders(config.batch_size)
    trainer = classification_trainer(ToyClassifier(), config, train, progress=False)
    with HostReads(*LOOP_SOURCES) as reads:
        result = trainer.fit()
    assert result.global_step == 16
    assert reads.count == 16 // log_every + 1


def test_resume_reads_the_progress_of_runs_saved_before_stat_sums(tmp_path):
    """last/ written before the loop kept its statistics by name held ``correct``."""
    from attnlab.train.state import TrainState

    old = {"global_step": 7, "epoch": 0, "batch_in_epoch": 7, "loss_sum": 3.5, "correct": 150,
           "examples": 224, "tokens": 1800, "best_val_loss": 0.6, "bad_evals": 1}
    state = TrainState.from_dict(old)
    assert (state.global_step, state.examples, state.tokens) == (7, 224, 1800)
    assert state.stat_sums == {"accuracy": 150}
