"""``attnlab faithfulness`` end to end: on a classifier trained in seconds on a task where one
keyword decides the label (a gradient method must beat random, and the same ranking reversed
must fall below it), on the tiny translation run (the JSON's shape and sane values), and its
errors, each one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from attnlab.cli import main
from attnlab.inspect.attribution import attribute
from attnlab.inspect.faithfulness import measure_input
from attnlab.inspect.subject import load_subject
from attnlab.io import save_checkpoint
from attnlab.models.classifier import ClassifierConfig, TextClassifier
from attnlab.text import TextTokenizer
from tiny_translation import make_tiny_translation_run

pytestmark = pytest.mark.usefixtures("one_thread")

FILLERS = ("the a film story actors plot was is and of it this that scene music ending cast "
           "script camera light").split()
KEYWORDS = ("bad", "good")  # label 0, label 1: the only words that decide
SCALARS = ("comprehensiveness", "sufficiency", "naopc_comprehensiveness", "naopc_sufficiency",
           "kendall_tau_loo", "seconds")


def keyword_sentences(n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` sentences of 4-9 filler words with one keyword somewhere, and its label."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randrange(2)
        words = [rng.choice(FILLERS) for _ in range(rng.randint(4, 9))]
        words.insert(rng.randint(0, len(words)), KEYWORDS[label])
        out.append((" ".join(words), label))
    return out


@pytest.fixture(scope="module")
def keyword_run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-layer classifier trained (full-batch Adam, a few seconds) on keyword sentences;
    the run folder and a data folder with a dev split of 24 unseen sentences."""
    folder = tmp_path_factory.mktemp("keyword")
    train = keyword_sentences(256, seed=0)
    torch.manual_seed(0)
    tokenizer = TextTokenizer.train([s for s, _ in train], vocab_size=64, kind="word",
                                    max_length=16)
    config = ClassifierConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2,
                              n_layers=1, d_ff=32, max_len=16, dropout=0.0, word_dropout=0.0)
    model = TextClassifier(config)
    encodings = tokenizer.tokenizer.encode_batch([s for s, _ in train])
    L = max(len(e.ids) for e in encodings)
    ids = torch.tensor([e.ids + [0] * (L - len(e.ids)) for e in encodings])  # (B, L)
    labels = torch.tensor([label for _, label in train])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        model(ids, (ids != 0).long(), labels).loss.backward()
        optimizer.step()
    model.eval()
    run = save_checkpoint(folder / "run", model, {"model_type": "classifier",
                                                  "model": config.to_dict(),
                                                  "labels": ["negative", "positive"]},
                          tokenizer=tokenizer)
    data = folder / "data"
    data.mkdir()
    rows = "".join(f"{label}\t{text}\n" for text, label in keyword_sentences(24, seed=1))
    (data / "dev.tsv").write_text("label\tsentence\n" + rows, encoding="utf-8")
    return run, data


