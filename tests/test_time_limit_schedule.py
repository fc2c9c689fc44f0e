"""With ``decay_to_time_limit``, a run stopped by the clock has finished its warm-up and decayed
to (one step short of) a learning rate of 0, however short the time limit: the warm-up gets its
share of the time (``time_limit x warmup / total_steps``), the decay the rest."""

from __future__ import annotations

import json
import time

import pytest

from attnlab.train import MetricsLog, TrainConfig
from attnlab.train.optim import lr_factor, time_warmup
from toy_training import StepClock, train_toy

FAST = dict(batch_size=32, lr=5e-3, log_every=1, label_smoothing=0.0, ema_decay=None,
            eval_steps=None, patience=None)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_a_time_limit_shorter_than_the_warm_up_still_ends_near_zero(tmp_path, monkeypatch,
                                                                    schedule):
    # 256 planned steps, 32 of warm-up; the clock says 1 s a step and the limit is 20 s, so 20
    # steps run. By steps alone they would all be warm-up (the last at 20/32 of the peak). Timed,
    # warm-up takes its share, 20 x 32/256 = 2.5 s, and the decay the 17.5 s after it.
    clock = StepClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    cfg = TrainConfig(epochs=16, warmup_steps=32, schedule=schedule, time_limit=20.0,
                      decay_to_time_limit=True, **FAST)
    _, result = train_toy(cfg, tmp_path, callbacks=[clock])
    assert result.out_of_time and result.global_step == 20
    lrs = [r["lr"] for r in MetricsLog.read(tmp_path / "metrics.jsonl") if r["type"] == "step"]
    expected = [cfg.lr * lr_factor(s, 256, 32, schedule, time_warmup=min(s / 2.5, 1.0),
                                   time_progress=max(0.0, (s - 2.5) / 17.5)) for s in range(20)]
    assert lrs == pytest.approx(expected)
    assert lrs[:3] == pytest.approx([cfg.lr / 32, cfg.lr * 0.4, cfg.lr * 0.8])
    assert max(lrs) > 0.97 * cfg.lr  # warmed up
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:], strict=False))
    assert lrs[-1] < 0.06 * cfg.lr  # one step short of 0; was 20/32 of the peak
    saved = json.loads((tmp_path / "last" / "trainer_state.json").read_text())
    assert saved["progress"]["warmup_end"] == 2.5


def test_warm_up_follows_the_clock_when_it_is_further_along():
    assert lr_factor(1, 100, 10, "linear", time_warmup=0.5) == 0.5  # ahead of 2/10 by steps
    assert lr_factor(5, 100, 10, "linear", time_warmup=0.1) == 0.6  # steps ahead
    assert lr_factor(5, 100, 10, "linear", time_warmup=1.0, time_progress=0.25) == 0.75
    assert lr_factor(5, 100, 10, "inverse_sqrt", time_warmup=1.0) == 1.0  # never above peak
    assert time_warmup(3.0, 0.0) == 1.0  # no warm-up
