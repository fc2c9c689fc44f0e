"""Tampered or odd checkpoints and options: each gets a clear error naming the file and the
field (a ``CheckpointError`` or a ``ValueError``), never a traceback from deep inside."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnlab.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from attnlab.io.registry import load_model
from attnlab.models.classifier import ClassifierConfig
from attnlab.models.seq2seq import Seq2SeqConfig
from attnlab.train.config import TrainConfig
from tiny_run import make_tiny_run
from toy_training import ToyClassifier


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("tiny") / "ck", train_steps=0)


@pytest.fixture
def run(pristine, tmp_path) -> Path:
    folder = tmp_path / "ck"
    shutil.copytree(pristine, folder)
    return folder


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_the_untampered_run_loads(run):
    loaded = load_model(run)
    assert loaded.labels == ["negative", "positive"]
    assert loaded.tokenizer is not None and loaded.tokenizer.pad_token_id == 0


# --- config.json -------------------------------------------------------------------------------


def test_config_without_model(run):
    edit_json(run / "config.json", lambda c: c.pop("model"))
    with pytest.raises(CheckpointError, match=r"config\.json.*'model'"):
        load_model(run)


def test_model_config_not_a_dict(run):
    edit_json(run / "config.json", lambda c: c.update(model="big"))
    with pytest.raises(CheckpointError, match=r"config\.json.*'model'"):
        load_model(run)


def test_model_config_with_bad_values(run):
    edit_json(run / "config.json", lambda c: c["model"].update(n_heads="4"))
    with pytest.raises(CheckpointError, match=r"config\.json.*n_heads"):
        load_model(run)


@pytest.mark.parametrize("kept", ["0,1", {"encoder.layers.0.attn": "01"}, [[0, 1]]])
def test_kept_heads_of_the_wrong_type(run, kept):
    edit_json(run / "config.json", lambda c: c.update(kept_heads=kept))
    with pytest.raises(CheckpointError, match=r"config\.json.*kept_heads"):
        load_model(run)


def test_kept_heads_naming_no_module(run):
    edit_json(run / "config.json", lambda c: c.update(kept_heads={"nope": [0]}))
    with pytest.raises(CheckpointError, match=r"config\.json.*kept_heads"):
        load_model(run)


@pytest.mark.parametrize("labels", [["negative"], "negative,positive", ["a", "b", "c"]])
def test_labels_that_do_not_match_the_classes(run, labels):
    edit_json(run / "config.json", lambda c: c.update(labels=labels))
    with pytest.raises(CheckpointError, match=r"config\.json.*labels"):
        load_model(run)


@pytest.mark.parametrize("version", ["2", 1.5, None, True])
def test_version_not_an_integer(run, version):
    edit_json(run / "config.json", lambda c: c.update(version=version))
    with pytest.raises(CheckpointError, match=r"config\.json.*version"):
        load_model(run)


def test_newer_version_still_refused(run):
    edit_json(run / "config.json", lambda c: c.update(version=2))
    with pytest.raises(CheckpointError, match=r"config\.json: checkpoint version 2 is newer"):
        load_model(run)


@pytest.mark.parametrize("field", ["max_len", "d_ff", "vocab_size"])
def test_huge_sizes_are_refused_before_building(run, field, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("the model was built")

    edit_json(run / "config.json", lambda c: c["model"].update({field: 10**9}))
    monkeypatch.setattr("attnlab.io.registry.TextClassifier", no_build)
    with pytest.raises(CheckpointError, match=rf"config\.json.*{field}.*model\.safetensors"):
        load_model(run)


def test_layer_count_checked_against_the_weights(run, monkeypatch):
    monkeypatch.setattr("attnlab.io.registry.TextClassifier", None)
    edit_json(run / "config.json", lambda c: c["model"].update(n_layers=10**6))
    with pytest.raises(CheckpointError, match=r"config\.json.*n_layers.*model\.safetensors"):
        load_model(run)


def test_learned_positions_checked_against_the_weights(tmp_path):
    folder = make_tiny_run(tmp_path / "ck", train_steps=0)
    edit_json(folder / "config.json", lambda c: c["model"].update(positional="learned"))
    with pytest.raises(CheckpointError, match=r"config\.json.*model\.safetensors"):
        load_model(folder)


# --- model.safetensors ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_weights_are_refused(run, value):
    weights = load_file(str(run / "model.safetensors"))
    weights["head.weight"] = torch.full_like(weights["head.weight"], value)
    save_file(weights, str(run / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*'head\.weight'.*finite"):
        load_model(run)


# --- tokenizer.json ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "{not json", "{}", '{"model": 3}'])
def test_bad_or_empty_tokenizer(run, text):
    (run / "tokenizer.json").write_text(text)
    with pytest.raises(CheckpointError, match=r"tokenizer\.json"):
        load_model(run)


def test_token_ids_beyond_the_embedding(run):
    def grow(tok):
        vocab = tok["model"]["vocab"]
        for i in range(10):
            vocab[f"extra{i}"] = len(vocab)

    edit_json(run / "tokenizer.json", grow)
    with pytest.raises(CheckpointError, match=r"tokenizer\.json.*vocab.*vocab_size"):
        load_model(run)


def test_pad_id_swapped_in_the_tokenizer(run):
    def swap(tok):  # [PAD] <-> [UNK], consistently
        vocab = tok["model"]["vocab"]
        vocab["[PAD]"], vocab["[UNK]"] = vocab["[UNK]"], vocab["[PAD]"]
        tok["added_tokens"][0]["id"], tok["added_tokens"][1]["id"] = 1, 0

    edit_json(run / "tokenizer.json", swap)
    with pytest.raises(CheckpointError, match=r"tokenizer\.json.*\[PAD\]"):
        load_model(run)


def test_pad_id_of_the_config_not_the_tokenizers(run):
    edit_json(run / "config.json", lambda c: c["model"].update(pad_token_id=5))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json.*\[PAD\].*pad_token_id"):
        load_model(run)


def test_missing_tokenizer_when_one_is_required(run):
    (run / "tokenizer.json").unlink()
    assert load_model(run).tokenizer is None  # allowed when only reading the model
    with pytest.raises(CheckpointError, match=r"tokenizer\.json.*missing"):
        load_checkpoint(run).require_tokenizer()


# --- trainer_state.json -------------------------------------------------------------------------


def loop_state() -> dict:
    """What the training loop saves in last/ (train/resume.py), in small."""
    return {"progress": {"global_step": 3, "epoch": 0, "batch_in_epoch": 3, "loss_sum": 1.5,
                         "examples": 12, "tokens": 40, "stat_sums": {}, "epoch_seconds": 0.5,
                         "stopped_early": False, "out_of_time": False, "wall_time": 1.0,
                         "history": []},
            "optimizer": {"state": {}, "param_groups": []}, "ema": None,
            "rng": [{"torch": torch.get_rng_state()}], "world_size": 1}


@pytest.fixture
def last(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "last", ToyClassifier(), {}, trainer_state=loop_state())


def test_loop_state_round_trip(last):
    assert load_checkpoint(last, with_state=True).trainer_state["world_size"] == 1


@pytest.mark.parametrize(("change", "field"), [
    (lambda s: s.pop("world_size"), "world_size"),
    (lambda s: s.update(world_size="1"), "world_size"),
    (lambda s: s.update(world_size=0), "world_size"),
    (lambda s: s["progress"].update(global_step="3"), "progress.global_step"),
    (lambda s: s["progress"].update(epoch=-1), "progress.epoch"),
    (lambda s: s["progress"].update(loss_sum="x"), "progress.loss_sum"),
    (lambda s: s.update(progress=[]), "progress"),
    (lambda s: s.update(rng=[]), "rng"),
])
def test_tampered_loop_state(last, change, field):
    edit_json(last / "trainer_state.json", change)
    with pytest.raises(CheckpointError, match=rf"trainer_state\.json.*'{field}'"):
        load_checkpoint(last, with_state=True)


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["lr", "weight_decay", "embedding_weight_decay", "grad_clip",
                                   "min_delta", "time_limit", "warmup_ratio", "label_smoothing",
                                   "ema_decay"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_train_floats_must_be_finite(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        TrainConfig(**{field: value})


def test_train_defaults_and_edges_still_accepted():
    TrainConfig()
    TrainConfig(grad_clip=None, time_limit=None, ema_decay=None)
    TrainConfig(grad_clip=0.0, time_limit=0.5, weight_decay=0.0)


@pytest.mark.parametrize("field", ["dropout", "attn_dropout", "word_dropout", "embed_init_std"])
@pytest.mark.parametrize("value", [math.nan, math.inf, True])
def test_classifier_floats_must_be_finite(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        ClassifierConfig(vocab_size=10, **{field: value})


@pytest.mark.parametrize("field", ["dropout", "attn_dropout"])
@pytest.mark.parametrize("value", [math.nan, math.inf, True])
def test_seq2seq_floats_must_be_finite(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        Seq2SeqConfig(vocab_size=10, **{field: value})
