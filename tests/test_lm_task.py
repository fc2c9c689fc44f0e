"""The language-model task (``--task lm``) on a tiny text: windows and splits, a run trained
through the command line, evaluate's figures against a hand computation, generate (seeded,
greedy against a hand loop, past the context), exact resume, and the inspection commands on
the run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from attnlab.cli import main
from attnlab.errors import InputError
from attnlab.io.checkpoint import load_checkpoint
from attnlab.io.registry import load_model
from attnlab.tasks.lm.config import LMDataConfig
from attnlab.tasks.lm.data import WindowBatches, load_lm_text
from attnlab.tasks.lm.pipeline import train_lm
from attnlab.tasks.lm.use import evaluate_lm
from attnlab.tasks.runs import RunControl
from attnlab.train import Callback, TrainConfig

LINES = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
         "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to "
         "famish?\n\nAll:\nResolved. resolved.\n\n")
TEXT = LINES * 12  # 2,100 characters
CUT = round(len(TEXT) * 0.9)  # 1,890 characters train, 210 validate
CONTEXT = 16
TINY = ["--context", str(CONTEXT), "--d-model", "32", "--heads", "2", "--layers", "2",
        "--batch-size", "8", "--max-steps", "20", "--lr", "0.01", "--time-limit", "none",
        "--quiet"]
TINY_MODEL = {"d_model": 32, "n_heads": 2, "n_layers": 2}


def tiny_train(**changes) -> TrainConfig:
    return TrainConfig(**{"batch_size": 8, "epochs": 1, "lr": 1e-2, "label_smoothing": 0.0,
                          "ema_decay": None, "patience": None, "eval_steps": 5,
                          "weight_decay": 0.1, "device": "cpu", **changes})


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(text_file):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = text_file.parent / "run"
    try:
        assert main(["train", "--task", "lm", "--data", str(text_file), *TINY,
                     "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def hand_scores(model, ids: torch.Tensor, context: int) -> tuple[float, int, list[int]]:
    """Total nats over the windows starting 0, C, 2C, ... below N - C - 1 (the peer's scoring),
    the tokens scored, and the scored labels."""
    total, labels = 0.0, []
    with torch.no_grad():
        for s in range(0, len(ids) - context - 1, context):
            x, y = ids[s:s + context], ids[s + 1:s + context + 1]
            logp = torch.log_softmax(model(x[None])[0].double(), -1)  # (C, V)
            total -= float(logp[torch.arange(context), y].sum())
            labels += y.tolist()
    return total, len(labels), labels


# --- data -------------------------------------------------------------------------------------


def test_one_file_splits_by_position_and_a_folder_by_name(text_file, tmp_path):
    text = load_lm_text(LMDataConfig(source=str(text_file)))
    assert (text.train, text.valid, text.test) == (TEXT[:CUT], TEXT[CUT:], None)
    assert f"{CUT:,}" in text.about and "10%" in text.about
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text(split * 40, encoding="utf-8")
    text = load_lm_text(LMDataConfig(source=str(tmp_path)))
    assert (text.train, text.valid, text.test) == ("train" * 40, "valid" * 40, "test" * 40)
    (tmp_path / "valid.txt").unlink()
    with pytest.raises(InputError, match="no valid.txt"):
        load_lm_text(LMDataConfig(source=str(tmp_path)))
    with pytest.raises(InputError, match="not found"):
        load_lm_text(LMDataConfig(source=str(tmp_path / "nothing")))
    with pytest.raises(InputError, match="tokenizer must be one of"):
        LMDataConfig(tokenizer="bpe")


def test_windows_shift_by_one_and_repeat_per_seed_and_epoch():
    ids = torch.arange(1000)
    batches = WindowBatches(ids, 10, 4, seed=3)
    assert len(batches) == len(range(9, 1000 - 11, 10)) // 4
    first = list(batches)
    assert len(first) == len(batches)
    for batch in first:
        assert batch["input_ids"].shape == batch["labels"].shape == (4, 10)
        assert torch.equal(batch["labels"], batch["input_ids"] + 1)  # the next token
        assert torch.equal(batch["input_ids"][:, 1:], batch["input_ids"][:, :-1] + 1)
    starts = torch.cat([b["input_ids"][:, 0] for b in first])
    assert len(set((starts % 10).tolist())) == 1  # one offset per epoch, a window every C
    assert len(set(starts.tolist())) == len(starts)  # no window twice
    again = WindowBatches(ids, 10, 4, seed=3)
    assert all(torch.equal(a["input_ids"], b["input_ids"])
               for a, b in zip(first, again, strict=True))
    again.set_epoch(1)
    assert not torch.equal(next(iter(again))["input_ids"], first[0]["input_ids"])
    dev = list(WindowBatches(ids, 10, 4, shuffle=False))
    dev_starts = torch.cat([b["input_ids"][:, 0] for b in dev])
    assert dev_starts.tolist() == list(range(0, 1000 - 11, 10))  # the peer's windows
    with pytest.raises(InputError, match="fewer than context"):
        WindowBatches(torch.arange(11), 10, 1)


# --- train and evaluate -----------------------------------------------------------------------


def test_evaluate_matches_a_hand_computation(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    loaded = load_model(run)
    valid = TEXT[CUT:]
    ids = torch.tensor(loaded.tokenizer.encode([valid], add_special_tokens=False,
                                               max_length=len(valid))[0])
    assert len(ids) == len(valid)  # one token per character
    nats, tokens, _ = hand_scores(loaded.model, ids, CONTEXT)
    assert got["tokens"] == got["units"] == tokens == (len(valid) - CONTEXT - 2) // CONTEXT \
        * CONTEXT + CONTEXT
    assert got["loss"] == pytest.approx(nats / tokens, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(nats / tokens), rel=1e-5)
    assert got["bits_per_char"] == got["bits"] == pytest.approx(nats / tokens / math.log(2),
                                                                rel=1e-5)
    assert got["unit"] == "char"
    # in-context score: mean loss at each window's last position minus at position C/8
    late, early = [], []
    with torch.no_grad():
        for start in range(0, len(ids) - CONTEXT - 1, CONTEXT):
            x, y = ids[start:start + CONTEXT], ids[start + 1:start + CONTEXT + 1]
            logp = torch.log_softmax(loaded.model(x[None])[0].double(), -1)  # (C, V)
            late.append(-float(logp[CONTEXT - 1, y[CONTEXT - 1]]))
            early.append(-float(logp[CONTEXT // 8, y[CONTEXT // 8]]))
    assert got["in_context"] == pytest.approx(sum(late) / len(late) - sum(early) / len(early),
                                              abs=1e-5)
    # the dev score of the run is the same figure
    best = json.loads((run / "result.json").read_text())["best_val"]
    assert best["loss"] == pytest.approx(got["loss"], rel=1e-6)
    assert main(["evaluate", str(run), "--split", "test"]) == 2
    assert "test.txt" in capsys.readouterr().err


def test_byte_bpe_scores_bits_per_byte(tmp_path, text_file):
    data = LMDataConfig(source=str(text_file), tokenizer="byte-bpe", vocab_size=300,
                        context=CONTEXT)
    trained = train_lm(tmp_path / "bpe", data, TINY_MODEL, tiny_train(max_steps=5),
                       RunControl(progress=False))
    metrics = evaluate_lm(tmp_path / "bpe")
    loaded = load_model(tmp_path / "bpe")
    valid = TEXT[CUT:]
    ids = torch.tensor(loaded.tokenizer.tokenizer.encode(valid).ids)
    assert len(ids) < len(valid)  # merges: fewer tokens than characters
    nats, tokens, labels = hand_scores(loaded.model, ids, CONTEXT)
    n_bytes = len(loaded.tokenizer.decode(labels).encode("utf-8"))  # ASCII text: exact
    assert metrics.unit == "byte" and metrics.units == n_bytes and metrics.tokens == tokens
    assert metrics.bits == pytest.approx(nats / (math.log(2) * n_bytes), rel=1e-5)
    assert metrics.to_dict()["bits_per_byte"] == metrics.bits
    assert trained.model_config.vocab_size == 300


@pytest.mark.parametrize("repeat_share", [0.0, 0.5])
def test_resume_reaches_the_uninterrupted_weights(tmp_path, text_file, repeat_share):
    class Crash(Callback):
        def on_step_end(self, trainer, info):
            if info.step == 7:
                raise RuntimeError("simulated crash")

    data = LMDataConfig(source=str(text_file), context=CONTEXT, repeat_share=repeat_share)
    train = tiny_train(epochs=2, save_every=5)
    full = train_lm(tmp_path / "full", data, TINY_MODEL, train, RunControl(progress=False))
    assert full.result.global_step == 2 * (len(range(CONTEXT - 1, CUT - CONTEXT - 1,
                                                     CONTEXT)) // 8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_lm(tmp_path / "cut", data, TINY_MODEL, train,
                 RunControl(progress=False, callbacks=[Crash()]))
    assert load_checkpoint(tmp_path / "cut" / "last").config["train"]["save_every"] == 5
    resumed = train_lm(tmp_path / "cut", data, TINY_MODEL, train, RunControl(resume=True,
                                                                            progress=False))
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert resumed.result.best_val == full.result.best_val


def test_without_a_batch_size_the_windows_decide_it(tmp_path, text_file):
    """~117 training windows make too few batches of 128 or 64: the run takes batches of 32,
    step for step the run given --batch-size 32."""
    data = LMDataConfig(source=str(text_file), context=CONTEXT)
    auto = train_lm(tmp_path / "auto", data, TINY_MODEL, tiny_train(batch_size=None),
                    RunControl(progress=False))
    given = train_lm(tmp_path / "given", data, TINY_MODEL, tiny_train(batch_size=32),
                     RunControl(progress=False))
    assert auto.result.global_step == given.result.global_step > 0
    for name, tensor in given.model.state_dict().items():
        assert torch.equal(tensor, auto.model.state_dict()[name]), name


def test_model_options_fixed_by_the_data_are_refused(tmp_path, text_file):
    data = LMDataConfig(source=str(text_file), context=CONTEXT)
    with pytest.raises(InputError, match="context"):
        train_lm(tmp_path / "x", data, {"context": 8}, tiny_train())
    assert not (tmp_path / "x").exists()


# --- generate ---------------------------------------------------------------------------------


def generated(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(["generate", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_generate_is_seeded_and_greedy_is_the_argmax(run, capsys):
    a = generated(capsys, run, "All:", "--max-new-tokens", "10", "--seed", "1")
    b = generated(capsys, run, "All:", "--max-new-tokens", "10", "--seed", "1")
    c = generated(capsys, run, "All:", "--max-new-tokens", "10", "--seed", "2",
                  "--temperature", "3.0")
    assert a == b and a["tokens"] == 10 and len(a["continuation"]) == 10
    assert c["continuation"] != a["continuation"]
    greedy = generated(capsys, run, "All:", "--max-new-tokens", "10", "--greedy")
    loaded = load_model(run)
    ids = loaded.tokenizer.encode(["All:"])[0]
    with torch.no_grad():  # the reference: the whole text again at each step, no cache
        for _ in range(10):
            ids.append(int(loaded.model(torch.tensor([ids]))[0, -1].argmax()))
    assert greedy["continuation"] == loaded.tokenizer.decode(ids[4:])
    assert greedy["prompt_tokens"] == 4


def test_generate_slides_past_the_context(run, capsys):
    long = generated(capsys, run, "First", "--max-new-tokens", str(3 * CONTEXT), "--greedy")
    assert long["tokens"] == 3 * CONTEXT and len(long["continuation"]) == 3 * CONTEXT
    cut = generated(capsys, run, TEXT[:100], "--max-new-tokens", "5", "--seed", "0")
    assert cut["prompt_tokens"] == CONTEXT - 1 and cut["tokens"] == 5
    assert main(["generate", str(run), "x", "--top-p", "0"]) == 2
    assert "top_p must be" in capsys.readouterr().err


# --- inspection -------------------------------------------------------------------------------


def test_inspection_commands_open_the_run(run, capsys):
    capsys.readouterr()
    assert main(["show", str(run), "First Citizen"]) == 0
    assert "next:" in capsys.readouterr().out
    assert main(["explain", str(run), "speak, speak", "--layer", "1", "--head", "0", "--token",
                 "k", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    query = obj["query_index"]
    assert obj["tokens"] == list("speak, speak") and obj["tokens"][query] == "k"
    assert obj["mask"] == [1] * (query + 1) + [0] * (len(obj["tokens"]) - query - 1)
    assert sum(obj["weights"]) == pytest.approx(1.0, abs=1e-5)
    assert main(["heads", str(run), "--roles", "--json", "--repeat-length", "6",
                 "--sequences", "2"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert len(table["heads"]) == 2 * 2
    assert all(head["scores"]["next"] == 0 for head in table["heads"])  # causal heads


def test_generate_greedy_on_a_hugging_face_gpt2_folder(tmp_path, capsys):
    """``attnlab generate`` on a tiny random GPT-2 folder (written by transformers, with a
    word-level tokenizer.json) continues as transformers' own greedy ``generate``."""
    transformers = pytest.importorskip("transformers")
    vocab = {w: i for i, w in enumerate(["<|endoftext|>", *(f"w{i}" for i in range(1, 40))])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(["<|endoftext|>"])
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32,
                                     vocab_size=40, bos_token_id=0, eos_token_id=0,
                                     initializer_range=0.3)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    prompt = "w3 w1 w4 w1 w5"
    got = generated(capsys, tmp_path, prompt, "--max-new-tokens", "8", "--greedy")
    ids = torch.tensor([tokenizer.encode(prompt).ids])
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=8, pad_token_id=0)
    assert got["continuation"].split() == tokenizer.decode(out[0, 5:].tolist()).split()
    assert got["prompt_tokens"] == 5 and len(got["continuation"].split()) == 8  # no end token
