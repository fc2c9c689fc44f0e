"""Data: reading SST-2 and bad files, tokenizers, length-grouped batches."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
import torch

from attnlab.text import (
    DataFormatError,
    LengthGroupedBatches,
    TextTokenizer,
    TokenBudgetBatches,
    by_length,
    hub,
    load_split,
    pad_sequences,
)

# ---------------------------------------------------------------- reading SST-2


def test_sst2_splits_read_by_column_name(data_dir):
    train = load_split(data_dir / "sst2", "train")
    dev = load_split(data_dir / "sst2", "dev")
    # Row counts from the data README; the text column differs per split (sentence / content).
    assert len(train) == 67349 and len(dev) == 872
    assert dev.label_counts == {0: 428, 1: 444}
    assert train.texts[0] == "hide new secretions from the parental units"
    assert dev.texts[0] == "one long string of cliches ."
    assert train.skipped == [] and set(train.labels) == {0, 1}


def test_validation_is_an_alias_of_dev(data_dir):
    assert load_split(data_dir / "sst2", "validation").texts == \
        load_split(data_dir / "sst2", "dev").texts


def test_name_found_under_attnlab_data(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNLAB_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    ds = load_split("sst2", "test")
    assert len(ds) == 1821 and ds.source.endswith("test.tsv")


def test_name_found_under_parent_shared_data(monkeypatch, tmp_path):
    folder = tmp_path / "shared" / "data" / "toy"
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text("text,label\nfine,1\nbad,0\n")
    (tmp_path / "project").mkdir()
    monkeypatch.delenv("ATTNLAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path / "project")
    assert load_split("toy", "train").texts == ["fine", "bad"]


def test_missing_data_offline_says_what_to_pass(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "hub_available", lambda timeout=2.0: False)
    monkeypatch.setenv("ATTNLAB_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_split("nonexistent", "train")
    message = str(err.value)
    assert "--data" in message and "ATTNLAB_DATA" in message
    assert str(tmp_path / "nonexistent") in message


def test_hub_unavailable_without_datasets_package(monkeypatch):
    monkeypatch.setattr(hub.importlib.util, "find_spec", lambda name: None)
    assert hub.hub_available() is False


# ---------------------------------------------------------------- other formats


def test_csv_quoting_and_explicit_columns(tmp_path):
    (tmp_path / "train.csv").write_text('id,review,y\n1,"good, really ""good""",1\n2,meh,0\n')
    ds = load_split(tmp_path, "train", text_column="review", label_column="y")
    assert ds.texts == ['good, really "good"', "meh"] and ds.labels == [1, 0]


def test_jsonl_and_label_names(tmp_path):
    rows = [{"text": "great", "label": "pos"}, {"text": "awful", "label": "neg"}]
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_split(tmp_path, "validation", label_names=["neg", "pos"])
    assert ds.texts == ["great", "awful"] and ds.labels == [1, 0]


# ---------------------------------------------------------------- bad data


