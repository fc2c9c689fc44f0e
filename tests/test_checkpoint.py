"""Checkpoints: exact round trip, atomic replacement under simulated crashes, and clear errors
for truncated, corrupt or missing files."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch

import attnlab.io.checkpoint as ckpt_mod
from attnlab.io.checkpoint import (
    CheckpointError,
    decode_state,
    encode_state,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from attnlab.text import TextTokenizer
from toy_training import ToyClassifier


def make_state(model: torch.nn.Module) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[8, 9, 6]]), labels=torch.tensor([1])).loss.backward()
    opt.step()
    return {
        "progress": {"global_step": 3, "best_val_loss": None, "history": [{"epoch": 1}]},
        "optimizer": opt.state_dict(),
        "rng": [{"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": np.random.get_state()}],
    }


def assert_equal_nested(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_equal_nested(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_equal_nested(x, y)
    else:
        assert a == b


def test_state_encoding_round_trip_is_exact():
    state = make_state(ToyClassifier())
    tensors: dict = {}
    encoded = encode_state(state, tensors)
    json.dumps(encoded)  # JSON-ready
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert_equal_nested(decode_state(json.loads(json.dumps(encoded)), tensors), state)


def test_state_encoding_rejects_unknown_types():
    with pytest.raises(TypeError, match="cannot store a object in a checkpoint state"):
        encode_state({"x": object()}, {})


def test_checkpoint_round_trip(tmp_path):
    model = ToyClassifier()
    state = make_state(model)
    tok = TextTokenizer.train(["a gorgeous witty film", "a dull film"], vocab_size=50)
    save_checkpoint(tmp_path / "ck", model, {"model": model.config, "labels": ["bad", "good"]},
                    tokenizer=tok, metrics={"loss": 0.5}, trainer_state=state)
    loaded = load_checkpoint(tmp_path / "ck", with_state=True)
    assert loaded.config["model"] == model.config and loaded.config["labels"] == ["bad", "good"]
    assert loaded.metrics == {"loss": 0.5}
    assert_equal_nested(loaded.trainer_state, state)
    fresh = ToyClassifier()
    load_weights(fresh, loaded)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(loaded.tokenizer_path)).encode("a film").ids == \
        tok.tokenizer.encode("a film").ids
    # The optimizer state restores into a fresh optimizer and steps identically.
    opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    opt.load_state_dict(loaded.trainer_state["optimizer"])
    assert opt.state_dict()["param_groups"][0]["betas"] == (0.9, 0.999)
    assert not list(tmp_path.glob(".ck*"))  # no temporary folders left


def test_weights_that_do_not_fit_name_the_file(tmp_path):
    save_checkpoint(tmp_path / "ck", ToyClassifier(d=8), {})
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights do not fit"):
        load_weights(ToyClassifier(d=16), load_checkpoint(tmp_path / "ck"))


# --- atomicity --------------------------------------------------------------------------------


def saved_pair(tmp_path):
    """An existing checkpoint (old weights) and a model with different weights (new)."""
    old, new = ToyClassifier(), ToyClassifier()
    with torch.no_grad():
        new.head.weight.add_(1.0)
    save_checkpoint(tmp_path / "last", old, {"tag": "old"}, trainer_state=make_state(old))
    return old, new


def assert_is_old(tmp_path, old):
    loaded = load_checkpoint(tmp_path / "last", with_state=True)
    assert loaded.config["tag"] == "old"
    assert torch.equal(loaded.weights["head.weight"], old.head.weight)


def test_crash_while_writing_a_file_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old, new = saved_pair(tmp_path)
    real_save_file = ckpt_mod.save_file

    def half_written(tensors, filename):
        real_save_file(tensors, filename)
        with open(filename, "r+b") as f:  # the process dies halfway through the file
            f.truncate(os.path.getsize(filename) // 2)
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt_mod, "save_file", half_written)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "last", new, {"tag": "new"}, trainer_state=make_state(new))
    assert_is_old(tmp_path, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_hard_kill_mid_write_leaves_old_intact_and_next_save_cleans_up(tmp_path, monkeypatch):
    old, new = saved_pair(tmp_path)

    def killed(*args, **kwargs):  # like SIGKILL: no cleanup code runs
        raise SystemExit("killed")

    monkeypatch.setattr(ckpt_mod, "_write_json", killed)
    monkeypatch.setattr(ckpt_mod.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(SystemExit):
        save_checkpoint(tmp_path / "last", new, {"tag": "new"})
    assert any(p.name.startswith(".last.tmp-") for p in tmp_path.iterdir())  # debris
    assert_is_old(tmp_path, old)
    monkeypatch.undo()
    save_checkpoint(tmp_path / "last", new, {"tag": "new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert load_checkpoint(tmp_path / "last").config["tag"] == "new"


def test_crash_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    old, new = saved_pair(tmp_path)
    real_replace = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old moved away, new not yet in place
            raise SystemExit("killed")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "replace", crash_on_second)
    with pytest.raises(SystemExit):
        save_checkpoint(tmp_path / "last", new, {"tag": "new"})
    monkeypatch.undo()
    assert not (tmp_path / "last").exists()
    assert_is_old(tmp_path, old)  # found at .last.old
    save_checkpoint(tmp_path / "last", new, {"tag": "new"})
    assert load_checkpoint(tmp_path / "last").config["tag"] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


# --- corrupt checkpoints ----------------------------------------------------------------------


@pytest.fixture
def good(tmp_path):
    model = ToyClassifier()
    return save_checkpoint(tmp_path / "ck", model, {"model": model.config},
                           trainer_state=make_state(model))


@pytest.mark.parametrize("name", ["model.safetensors", "trainer_state.safetensors"])
@pytest.mark.parametrize("keep", [0.5, 0.999, 4])
def test_truncated_safetensors_is_a_clear_error(good, name, keep):
    path = good / name
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep) if keep < 1 else keep)
    with pytest.raises(CheckpointError, match=rf"{name}: corrupt or truncated safetensors"):
        load_checkpoint(good, with_state=True)


@pytest.mark.parametrize("name", ["config.json", "trainer_state.json"])
def test_bad_json_is_a_clear_error(good, name):
    text = (good / name).read_text()
    (good / name).write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=rf"{name}: not valid JSON"):
        load_checkpoint(good, with_state=True)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "trainer_state.json",
                                  "trainer_state.safetensors"])
def test_missing_file_is_named(good, name):
    (good / name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"checkpoint file missing: .*{name}"):
        load_checkpoint(good, with_state=True)


def test_other_json_is_not_a_checkpoint(good):
    (good / "config.json").write_text(json.dumps({"hidden_size": 384}))
    with pytest.raises(CheckpointError, match="config.json: not an attnlab checkpoint config"):
        load_checkpoint(good)


def test_inconsistent_state_is_named(good):
    state = json.loads((good / "trainer_state.json").read_text())
    state["optimizer"]["state"] = {"__tensor__": "no.such.tensor"}
    (good / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="trainer_state.json: inconsistent trainer state"):
        load_checkpoint(good, with_state=True)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "nope")