def faithfulness_json(capsys, *argv: str) -> dict:
    assert main(["faithfulness", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_gradient_method_beats_random_and_its_reverse_does_not(keyword_run, capsys,
                                                                  tmp_path):
    run, data = keyword_run
    out = tmp_path / "faith"
    result = faithfulness_json(capsys, str(run), "--data", str(data), "--split", "dev",
                               "--methods", "integrated_gradients,grad_input", "attention",
                               "--steps", "16", "--out", str(out))
    methods = result["methods"]
    assert set(methods) == {"integrated_gradients", "grad_input", "attention", "random",
                            "leave_one_out"}
    assert result["n"] == 24 and result["bins"] == [1, 5, 10, 20, 50]
    assert result["accuracy_of_targets"] == 1.0  # the model learnt the keyword
    floor = methods["random"]
    assert floor["seeds"] == [0, 1, 2, 3, 4] and floor["spread"]["comprehensiveness"] > 0
    beyond = floor["comprehensiveness"] + 2 * floor["spread"]["comprehensiveness"]
    ig = methods["integrated_gradients"]
    assert ig["comprehensiveness"] > beyond
    assert ig["sufficiency"] < floor["sufficiency"]
    assert ig["kendall_tau_loo"] > 0.2 and methods["leave_one_out"]["kendall_tau_loo"] == 1.0
    for name, m in methods.items():
        assert 0.0 <= m["naopc_comprehensiveness"] <= 1.0, name
        assert len(m["deletion_curve"]) == len(m["insertion_curve"]) == 11
        assert m["deletion_curve"][-1] == pytest.approx(m["insertion_curve"][0])  # specials
    # the files helper views read
    assert json.loads((out / "faithfulness.json").read_text())["methods"].keys() == \
        methods.keys()
    report = (out / "report.md").read_text()
    assert "Most faithful by comprehensiveness" in report and "Total time" in report
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"

    # the same scores reversed: the keyword last, comprehensiveness below the random floor
    subject = load_subject(run)
    texts = [line.split("\t")[1] for line in
             (data / "dev.tsv").read_text().splitlines()[1:]]
    reversed_comp, random_comp = [], []
    for text in texts:
        decisions = subject.decisions(text)
        ig_scores = attribute(subject, [decisions], method="integrated_gradients",
                              steps=16)[0].scores
        noise = attribute(subject, [decisions], method="random")[0].scores
        found = measure_input({"reversed": -ig_scores, "random": noise}, decisions.removable,
                              decisions.probability, reference=None, beam=0)
        reversed_comp.append(found["reversed"].comprehensiveness)
        random_comp.append(found["random"].comprehensiveness)
    assert sum(reversed_comp) / len(texts) < floor["comprehensiveness"]
    assert sum(reversed_comp) < sum(random_comp)


def test_rerun_into_its_own_folder_and_refusals(keyword_run, capsys, tmp_path):
    run, data = keyword_run
    common = [str(run), "--data", str(data), "--split", "dev", "--methods", "grad_input",
              "--limit", "3", "--seeds", "2", "--naopc-beam", "0"]
    out = tmp_path / "f"
    assert main(["faithfulness", *common, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| grad_input |" in printed and "wrote" in printed
    result = json.loads((out / "faithfulness.json").read_text())
    assert result["n"] == 3 and result["methods"]["grad_input"]["naopc_comprehensiveness"] \
        is None
    assert main(["faithfulness", *common, "--out", str(out)]) == 0  # its own output: replaced
    capsys.readouterr()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    cases = [
        (["--out", str(other)], "already holds other files"),
        (["--methods", "telepathy"], "--methods: unknown method 'telepathy'"),
        (["--limit", "0"], "--limit must be >= 1, got 0"),
        (["--split", "nosuch"], "nosuch"),
        (["--steps", "0"], "--steps must be >= 1"),
    ]
    for extra, message in cases:
        assert main(["faithfulness", *common, *extra]) == 2, extra  # the last --limit counts
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert (other / "notes.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory, data_dir) -> Path:
    if not (data_dir / "multi30k" / "train.de").exists():
        pytest.skip("Multi30k not found")
    return make_tiny_translation_run(tmp_path_factory.mktemp("mt") / "run")


@pytest.mark.slow
def test_translation_faithfulness_has_the_shape_and_sane_values(translation_run, capsys,
                                                                 tmp_path):
    result = faithfulness_json(capsys, str(translation_run), "--data", "multi30k", "--split",
                               "test_2016_flickr", "--limit", "4", "--steps", "8", "--seeds",
                               "2", "--out", str(tmp_path / "f"))
    assert result["measure"] == "log_probability" and result["n"] == 4
    assert result["split"] == "test_2016_flickr"
    assert set(result["methods"]) == {"attention", "attention_grad", "grad_input",
                                      "integrated_gradients", "random", "leave_one_out"}
    for name, m in result["methods"].items():
        for key in SCALARS:
            assert m[key] is not None and m[key] == m[key], (name, key)  # present, not NaN
        assert 0.0 <= m["naopc_comprehensiveness"] <= 1.0
        assert -1.0 <= m["kendall_tau_loo"] <= 1.0
        assert all(0.0 <= p <= 1.0 for p in m["deletion_curve"] + m["insertion_curve"])
    assert result["methods"]["leave_one_out"]["kendall_tau_loo"] == pytest.approx(1.0)
    # deleting the tokens leave-one-out ranks first hurts more than deleting random ones
    assert result["methods"]["leave_one_out"]["comprehensiveness"] > \
        result["methods"]["random"]["comprehensiveness"]