@pytest.mark.parametrize(
    "content, line, words",
    [
        ("label\tsentence\n1\tok\n2\tbad label\n", 3, "not a known class"),
        ("label\tsentence\n1\tok\n0\t   \n", 3, "empty text"),
        ("label\tsentence\n1\tok\n0\ttoo\tmany\n", 3, "expected 2 fields"),
        ("label\tsentence\nx\tok\n", 2, "not a known class"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "train.tsv"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=words) as err:
        load_split(tmp_path, "train")
    assert f"{path}:{line}:" in str(err.value)


def test_missing_column(tmp_path):
    (tmp_path / "train.tsv").write_text("label\tbody\n1\tok\n")
    with pytest.raises(DataFormatError, match="no text column"):
        load_split(tmp_path, "train")
    with pytest.raises(DataFormatError, match="no label column 'y'"):
        load_split(tmp_path, "train", text_column="body", label_column="y")


def test_undecodable_bytes_line_number(tmp_path):
    (tmp_path / "train.tsv").write_bytes(b"label\tsentence\n1\tok\n0\tbad \xff byte\n")
    with pytest.raises(DataFormatError, match=r"train.tsv:3: .*not valid UTF-8"):
        load_split(tmp_path, "train")


def test_skip_counts_every_bad_row(tmp_path):
    (tmp_path / "train.tsv").write_text("label\tsentence\n1\tok\n7\tbad\n0\t\n0\tfine\n")
    ds = load_split(tmp_path, "train", on_error="skip")
    assert ds.texts == ["ok", "fine"]
    assert len(ds.skipped) == 2 and ds.skipped[0].endswith("train.tsv:3: label '7' is not a "
                                                           "known class [0, 1]")
    assert "2 rows skipped" in ds.summary()


# ---------------------------------------------------------------- tokenizers


@pytest.fixture(scope="module")
def sst2_texts(data_dir):
    return load_split(data_dir / "sst2", "train").texts[:3000]


@pytest.mark.parametrize("kind", ["word", "wordpiece"])
def test_tokenizer_specials_lowercase_and_round_trip(sst2_texts, tmp_path, kind):
    tok = TextTokenizer.train(sst2_texts, vocab_size=2000, kind=kind)
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")] == [0, 1, 2, 3]
    assert tok.vocab_size <= 2000
    ids = tok.encode(["The FILM is Good .", "the film is good ."])
    assert ids[0] == ids[1] and ids[0][0] == 2 and ids[0][-1] == 3
    tok.save(tmp_path / "tokenizer.json")
    assert TextTokenizer.load(tmp_path).encode(sst2_texts[:50]) == tok.encode(sst2_texts[:50])


def test_wordpiece_splits_unseen_words_word_level_maps_to_unk(sst2_texts):
    text = ["filmmakingness"]
    word = TextTokenizer.train(sst2_texts, 2000, kind="word").encode(
        text, add_special_tokens=False)
    piece = TextTokenizer.train(sst2_texts, 2000, kind="wordpiece").encode(
        text, add_special_tokens=False)
    assert word == [[1]]
    assert 1 not in piece[0] and len(piece[0]) > 1


def test_encode_truncates_keeping_sep_and_pads(sst2_texts):
    tok = TextTokenizer.train(sst2_texts, 2000, kind="word")
    ids = tok.encode(["a b c d e f g h"], max_length=5)[0]
    assert len(ids) == 5 and ids[0] == 2 and ids[-1] == 3
    batch = tok(["good", "a very good film"])
    assert batch.input_ids.shape == batch.attention_mask.shape == (2, 6)
    assert batch.attention_mask.sum(1).tolist() == [3, 6]
    assert (batch.input_ids[batch.attention_mask == 0] == 0).all()


def test_tokenizer_errors(sst2_texts):
    with pytest.raises(ValueError, match="kind"):
        TextTokenizer.train(sst2_texts, kind="nonsense")
    with pytest.raises(ValueError, match="vocab_size"):
        TextTokenizer.train(sst2_texts, vocab_size=3)
    tok = TextTokenizer.train(sst2_texts, 500)
    with pytest.raises(TypeError, match="single str"):
        tok.encode("a text")
    with pytest.raises(ValueError, match="no tokens"):
        tok.encode(["   "])


# ---------------------------------------------------------------- batching


def _random_lengths(n, seed=0):
    rng = random.Random(seed)
    return [[rng.randrange(4, 100) for _ in range(rng.randrange(1, 40))] for _ in range(n)]


def test_batches_cover_every_example_once_with_correct_tensors():
    ids = _random_lengths(1000)
    batches = LengthGroupedBatches(ids, list(range(1000)), 64, seed=3)
    seen = []
    for batch in batches:
        x, m, y = batch["input_ids"], batch["attention_mask"], batch["labels"]
        assert x.dtype == m.dtype == y.dtype == torch.long and x.shape == m.shape
        for row, mask, label in zip(x, m, y, strict=True):
            n = int(mask.sum())
            assert row[:n].tolist() == ids[label] and (row[n:] == 0).all()
            assert mask[:n].all() and not mask[n:].any()
        seen += y.tolist()
    assert sorted(seen) == list(range(1000)) and len(batches) == 16


def test_order_is_deterministic_per_epoch():
    ids = _random_lengths(500)
    a = LengthGroupedBatches(ids, None, 32, seed=1)
    b = LengthGroupedBatches(ids, None, 32, seed=1)
    assert a.batch_indices() == b.batch_indices()
    a.set_epoch(1)
    assert a.batch_indices() != b.batch_indices()
    b.set_epoch(1)
    assert a.batch_indices() == b.batch_indices()


def test_grouping_pads_much_less_than_random_batches(data_dir):
    texts = load_split(data_dir / "sst2", "train").texts[:5000]
    ids = [[1] * len(t.split()) for t in texts]
    grouped = LengthGroupedBatches(ids, None, 64).padding_fraction()
    random_batches = LengthGroupedBatches(ids, None, 64, pool_batches=1)
    # pool_batches=1 sorts only within a batch: the padding of random batching.
    random_fraction = random_batches.padding_fraction()
    assert grouped < 0.1 < random_fraction and grouped < random_fraction / 4


def test_unshuffled_batches_are_sorted_by_length():
    ids = _random_lengths(300)
    lengths = [len(ids[i]) for b in LengthGroupedBatches(ids, None, 16, shuffle=False)
               .batch_indices() for i in b]
    assert lengths == sorted(lengths)


def test_token_budget_batches_stay_within_the_budget_and_cover_every_example():
    lengths = [len(x) for x in _random_lengths(2000, seed=4)]
    batches = TokenBudgetBatches(lengths, 300, seed=2)
    seen, sizes = [], []
    for epoch in range(3):
        batches.set_epoch(epoch)
        indices = batches.batch_indices()
        assert len(indices) == len(batches)
        for rows in indices:
            assert len(rows) * max(lengths[i] for i in rows) <= 300
        seen.append(sorted(i for rows in indices for i in rows))
        sizes.append(sorted(len(rows) for rows in indices))
    assert seen[0] == seen[1] == seen[2] == list(range(2000))
    assert sizes[0] == sizes[1] == sizes[2]  # the same cut every epoch: steps are planned once
    # short examples come many to a batch, long ones few
    by_size = {len(rows): max(lengths[i] for i in rows) for rows in indices}
    assert by_size[max(by_size)] < by_size[min(by_size)]


def test_token_budget_batches_hand_computed_cut_and_order():
    # sorted by length: 1 (idx 3), 2 (idx 1), 2 (idx 4), 3 (idx 0), 5 (idx 2); budget 6
    batches = TokenBudgetBatches([3, 2, 5, 1, 2], 6, shuffle=False)
    assert batches.batch_indices() == [[3, 1, 4], [0], [2]]  # 3x2=6, then 2x3>6, 2x5>6
    a, b = TokenBudgetBatches([3, 2, 5, 1, 2] * 20, 12, seed=5), TokenBudgetBatches(
        [3, 2, 5, 1, 2] * 20, 12, seed=5)
    assert a.batch_indices() == b.batch_indices()
    a.set_epoch(1)
    assert a.batch_indices() != b.batch_indices()


def test_token_budget_batches_sort_by_their_keys():
    # equal budget lengths, sorted by the second side: the pairs with target 1 come together
    keys = [(4, 1), (4, 9), (4, 1), (4, 9)]
    batches = TokenBudgetBatches([9, 9, 9, 9], 18, sort_keys=keys, shuffle=False)
    assert batches.batch_indices() == [[0, 2], [1, 3]]


def test_token_budget_batches_errors():
    with pytest.raises(ValueError, match="max_tokens must be an integer >= 1, got 0"):
        TokenBudgetBatches([1], 0)
    with pytest.raises(ValueError, match=r"at least the longest example \(7 tokens\), got 5"):
        TokenBudgetBatches([3, 7], 5)
    with pytest.raises(ValueError, match="lengths is empty"):
        TokenBudgetBatches([], 5)
    with pytest.raises(ValueError, match="sort_keys and lengths differ in length: 1 vs 2"):
        TokenBudgetBatches([1, 2], 5, sort_keys=[1])


def test_by_length_keeps_the_order_of_equal_lengths_both_ways():
    lengths = [3, 1, 3, 2, 1]
    assert by_length(lengths, 2) == [[1, 4], [3, 0], [2]]
    assert by_length(lengths, 2, longest_first=True) == [[0, 2], [3, 1], [4]]


def test_batching_errors():
    with pytest.raises(ValueError, match="batch_size"):
        LengthGroupedBatches([[1]], None, 0)
    with pytest.raises(ValueError, match="differ in length"):
        LengthGroupedBatches([[1], [2]], [0], 1)
    with pytest.raises(ValueError, match="no tokens"):
        LengthGroupedBatches([[1], []], None, 1)
    with pytest.raises(ValueError, match="empty"):
        pad_sequences([])


# ---------------------------------------------------------------- no silent loss (issue 14)


@pytest.mark.parametrize("split, rows, digest", [
    ("train", 67349, "ead788945b3f0b4cdf5df55cfe13251ca3167acd9eac6ef9dfb43066e4c5c5da"),
    ("dev", 872, "ad3f801f36ae2bcd3a77512391488873d55bcfeae10ce2cc30261517ded748ce"),
    ("test", 1821, "d7dc2ff6bd58f5764c65209577d3f6922f6fa7737e494d3ed67c90ac91175a89"),
])
def test_sst2_reads_exactly_as_before(data_dir, split, rows, digest):
    """The texts, labels and order of SST-2 (hashes taken before the stricter reader)."""
    ds = load_split(data_dir / "sst2", split)
    assert len(ds) == rows
    assert hashlib.sha256(json.dumps([ds.texts, ds.labels]).encode()).hexdigest() == digest
    assert ds.lines == list(range(2, rows + 2))  # one row a line after the header


def test_lines_are_the_file_lines_of_the_rows(tmp_path):
    (tmp_path / "train.csv").write_text('text,label\nok,1\n\n"two\nlines",0\nlast,1\n')
    ds = load_split(tmp_path, "train")
    assert ds.texts == ["ok", "two\nlines", "last"] and ds.lines == [2, 4, 6]


def test_csv_unbalanced_quote_stops_with_file_and_line(tmp_path):
    """One opening quote used to swallow every line up to the next quote: 2,000 rows read as
    far fewer, silently."""
    rows = [f"text number {i},{i % 2}" for i in range(2000)]
    rows[4] = '"an unbalanced quote,1'  # file line 6
    rows[1500] = 'a 12" screen,0'
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match="quote") as err:
        load_split(tmp_path, "train")
    assert f"{path}:6:" in str(err.value)


def test_csv_quote_open_to_the_end_of_the_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('text,label\nok,1\n"never closed,0\nmore,1\n')
    with pytest.raises(DataFormatError, match="quote") as err:
        load_split(tmp_path, "train")
    assert f"{path}:3:" in str(err.value)


@pytest.mark.parametrize("name", ["train.csv", "train.tsv"])
def test_field_over_the_csv_limit_is_a_clear_error(tmp_path, name):
    sep = "," if name.endswith("csv") else "\t"
    path = tmp_path / name
    path.write_text(f"text{sep}label\nok{sep}1\n{'word ' * 30000}{sep}0\n")  # 150,000 characters
    with pytest.raises(DataFormatError, match="longer than") as err:
        load_split(tmp_path, "train")
    assert f"{path}:3:" in str(err.value)


@pytest.mark.parametrize("name, content, column", [
    ("train.csv", "text,label,label\nok,1,0\n", "label"),
    ("train.tsv", "sentence\tlabel\tsentence\nok\t1\tbad\n", "sentence"),
    ("train.jsonl", '{"text": "ok", "label": 1, "label": 0}\n', "label"),
])
def test_duplicate_column_names_column_and_file(tmp_path, name, content, column):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataFormatError, match=f"column {column!r}.*twice") as err:
        load_split(tmp_path, "train")
    assert str(path) in str(err.value)


@pytest.mark.parametrize("label", ["\u0661", "\uff11", "+1", "1.0", "\u00b9"])
def test_only_ascii_digits_or_class_names_are_labels(tmp_path, label):
    path = tmp_path / "train.tsv"
    path.write_text(f"label\tsentence\n0\tok\n{label}\tArabic-Indic, full-width, signed\n")
    with pytest.raises(DataFormatError, match="not a known class") as err:
        load_split(tmp_path, "train")
    assert f"{path}:3:" in str(err.value)
