"""``attnlab train --init``: fine-tuning a pretrained BERT with a new head through the Trainer.

Fast tests use a tiny random BERT folder in the Hugging Face layout (config.json,
model.safetensors, tokenizer.json of all-MiniLM-L6-v2, whose vocabulary sets ``vocab_size``);
the slow test fine-tunes the real all-MiniLM-L6-v2 on a slice of SST-2.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnlab.cli import main
from attnlab.io import load_bert_classifier, load_checkpoint
from attnlab.io.pretrained import bert_weight_names, resolve_model_dir
from attnlab.models import BertConfig, BertModel
from attnlab.tasks.classification.config import FINETUNE_DEFAULTS, DataConfig, FinetuneConfig
from attnlab.tasks.classification.finetune import finetune_classifier
from attnlab.tasks.runs import RunControl
from attnlab.train import Callback, TrainConfig

MINILM = resolve_model_dir("all-MiniLM-L6-v2")
WORD_EMBEDDING = "bert.embeddings.word.weight"
# A few steps on the first 256 training phrases of SST-2.
QUICK = ["--data", "sst2", "--train-limit", "256", "--batch-size", "16", "--lr", "1e-3",
         "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT (width 16) saved with Hugging Face tensor names."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = json.loads((MINILM / "config.json").read_text())["vocab_size"]
    config = BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(1)
    state = BertModel(config, add_pooler=True).state_dict()
    names = bert_weight_names(config, with_pooler=True)  # Hugging Face name -> ours
    save_file({hf: state[ours].contiguous() for hf, ours in names.items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    shutil.copyfile(MINILM / "tokenizer.json", folder / "tokenizer.json")
    return folder


@pytest.fixture(scope="module")
def tiny_run(tiny_bert, tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("ft") / "run"
    assert main(["train", "--init", str(tiny_bert), *QUICK, "--max-steps", "6",
                 "--out", str(out)]) == 0
    return out


def test_run_folder_holds_the_pretrained_tokenizer_and_finetune_settings(tiny_run, tiny_bert):
    for folder in ("best", "last"):
        ckpt = load_checkpoint(tiny_run / folder)
        assert (ckpt.tokenizer_path.read_bytes()
                == (tiny_bert / "tokenizer.json").read_bytes())
    config = load_checkpoint(tiny_run / "last").config
    assert config["model_type"] == "bert-sequence-classifier"
    assert config["model"]["bert"]["hidden_size"] == 16
    assert config["model"]["max_length"] == 64
    assert config["init"] == FinetuneConfig(str(tiny_bert)).to_dict()
    assert config["labels"] == ["negative", "positive"]
    result = json.loads((tiny_run / "result.json").read_text())
    assert result["global_step"] == 6 and result["best_val"]["n"] == 872


def test_finetune_defaults_apply_and_explicit_options_win(tiny_run):
    train = load_checkpoint(tiny_run / "last").config["train"]
    assert train["lr"] == 1e-3 and train["batch_size"] == 16  # given on the command line
    for name in ("epochs", "warmup_ratio", "weight_decay", "label_smoothing", "patience"):
        assert train[name] == FINETUNE_DEFAULTS[name], name
    assert FINETUNE_DEFAULTS["lr"] != TrainConfig().lr  # the defaults do differ from scratch


def test_word_embeddings_stay_pretrained_the_rest_moves(tiny_run, tiny_bert):
    pretrained = load_file(str(tiny_bert / "model.safetensors"))
    tuned = load_checkpoint(tiny_run / "last").weights
    assert torch.equal(tuned[WORD_EMBEDDING],
                       pretrained["embeddings.word_embeddings.weight"])
    assert not torch.allclose(tuned["bert.layers.0.attn.q_proj.weight"],
                              pretrained["encoder.layer.0.attention.self.query.weight"])


def test_evaluate_reproduces_the_dev_metrics_of_training(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run), "--split", "dev", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    best = json.loads((tiny_run / "result.json").read_text())["best_val"]
    assert got["n"] == best["n"] == 872
    assert got["loss"] == pytest.approx(best["loss"], abs=1e-5)
    assert got["accuracy"] == pytest.approx(best["accuracy"])


def test_predict_matches_the_saved_model_run_directly(tiny_run, capsys):
    texts = ["a gripping , beautifully acted film", "dull and lifeless"]
    assert main(["predict", str(tiny_run), *texts, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    model = load_bert_classifier(tiny_run / "best")  # its own tokenizer path
    batch = model.tokenizer(texts)
    with torch.no_grad():
        probs = torch.softmax(model(batch.input_ids, batch.attention_mask).logits, -1)  # (2, C)
    for row, p in zip(got, probs.tolist(), strict=True):
        assert [row["probs"]["negative"], row["probs"]["positive"]] == pytest.approx(p, abs=1e-5)
        assert row["label"] == ["negative", "positive"][max(range(2), key=p.__getitem__)]


def test_unfrozen_word_embeddings_are_trained(tiny_bert, tmp_path, data_dir):
    out = tmp_path / "run"
    assert main(["train", "--init", str(tiny_bert), *QUICK, "--max-steps", "2",
                 "--no-freeze-word-embeddings", "--out", str(out)]) == 0
    pretrained = load_file(str(tiny_bert / "model.safetensors"))
    tuned = load_checkpoint(out / "last").weights
    assert not torch.equal(tuned[WORD_EMBEDDING],
                           pretrained["embeddings.word_embeddings.weight"])


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tiny_bert, tmp_path, data_dir):
    class Crash(Callback):
        def on_step_end(self, trainer, info):
            if info.step == 5:
                raise RuntimeError("simulated crash")

    pretrained = tmp_path / "bert"  # removed before resuming: the run folder is enough
    shutil.copytree(tiny_bert, pretrained)
    finetune = FinetuneConfig(str(pretrained), head_dropout=0.3)
    data = DataConfig(train_limit=160)
    train = TrainConfig(**{**FINETUNE_DEFAULTS, "batch_size": 16, "lr": 1e-3,
                           "save_every": 3, "epochs": 2})  # 20 steps, dropout on
    finetune_classifier(tmp_path / "full", finetune, data, train, RunControl(progress=False))
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune_classifier(tmp_path / "cut", finetune, data, train,
                            RunControl(progress=False, callbacks=[Crash()]))
    assert load_checkpoint(tmp_path / "cut" / "last", with_state=True).trainer_state[
        "progress"]["global_step"] == 3
    shutil.rmtree(pretrained)
    # The CLI finds the fine-tuning settings in the run folder; the pretrained folder is not read.
    assert main(["train", "--out", str(tmp_path / "cut"), "--resume", "--quiet"]) == 0
    full = load_checkpoint(tmp_path / "full" / "last").weights
    resumed = load_checkpoint(tmp_path / "cut" / "last").weights
    assert full.keys() == resumed.keys()
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=1e-6, msg=name)


def test_time_limit_stops_training_then_evaluates_and_saves(tiny_bert, tmp_path, data_dir):
    class Slow(Callback):
        def on_step_end(self, trainer, info):
            time.sleep(0.2)

    train = TrainConfig(**{**FINETUNE_DEFAULTS, "batch_size": 16, "time_limit": 0.5})
    run = finetune_classifier(tmp_path / "run", FinetuneConfig(str(tiny_bert)),
                              DataConfig(train_limit=256), train,
                              RunControl(progress=False, callbacks=[Slow()]))
    assert run.result.out_of_time and 1 <= run.result.global_step < 256 // 16
    assert run.result.best_val is not None and run.result.best_val.n == 872
    assert json.loads((tmp_path / "run" / "result.json").read_text())["out_of_time"] is True


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1.0, ValueError),
                                          ("60", TypeError)])
def test_time_limit_must_be_positive_seconds(value, error):
    with pytest.raises(error, match="time_limit"):
        TrainConfig(time_limit=value)


# --- errors -----------------------------------------------------------------------------------


def _fails(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_unknown_init_name_is_a_clear_error(tmp_path, capsys):
    err = _fails(["train", "--init", "no-such-model", "--out", str(tmp_path / "r")], capsys)
    assert "unknown pretrained model 'no-such-model'" in err and "all-MiniLM-L6-v2" in err
    assert not (tmp_path / "r").exists()


def test_init_folder_without_tokenizer_names_the_missing_file(tiny_bert, tmp_path, capsys):
    folder = tmp_path / "partial"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(tiny_bert / name, folder / name)
    err = _fails(["train", "--init", str(folder), "--out", str(tmp_path / "r")], capsys)
    assert "lacks tokenizer.json" in err


def test_scratch_model_options_are_refused_with_init(tiny_bert, tmp_path, capsys):
    err = _fails(["train", "--init", str(tiny_bert), "--d-model", "64", "--heads", "2",
                  "--out", str(tmp_path / "r")], capsys)
    assert "--d-model, --heads" in err and "--init" in err


def test_finetune_options_need_init(tmp_path, capsys):
    err = _fails(["train", "--head-pooling", "pooler", "--out", str(tmp_path / "r")], capsys)
    assert "--head-pooling" in err and "--init" in err


def test_bad_finetune_option_names_it(tiny_bert, tmp_path, capsys):
    err = _fails(["train", "--init", str(tiny_bert), "--max-length", "2",
                  "--out", str(tmp_path / "r")], capsys)
    assert "max_length must be an integer >= 3" in err


def test_resume_with_another_init_is_refused(tiny_run, tiny_bert, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(tiny_bert, other)
    err = _fails(["train", "--init", str(other), "--out", str(tiny_run), "--resume"], capsys)
    assert "cannot resume with different settings: init.init" in err


# --- the real model ---------------------------------------------------------------------------


@pytest.mark.slow
def test_minilm_finetuned_on_a_slice_of_sst2_is_far_above_chance(tmp_path, capsys, data_dir):
    out = tmp_path / "minilm"
    assert main(["train", "--init", "all-MiniLM-L6-v2", "--data", "sst2",
                 "--train-limit", "4000", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--split", "dev", "--json"]) == 0
    dev = json.loads(capsys.readouterr().out)
    assert dev["n"] == 872 and dev["accuracy"] > 0.80  # chance is ~0.51
