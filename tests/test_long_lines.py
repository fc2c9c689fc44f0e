"""A huge line in a translation data set's training split never reaches the tokenizer trainer
(whose time grows with the square of a line's length, and which Ctrl-C cannot stop): training
pairs with a side over MAX_TRAIN_CHARS characters are dropped first, and counted."""

from __future__ import annotations

import pytest

from attnlab.tasks.runs import RunControl
from attnlab.tasks.translation.config import TranslationDataConfig
from attnlab.tasks.translation.data import MAX_TRAIN_CHARS, within_chars
from attnlab.tasks.translation.pipeline import train_translator
from attnlab.text import TextTokenizer
from attnlab.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pairs_with_a_side_over_the_limit_are_dropped_and_counted():
    long = "x" * (MAX_TRAIN_CHARS + 1)
    sources = ["Ein Hund.", long, "Zwei Katzen.", "a" * MAX_TRAIN_CHARS]
    targets = ["A dog.", "Long.", long, "b" * MAX_TRAIN_CHARS]
    kept_sources, kept_targets, dropped = within_chars(sources, targets)
    assert (kept_sources, kept_targets, dropped) == (
        ["Ein Hund.", "a" * MAX_TRAIN_CHARS], ["A dog.", "b" * MAX_TRAIN_CHARS], 2)


def test_no_real_sentence_reaches_the_limit(data_dir):
    for name in ("train.de", "train.en"):
        lines = (data_dir / "multi30k" / name).read_text(encoding="utf-8").splitlines()
        assert max(map(len, lines)) < MAX_TRAIN_CHARS // 3


def _with_a_huge_line(folder, data_dir, split: str):
    """64 Multi30k training pairs and 8 dev pairs, with a 1 MB line in ``split`` (the 11th
    training pair, or the last dev pair)."""
    folder.mkdir()
    for lang in ("de", "en"):
        lines = (data_dir / "multi30k" / f"train.{lang}").read_text(
            encoding="utf-8").splitlines()[:64]
        huge = " ".join(["Wort" if lang == "de" else "word"] * 200_000)  # 1 MB
        train, dev = lines, lines[:8]
        if split == "train":
            train = [*lines[:10], huge, *lines[10:]]
        else:
            dev = [*dev, huge]
        (folder / f"train.{lang}").write_text("\n".join(train) + "\n", encoding="utf-8")
        (folder / f"val.{lang}").write_text("\n".join(dev) + "\n", encoding="utf-8")
    return folder


def test_a_megabyte_line_is_dropped_before_the_tokenizer_trains(tmp_path, monkeypatch, capsys,
                                                                 data_dir):
    folder = _with_a_huge_line(tmp_path / "data", data_dir, "train")
    train = TextTokenizer.train.__func__
    seen = []

    def spy(cls, texts, *args, **kwargs):
        texts = list(texts)
        seen.append(max(map(len, texts)))
        assert seen[-1] <= MAX_TRAIN_CHARS, "a huge line reached the tokenizer trainer"
        return train(cls, texts, *args, **kwargs)

    monkeypatch.setattr(TextTokenizer, "train", classmethod(spy))
    data = TranslationDataConfig(source=str(folder), vocab_size=200, dev_bleu_sentences=0)
    model = {"d_model": 16, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1,
             "d_ff": 32}
    run = train_translator(tmp_path / "run", data, model,
                           TrainConfig(max_steps=1, batch_size=16, eval_steps=None),
                           RunControl(progress=True))
    assert seen and run.dropped >= 1
    assert f"dropped 1 of 65 training pairs longer than {MAX_TRAIN_CHARS:,} characters" in \
        capsys.readouterr().err


def test_a_megabyte_line_in_the_dev_split_is_left_out_of_the_dev_loss(tmp_path, capsys,
                                                                      data_dir):
    """It used to fail at the first evaluation: ``input_ids has length 389913 ... exceed
    max_len``, naming neither file nor line. Now it is left out of the dev loss, and said."""
    folder = _with_a_huge_line(tmp_path / "data", data_dir, "val")
    data = TranslationDataConfig(source=str(folder), vocab_size=200, dev_bleu_sentences=2)
    model = {"d_model": 16, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1,
             "d_ff": 32, "max_len": 64}
    run = train_translator(tmp_path / "run", data, model,
                           TrainConfig(max_steps=2, batch_size=16, eval_steps=2),
                           RunControl(progress=True))
    assert run.result.best_val is not None
    assert "dropped 1 of 9 val pairs (dev loss) longer than 64 tokens" in capsys.readouterr().err
