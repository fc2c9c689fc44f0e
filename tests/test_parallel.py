"""Parallel text: reading Multi30k and bad files; the cased subword tokenizers that decode back
to the text."""

import json
import time

import pytest

from attnlab.text import (
    DataFormatError,
    ParallelDataset,
    TextTokenizer,
    load_parallel_split,
    read_lines,
)

MULTI30K_LINES = {"train": 29000, "val": 1014, "test_2016_flickr": 1000, "test_2017_flickr": 1000}
DE_EN = dict(source_lang="de", target_lang="en")


@pytest.fixture(scope="session")
def multi30k(data_dir):
    folder = (data_dir / "multi30k").resolve()  # the loader names folders resolved
    if not (folder / "train.de").is_file():
        pytest.skip(f"Multi30k not found under {data_dir}")
    return folder


@pytest.fixture(scope="module")
def train_pairs(multi30k):
    return load_parallel_split(multi30k, "train", **DE_EN)


def write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


# ---------------------------------------------------------------- reading Multi30k


@pytest.mark.parametrize("split", list(MULTI30K_LINES))
def test_reads_every_multi30k_split_by_name(multi30k, monkeypatch, split):
    monkeypatch.setenv("ATTNLAB_DATA", str(multi30k.parent))
    pairs = load_parallel_split("multi30k", split, **DE_EN)
    assert len(pairs) == len(pairs.sources) == len(pairs.targets) == MULTI30K_LINES[split]
    assert pairs.skipped == [] and pairs.source == f"{multi30k / split}.{{de,en}}"
    assert pairs.targets == read_lines(multi30k / f"{split}.en")
    reverse = load_parallel_split("multi30k", split, source_lang="en", target_lang="de")
    assert reverse.sources == pairs.targets and reverse.targets == pairs.sources


def test_lines_are_kept_as_written(multi30k, train_pairs):
    """The tab of train.de line 7366, trailing and double spaces: the file is the lines."""
    assert [i for i, s in enumerate(train_pairs.sources) if "\t" in s] == [7365]
    assert train_pairs.sources[7365] == ('"Zwei männliche und eine weibliche Person spielen in '
                                         'einer \tWasserfontäne."')
    raw = (multi30k / "train.de").read_text(encoding="utf-8")
    assert "\n".join(train_pairs.sources) + "\n" == raw
    assert sum(s != s.rstrip() for s in train_pairs.sources) == 40


def test_line_endings_and_odd_separators(tmp_path):
    """CRLF and a missing final newline; \\x0c and U+2028 are inside lines, not between."""
    write(tmp_path, "a.de", "eins\r\nzwei\x0c drei\r\nvier\u2028fünf")
    write(tmp_path, "a.en", "one\ntwo\x0c three\nfour\u2028five\n")
    pairs = load_parallel_split(tmp_path, "a", **DE_EN)
    assert pairs.sources == ["eins", "zwei\x0c drei", "vier\u2028fünf"]
    assert pairs.targets == ["one", "two\x0c three", "four\u2028five"]


@pytest.mark.parametrize("name, text, columns", [
    ("train.tsv", "id\ten\tde\n1\tTwo  dogs.\tZwei Hunde.\n2\tA cat \tEine Katze\n", "de -> en"),
    ("train.csv", 'de,en\n"Zwei Hunde, braun.",Two  dogs.\nEine Katze,A cat \n', "de -> en"),
    ("train.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in (
        {"source": "Zwei Hunde.", "target": "Two  dogs."},
        {"source": "Eine Katze", "target": "A cat "})) + "\n", "source -> target"),
])
def test_table_layouts(tmp_path, name, text, columns):
    path = write(tmp_path, name, text)
    pairs = load_parallel_split(tmp_path, "train", **DE_EN)
    assert pairs.targets == ["Two  dogs.", "A cat "]  # inner and trailing spaces kept
    assert pairs.sources[1] == "Eine Katze" and pairs.sources[0].startswith("Zwei Hunde")
    assert pairs.source == f"{path} [{columns}]"


def test_plain_files_win_over_a_table_of_the_same_split(tmp_path):
    write(tmp_path, "val.de", "a\n")
    write(tmp_path, "val.en", "b\n")
    write(tmp_path, "val.tsv", "de\tfr\nx\ty\n")
    assert load_parallel_split(tmp_path, "val", **DE_EN).sources == ["a"]
    pairs = load_parallel_split(tmp_path, "val", source_lang="de", target_lang="fr")
    assert (pairs.sources, pairs.targets) == (["x"], ["y"])  # no val.fr: the table has it


