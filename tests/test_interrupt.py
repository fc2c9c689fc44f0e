"""Ctrl-C at any moment — mid-step, mid-evaluation, mid-save — then ``--resume`` ends with the
weights, weight average, optimizer state, ``metrics.jsonl`` and ``result.json`` of an
uninterrupted run (clock fields aside), and ``best/`` agrees with ``result.json``. Real SIGINTs
are sent to this process (the loop defers them to the next step boundary) and, in the slow
test, to an ``attnlab train`` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attnlab.cli import main
from attnlab.io import load_checkpoint
from attnlab.tasks.classification.training import RunArtifacts, classification_trainer
from attnlab.train import Callback, MetricsLog, TrainConfig, TrainingInterrupted, seed_everything
from toy_training import ToyClassifier, toy_loaders

CLOCK = {"time", "seconds", "tokens_per_s", "wall_time"}
CONFIG = TrainConfig(epochs=2, batch_size=32, lr=5e-3, log_every=4, label_smoothing=0.1,
                     ema_decay=0.9, eval_steps=5, save_every=7, patience=None)


def sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def make_trainer(out: Path, callbacks=()):
    seed_everything(CONFIG.seed)
    model = ToyClassifier(dropout=0.2)
    train, dev = toy_loaders(CONFIG.batch_size, CONFIG.seed)
    return classification_trainer(model, CONFIG, train, dev, out_dir=out, callbacks=callbacks,
                                  progress=False,
                                  artifacts=RunArtifacts(model.config, "toy", ["bad", "good"]))


class OnCall:
    """Wrap ``fn`` so that its ``n``-th call sends SIGINT in its middle."""

    def __init__(self, fn, n: int) -> None:
        self.fn, self.n, self.calls = fn, n, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            sigint()
        return self.fn(*args, **kwargs)


class AfterStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, info):
        if info.step == self.step:
            sigint()


def interrupt_at(moment: str, trainer) -> None:
    """Arrange for SIGINT at ``moment`` of the next fit."""
    if moment == "mid-step":  # inside the forward of step 9
        hook = OnCall(lambda *a: None, 9)
        trainer.model.register_forward_pre_hook(lambda module, args: hook())
    elif moment == "mid-evaluation":  # the second dev evaluation (step 10)
        trainer.evaluator.score = OnCall(trainer.evaluator.score, 2)
    elif moment == "mid-save-best":
        save, best = trainer.store.save, OnCall(trainer.store.save, 2)

        def save_best_interrupted(name, *args, **kwargs):
            return (best if name == "best" else save)(name, *args, **kwargs)

        trainer.store.save = save_best_interrupted
    elif moment == "mid-save-last":
        trainer.store.save = OnCall(trainer.store.save, 3)
    elif moment == "epoch-end":  # the evaluation at the end of epoch 1 (step 16)
        trainer.evaluator.score = OnCall(trainer.evaluator.score, 4)


def without_clock(obj):
    if isinstance(obj, dict):
        return {k: without_clock(v) for k, v in obj.items() if k not in CLOCK}
    if isinstance(obj, list):
        return [without_clock(v) for v in obj]
    return obj


def assert_same_run(a: Path, b: Path) -> None:
    for folder in ("best", "last"):
        ca = load_checkpoint(a / folder, with_state=folder == "last")
        cb = load_checkpoint(b / folder, with_state=folder == "last")
        for name, tensor in ca.weights.items():
            assert torch.equal(tensor, cb.weights[name]), f"{folder}/{name}"
        assert without_clock(ca.metrics) == without_clock(cb.metrics), folder
    sa = load_checkpoint(a / "last", with_state=True).trainer_state
    sb = load_checkpoint(b / "last", with_state=True).trainer_state
    for x, y in zip(sa["ema"]["average"], sb["ema"]["average"], strict=True):
        assert torch.equal(x, y)
    for key, state in sa["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[name], sb["optimizer"]["state"][key][name])
    assert without_clock(MetricsLog.read(a / "metrics.jsonl")) == \
        without_clock(MetricsLog.read(b / "metrics.jsonl"))
    ra, rb = (json.loads((x / "result.json").read_text()) for x in (a, b))
    assert without_clock(ra) == without_clock(rb)
    assert load_checkpoint(a / "best").metrics["step"] == ra["best_step"]  # best/ = result.json


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    make_trainer(out).fit()
    return out


@pytest.mark.parametrize("moment", ["after-step", "mid-step", "mid-evaluation",
                                    "mid-save-best", "mid-save-last", "epoch-end"])
def test_sigint_then_resume_equals_the_uninterrupted_run(tmp_path, uninterrupted, moment):
    out = tmp_path / "cut"
    trainer = make_trainer(out, callbacks=[AfterStep(6)] if moment == "after-step" else ())
    interrupt_at(moment, trainer)
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.fit()
    assert stop.value.saved and 0 < stop.value.step < 32
    saved = load_checkpoint(out / "last", with_state=True).trainer_state
    assert saved["progress"]["global_step"] == stop.value.step  # last/ holds that very step
    assert not (out / "result.json").exists()
    make_trainer(out).fit(resume=True)
    assert_same_run(out, uninterrupted)


def test_the_handler_is_removed_after_fit(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    make_trainer(tmp_path / "run").fit()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_prints_one_line_exits_130_and_resumes(tmp_path, data_dir):
    quick = ["train", "--data", "sst2", "--train-limit", "3000", "--d-model", "32", "--heads",
             "2", "--layers", "1", "--d-ff", "64", "--batch-size", "32", "--eval-steps", "10",
             "--save-every", "15", "--ema-decay", "0.9", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cut = tmp_path / "cut"
    process = subprocess.Popen([sys.executable, "-m", "attnlab.cli", *quick, "--out", str(cut)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while not (cut / "metrics.jsonl").exists() or len(
            (cut / "metrics.jsonl").read_text().splitlines()) < 3:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted at step "), err
    assert lines[0].endswith("saved last/ — resume with --resume")
    assert main([*quick, "--out", str(cut), "--resume"]) == 0
    assert main([*quick, "--out", str(tmp_path / "full")]) == 0
    assert_same_run(cut, tmp_path / "full")
