"""The translation task: pair batches, the token-level loss, training on the task-agnostic loop,
exact resume, BLEU from sacreBLEU, and the commands (train --task translation, evaluate,
translate). Tiny models on slices of Multi30k, so that the tests stay fast."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attnlab.cli import main
from attnlab.io import load_checkpoint
from attnlab.models.seq2seq import Seq2SeqTransformer
from attnlab.tasks.runs import RunControl
from attnlab.tasks.translation.config import (
    DEFAULT_RECIPE,
    TranslationDataConfig,
    recipe_options,
)
from attnlab.tasks.translation.data import IGNORE_INDEX, PairBatches, encode_pairs
from attnlab.tasks.translation.metrics import score_bleu
from attnlab.tasks.translation.pipeline import load_pairs, train_translator
from attnlab.tasks.translation.training import TranslationLoss
from attnlab.tasks.translation.translator import Translator
from attnlab.text import TextTokenizer
from attnlab.train import Callback, TrainConfig
from conftest import run_torchrun

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--d-model", "32", "--heads", "2", "--encoder-layers", "1", "--decoder-layers", "1",
        "--d-ff", "64"]
QUICK = ["--task", "translation", "--data", "multi30k", "--train-limit", "512",
         "--vocab-size", "600", "--dev-bleu-sentences", "16", "--batch-size", "32",
         "--quiet", *TINY]


@pytest.fixture(scope="module")
def tokenizer(data_dir) -> TextTokenizer:
    lines = (data_dir / "multi30k" / "train.de").read_text(encoding="utf-8").splitlines()[:2000]
    lines += (data_dir / "multi30k" / "train.en").read_text(encoding="utf-8").splitlines()[:2000]
    return TextTokenizer.train(lines, 500, kind="bpe")


def test_pair_batches_shift_the_target_and_ignore_padding(tokenizer):
    sources, targets = ["Ein Hund.", "Zwei Männer laufen schnell."], ["A dog.", "Two men run."]
    pairs = encode_pairs(tokenizer, sources, targets)
    batch = next(iter(PairBatches(pairs, 2, shuffle=False)))
    bos, eos = 2, 3
    for row in range(2):
        full = pairs.targets[row]  # [BOS] pieces [EOS]
        n = len(full) - 1
        assert batch["decoder_input_ids"][row, :n].tolist() == full[:-1]
        assert batch["labels"][row, :n].tolist() == full[1:]
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert batch["decoder_attention_mask"][row].sum() == n
    assert batch["decoder_input_ids"][:, 0].tolist() == [bos, bos]
    assert all(eos in row for row in batch["input_ids"].tolist())  # the source ends in [EOS]
    assert (batch["input_ids"] != bos).all()  # ... and has no [BOS]
    assert (batch["labels"] != IGNORE_INDEX).sum() == sum(len(t) - 1 for t in pairs.targets)


def test_token_batches_fill_the_budget_by_the_longer_side(data_dir, tokenizer):
    root = data_dir / "multi30k"
    sources = (root / "val.de").read_text(encoding="utf-8").splitlines()
    targets = (root / "val.en").read_text(encoding="utf-8").splitlines()
    pairs = encode_pairs(tokenizer, sources, targets)

    def real_share(batches):  # real tokens among all positions of both sides
        real = padded = 0
        for batch in batches:
            real += int(batch["attention_mask"].sum() + batch["decoder_attention_mask"].sum())
            padded += batch["input_ids"].numel() + batch["decoder_input_ids"].numel()
        return real / padded

    batches = PairBatches(pairs, 32, max_tokens=600, seed=1)
    rows = 0
    for batch in batches:
        width = max(batch["input_ids"].shape[1], batch["decoder_input_ids"].shape[1])
        assert batch["input_ids"].shape[0] * width <= 600
        rows += batch["input_ids"].shape[0]
    assert rows == len(sources)  # every pair once, none dropped
    sentence_batches = PairBatches(pairs, 32, seed=1)
    assert real_share(batches) > max(0.85, real_share(sentence_batches))


def test_the_default_recipe_batches_by_tokens_unless_a_batch_size_is_given():
    data, model, train = recipe_options(DEFAULT_RECIPE, {}, {}, {})
    assert data["batch_tokens"] == 1536 and train["epochs"] == 14
    assert train["lr"] == 2e-3 and train["decay_to_time_limit"]
    assert model == {"n_heads": 4, "d_ff": 512, "attn_dropout": 0.1}
    assert train["time_limit"] == 2700.0  # the goal's 45 minutes
    data, _, train = recipe_options(DEFAULT_RECIPE, {}, {}, {"batch_size": 32})
    assert data["batch_tokens"] is None and train["batch_size"] == 32
    data, _, _ = recipe_options(DEFAULT_RECIPE, {"batch_tokens": None}, {}, {"batch_size": 32})
    assert data["batch_tokens"] is None
    with pytest.raises(ValueError, match="give batch_size .* or batch_tokens .*, not both: got "
                                         "batch_size=32, batch_tokens=900"):
        recipe_options(DEFAULT_RECIPE, {"batch_tokens": 900}, {}, {"batch_size": 32})
    TrainConfig(**train)  # the recipe's training settings are valid


def test_translation_help_shows_the_recipes_defaults(capsys):
    """The defaults printed are what a run gets: the default recipe's for train, the small
    recipe's for the heads experiment, not the dataclasses' (TrainConfig's lr is 1e-3)."""
    expected = {("train",): {"lr": 0.002, "batch-tokens": 1536, "epochs": 14},
                ("experiment", "heads"): {"lr": 0.0015, "batch-tokens": None, "d-ff": 512}}
    for command, defaults in expected.items():
        with pytest.raises(SystemExit):
            main([*command, "--task", "translation", "--help"])
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
        for flag, value in defaults.items():
            # "--lr FLOAT help [default: x]": neither the usage line ("[--lr FLOAT]") nor examples
            shown = re.search(rf"--{flag} [A-Z]+ [^\[]*\[default: ([^\]]*)\]", out)
            assert shown and shown[1] == str(value), (command, flag, shown)


def test_batch_tokens_is_checked():
    with pytest.raises(ValueError, match=r"batch_tokens must be None or an integer >= "
                                         r"max_tokens \(100\), got 50"):
        TranslationDataConfig(batch_tokens=50)


def test_long_pairs_are_dropped_and_counted(tokenizer):
    pairs = encode_pairs(tokenizer, ["kurz", "sehr " * 50], ["short", "very " * 50],
                         max_tokens=20)
    assert pairs.dropped == 1 and pairs.kept == [0]


def test_the_loss_is_the_mean_over_real_target_tokens():
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[1, 2, 3, IGNORE_INDEX], [4, IGNORE_INDEX, IGNORE_INDEX,
                                                      IGNORE_INDEX]])
    batch = {"labels": labels, "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    loss = TranslationLoss(0.0)(type("Out", (), {"logits": logits})(), batch)
    real = [(0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 0, 4)]
    by_hand = -sum(F.log_softmax(logits[b, t], -1)[y] for b, t, y in real) / 4
    assert float(loss.value) == pytest.approx(float(by_hand), rel=1e-6)
    assert int(loss.examples) == 4 and int(loss.tokens) == 4 + 6


def test_bleu_is_sacrebleu_cased():
    assert score_bleu(["A dog runs ."], ["A dog runs ."]).bleu == pytest.approx(100.0)
    assert score_bleu(["a dog runs ."], ["A dog runs ."]).bleu < 100.0  # case counts


def test_train_evaluate_translate_through_the_command_line(tmp_path, capsys, data_dir):
    out = tmp_path / "de-en"
    assert main(["train", *QUICK, "--max-steps", "8", "--eval-steps", "4", "--out",
                 str(out)]) == 0
    for name in ("best", "last"):
        ckpt = load_checkpoint(out / name)
        assert ckpt.config["model_type"] == "seq2seq" and ckpt.tokenizer_path is not None
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [4, 8]
    assert {"loss", "accuracy", "bleu", "chrf"} <= evals[0].keys()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--split", "test_2016_flickr", "--json", "--out",
                 str(tmp_path / "hyp.txt")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"bleu", "chrf", "n", "signature"} and result["n"] == 1000
    assert "case:mixed" in result["signature"] and "tok:13a" in result["signature"]
    assert len((tmp_path / "hyp.txt").read_text(encoding="utf-8").splitlines()) == 1000
    assert main(["translate", str(out), "Ein Hund rennt.", "Zwei Männer.", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == ["Ein Hund rennt.", "Zwei Männer."]
    assert all(isinstance(x["translation"], str) and isinstance(x["tokens"], list)
               for x in lines)
    assert main(["translate", str(out), "Ein Hund.", "--beam", "3"]) == 0


@pytest.mark.slow
def test_two_processes_train_like_one_under_torchrun(tmp_path, data_dir):
    """torchrun with 2 gloo processes, each with its rows of every global batch (whose target
    token counts differ), ends with the weights and dev figures of one process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"),
           "ATTNLAB_DATA": str(data_dir)}
    weights, dev = {}, {}
    for n in (1, 2):
        out = tmp_path / f"n{n}"
        proc, out = run_torchrun(lambda folder, attempt, n=n: [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n),
            "--master_port", str(28500 + os.getpid() % 1000 + n + 7 * attempt), "-m",
            "attnlab.cli", "train", *QUICK, "--dropout", "0", "--attn-dropout", "0",
            "--max-steps", "6", "--eval-steps", "6", "--dev-bleu-sentences", "0", "--out",
            str(folder)], out, env=env, timeout=170)
        assert proc.returncode == 0, proc.stderr[-3000:]
        weights[n] = load_checkpoint(out / "last").weights
        dev[n] = json.loads((out / "result.json").read_text())["best_val"]
    for name, w1 in weights[1].items():
        if name.endswith("k_proj.bias"):  # its true gradient is 0 (a softmax ignores a shift
            continue  # of every score): Adam turns rounding noise into full-size steps
        torch.testing.assert_close(weights[2][name], w1, atol=2e-5, rtol=1e-4, msg=name)
    assert dev[2]["tokens"] == dev[1]["tokens"]  # every dev pair scored once over both ranks
    assert dev[2]["loss"] == pytest.approx(dev[1]["loss"], abs=1e-5)


@pytest.mark.parametrize("batch_tokens", [None, 600])
def test_resume_reaches_the_uninterrupted_weights(tmp_path, data_dir, batch_tokens):
    class Crash(Callback):
        def on_step_end(self, trainer, info):
            if info.step == 7:
                raise RuntimeError("simulated crash")

    data = TranslationDataConfig(train_limit=256, vocab_size=400, dev_bleu_sentences=4,
                                 batch_tokens=batch_tokens)
    model = {"d_model": 32, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1,
             "d_ff": 64}
    train = TrainConfig(epochs=1, batch_size=32, save_every=5, eval_steps=3, lr=1e-3,
                        ema_decay=None, patience=None, label_smoothing=0.1)
    full = train_translator(tmp_path / "full", data, model, train, RunControl(progress=False))
    if batch_tokens is not None:  # one epoch: as many steps as token batches
        train_set, _ = load_pairs(data)
        pairs = encode_pairs(TextTokenizer.load(tmp_path / "full" / "tokenizer.json"),
                             train_set.sources, train_set.targets, data.max_tokens)
        assert full.result.global_step == len(PairBatches(pairs, 32, max_tokens=batch_tokens))
        assert full.result.global_step != 256 // 32
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_translator(tmp_path / "cut", data, model, train,
                         RunControl(progress=False, callbacks=[Crash()]))
    resumed = train_translator(tmp_path / "cut", data, model, train,
                               RunControl(resume=True, progress=False))
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert resumed.result.best_val == full.result.best_val


def test_a_loaded_run_translates_as_the_trained_model(tmp_path, data_dir):
    data = TranslationDataConfig(train_limit=128, vocab_size=300, dev_bleu_sentences=0)
    model = {"d_model": 32, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1,
             "d_ff": 64}
    run = train_translator(tmp_path / "run", data, model,
                           TrainConfig(epochs=1, batch_size=32, ema_decay=None,
                                       eval_steps=None, patience=None),
                           RunControl(progress=False))
    loaded = Translator.load(tmp_path / "run" / "last")
    assert isinstance(loaded.model, Seq2SeqTransformer)
    for name, tensor in run.model.state_dict().items():  # last/ holds the final weights
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    in_memory = Translator(run.model.eval(), loaded.tokenizer)
    texts = ["Ein Mann fährt Fahrrad.", "Eine Frau.", "Zwei Hunde spielen im Schnee."]
    found = loaded.translate(texts, beam=3)
    assert [(t.ids, t.translation) for t in found] == \
        [(t.ids, t.translation) for t in in_memory.translate(texts, beam=3)]
    assert [t.ids for t in Translator.load(tmp_path / "run").translate(texts)] == \
        [t.ids for t in in_memory.translate(texts)]  # best/: the one evaluation, at the end
    best = load_checkpoint(tmp_path / "run" / "best")
    assert best.config["data"]["source_lang"] == "de" and run.dropped >= 0


@pytest.mark.slow
def test_a_tiny_model_overfits_32_pairs_to_bleu_100(tmp_path, data_dir):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for lang in ("de", "en"):
        lines = (data_dir / "multi30k" / f"train.{lang}").read_text(
            encoding="utf-8").splitlines()[:32]
        for split in ("train", "val"):
            (folder / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = TranslationDataConfig(source=str(folder), vocab_size=400, dev_bleu_sentences=32)
    model = {"d_model": 64, "n_heads": 4, "n_encoder_layers": 2, "n_decoder_layers": 2,
             "d_ff": 128, "dropout": 0.0}
    train = TrainConfig(epochs=150, batch_size=32, lr=3e-3, warmup_steps=20, ema_decay=None,
                        label_smoothing=0.0, patience=None, eval_steps=None, eval_every=50,
                        weight_decay=0.0)
    run = train_translator(tmp_path / "run", data, model, train, RunControl(progress=False))
    assert math.isclose(run.result.history[-1].val.bleu, 100.0, abs_tol=1e-6), \
        run.result.history[-1].val