# ---------------------------------------------------------------- errors


def test_line_counts_differ(tmp_path):
    de = write(tmp_path, "train.de", "a\nb\nc\n")
    en = write(tmp_path, "train.en", "a\nb\n")
    with pytest.raises(DataFormatError) as err:
        load_parallel_split(tmp_path, "train", **DE_EN)
    assert str(err.value).startswith(f"{de} has 3 lines but {en} has 2;")


def test_empty_line_is_an_error_or_skipped(tmp_path):
    de = write(tmp_path, "train.de", "eins\n\ndrei\n  \nfünf\n")
    en = write(tmp_path, "train.en", "one\ntwo\nthree\nfour\n\n")
    with pytest.raises(DataFormatError, match=rf"^{de}:2: empty line; pass on_empty='skip'"):
        load_parallel_split(tmp_path, "train", **DE_EN)
    pairs = load_parallel_split(tmp_path, "train", **DE_EN, on_empty="skip")
    assert pairs.sources == ["eins", "drei"] and pairs.targets == ["one", "three"]
    assert pairs.skipped == [f"{de}:2: empty line", f"{de}:4: line of only whitespace",
                             f"{en}:5: empty line"]
    assert pairs.summary().endswith("2 pairs; 3 pairs skipped")


def test_empty_field_of_a_table(tmp_path):
    path = write(tmp_path, "dev.tsv", "de\ten\nja\tyes\n\tno\n")
    with pytest.raises(DataFormatError, match=rf"^{path}:3: empty field 'de'"):
        load_parallel_split(tmp_path, "dev", **DE_EN)
    pairs = load_parallel_split(tmp_path, "dev", **DE_EN, on_empty="skip")
    assert pairs.sources == ["ja"] and pairs.skipped == [f"{path}:3: empty field 'de'"]


def test_missing_split_says_where_it_looked_and_what_exists(multi30k):
    with pytest.raises(FileNotFoundError) as err:
        load_parallel_split(multi30k, "test", **DE_EN)
    message = str(err.value)
    assert f"looked for test.LANG or test.tsv/.csv/.jsonl in {multi30k}" in message
    assert f"splits found: {multi30k}: test_2016_flickr, test_2017_flickr, train, val" in message


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="splits found: none"):
        load_parallel_split(tmp_path / "nowhere", "train", **DE_EN)


def test_unknown_language(multi30k, tmp_path):
    with pytest.raises(ValueError, match=r"no val\.fr in .*multi30k: language 'fr' not found; "
                                         r"languages of 'val' there: de, en$"):
        load_parallel_split(multi30k, "val", source_lang="fr", target_lang="en")
    path = write(tmp_path, "train.tsv", "de\ten\nja\tyes\n")
    with pytest.raises(ValueError, match=r"no column 'fr'.* got \['de', 'en'\]$") as err:
        load_parallel_split(tmp_path, "train", source_lang="de", target_lang="fr")
    assert str(path) in str(err.value)


def test_bad_arguments_and_bytes(tmp_path):
    with pytest.raises(ValueError, match="on_empty must be one of"):
        load_parallel_split(tmp_path, "train", **DE_EN, on_empty="drop")
    with pytest.raises(ValueError, match="must differ, both are 'de'"):
        load_parallel_split(tmp_path, "train", source_lang="de", target_lang="de")
    (tmp_path / "train.de").write_bytes(b"gut\nschl\xe9cht\n")
    write(tmp_path, "train.en", "good\nbad\n")
    with pytest.raises(DataFormatError, match=r"train\.de:2: bytes that are not valid UTF-8"):
        load_parallel_split(tmp_path, "train", **DE_EN)
    with pytest.raises(ValueError, match="differ in length: 1 sources, 0 targets"):
        ParallelDataset(["a"], [], "here")


# ---------------------------------------------------------------- cased subword tokenizers


@pytest.fixture(scope="module")
def bpe(train_pairs):
    """A joint BPE of all 58,000 training lines, de and en (about a second)."""
    start = time.perf_counter()
    tok = TextTokenizer.train(train_pairs.sources + train_pairs.targets, 8000, kind="bpe")
    print(f"\nBPE (8000) trained on {2 * len(train_pairs)} lines in "
          f"{time.perf_counter() - start:.1f} s")
    return tok


def test_bpe_specials_bos_eos_and_case(bpe):
    assert [bpe.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")] == [0, 1, 2, 3]
    assert (bpe.pad_token_id, bpe.bos_token_id, bpe.eos_token_id) == (0, 2, 3)
    assert bpe.vocab_size == 8000
    upper, lower = bpe.encode(["Ein Hund.", "ein hund."])
    assert upper[0] == lower[0] == 2 and upper[-1] == lower[-1] == 3 and upper != lower
    ids = bpe.encode(["Zwei junge weiße Männer sind im Freien."], max_length=5)[0]
    assert len(ids) == 5 and ids[-1] == 3  # truncation keeps [SEP], as for the other kinds


@pytest.mark.parametrize("lang", ["de", "en"])
def test_bpe_round_trip_on_test_2016(bpe, multi30k, lang):
    texts = read_lines(multi30k / f"test_2016_flickr.{lang}")
    ids = bpe.encode(texts)
    decoded = bpe.decode_batch(ids)
    exact = sum(d == t for d, t in zip(decoded, texts, strict=True)) / len(texts)
    pieces = sum(map(len, ids)) / len(ids)
    print(f"\ntest_2016_flickr.{lang}: decode(encode(text)) == text for {exact:.2%}; "
          f"{pieces:.2f} tokens a sentence ([CLS] and [SEP] included)")
    assert exact >= 0.999
    assert all(x[0] == 2 and x[-1] == 3 for x in ids)


@pytest.mark.parametrize("text", ["", " ", " lead", "trail  ", "a  b", "x\ty",
                                  "Große Äpfel, Übermaß."])
def test_bpe_restores_spaces_and_tabs(bpe, text):
    assert bpe.decode(bpe.encode([text], allow_empty=True)[0]) == text


def test_unseen_characters_are_unk_and_left_out(bpe):
    ids = bpe.encode(["Ein ☃ Mann", "☃☃"])
    assert ids[0].count(1) == 1 and ids[1].count(1) == 1  # a run of unseen characters: one [UNK]
    assert bpe.decode(ids[0]) == "Ein  Mann"  # the snowman is gone, its spaces stay
    assert bpe.decode(ids[0], skip_special_tokens=False) == "[CLS] Ein [UNK] Mann[SEP]"
    assert bpe.decode_batch(ids) == ["Ein  Mann", ""]


def test_decode_takes_tensors_and_checks_ids(bpe):
    ids = bpe.encode(["Ein Hund.", "Zwei Katzen spielen."])
    batch = bpe.pad(ids).input_ids  # (2, L), [PAD] after the shorter text
    assert bpe.decode_batch(batch) == ["Ein Hund.", "Zwei Katzen spielen."]
    assert bpe.decode(batch[0]) == "Ein Hund."
    with pytest.raises(ValueError, match=r"ids of text 0 must be integers in 0 \.\. 7999 "
                                         r"\(the vocabulary\), got 8000"):
        bpe.decode([2, 8000, 3])
    with pytest.raises(ValueError, match="got -1"):
        bpe.decode_batch([[2, 3], [-1]])


def test_bpe_saves_and_loads_back(bpe, multi30k, tmp_path):
    texts = read_lines(multi30k / "val.de")[:200]
    bpe.save(tmp_path / "tokenizer.json")
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.to_str() == bpe.to_str()
    assert loaded.encode(texts) == bpe.encode(texts)
    assert loaded.decode_batch(loaded.encode(texts)) == texts


def test_unigram_round_trip(train_pairs, multi30k, tmp_path):
    n = min(5000, len(train_pairs))
    tok = TextTokenizer.train(train_pairs.sources[:n] + train_pairs.targets[:n], 2000,
                              kind="unigram")
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")] == [0, 1, 2, 3]
    texts = read_lines(multi30k / "val.de")[:300] + read_lines(multi30k / "val.en")[:300]
    ids = tok.encode(texts)
    assert all(x[0] == 2 and x[-1] == 3 for x in ids)
    assert sum(d == t for d, t in zip(tok.decode_batch(ids), texts, strict=True)) >= 0.99 * 600
    tok.save(tmp_path / "tokenizer.json")
    assert TextTokenizer.load(tmp_path).encode(texts) == ids
    with pytest.raises(ValueError, match="min_frequency is not an option of kind='unigram'"):
        TextTokenizer.train(texts, 500, kind="unigram", min_frequency=2)
