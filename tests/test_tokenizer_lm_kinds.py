"""The language-model tokenizer kinds "char" and "byte-bpe": exact round trips, the reserved
ids, no special token added to a text, truncation, and byte-level tokens that spell the text's
UTF-8 bytes (GPT-2's byte-to-symbol table, written out here independently)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attnlab.errors import InputError
from attnlab.text.tokenizer import SPECIAL_TOKENS, TextTokenizer

SHAKESPEARE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "MENENIUS:\n  Why, masters,  my good friends, mine honest neighbours,\t\n"
    "Will you undo yourselves?  Naïve café—“quoted” ‘words’ \n\n\n"
)
DATA = Path(os.environ.get("ATTNLAB_DATA", "../shared/data")) / "tinyshakespeare" / "input.txt"


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _gpt2_bytes_to_symbols() -> dict[int, str]:
    """GPT-2's table (openai/gpt-2 encoder.py): printable bytes stand for themselves, the
    others are shifted to 256 and above."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in kept:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@pytest.mark.parametrize("kind", ["char", "byte-bpe"])
def test_round_trip_is_exact_and_adds_no_special_token(kind):
    tok = TextTokenizer.train(_lines(SHAKESPEARE), 300, kind=kind)
    ids = tok.encode([SHAKESPEARE])[0]
    assert ids == tok.encode([SHAKESPEARE], add_special_tokens=False)[0]
    assert tok.decode(ids) == SHAKESPEARE
    assert tok.decode(ids, skip_special_tokens=False) == SHAKESPEARE
    assert not {0, 2, 3} & set(ids)  # neither [PAD] nor [CLS] nor [SEP]
    assert tok.tokenizer.num_special_tokens_to_add(False) == 0
    # line by line, as the LM task encodes, gives the same stream as the whole text at once
    by_line = [i for row in tok.encode(_lines(SHAKESPEARE), allow_empty=True) for i in row]
    assert by_line == ids


@pytest.mark.parametrize("kind", ["char", "byte-bpe"])
def test_special_tokens_keep_their_ids(kind, tmp_path):
    tok = TextTokenizer.train(_lines(SHAKESPEARE), 300, kind=kind)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert tok.pad_token_id == 0 and tok.bos_token_id == 2 and tok.eos_token_id == 3
    tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path)
    assert again.encode([SHAKESPEARE]) == tok.encode([SHAKESPEARE])
    assert again.decode(again.encode([SHAKESPEARE])[0]) == SHAKESPEARE


def test_char_is_one_token_per_character_in_sorted_order():
    tok = TextTokenizer.train(_lines(SHAKESPEARE), 300, kind="char")
    alphabet = sorted(set(SHAKESPEARE))
    assert tok.vocab_size == 4 + len(alphabet)  # vocab_size is not used by "char"
    expected = {c: 4 + i for i, c in enumerate(alphabet)}  # built by hand
    assert tok.encode([SHAKESPEARE])[0] == [expected[c] for c in SHAKESPEARE]
    assert tok.tokenize(["a \n"])[0].tokens == ["a", " ", "\n"]
    # a character never seen in training is one [UNK] each, and left out when decoding
    assert tok.encode(["aZ"])[0] == [expected["a"], 1]
    assert tok.encode(["ZZ"])[0] == [1, 1]
    assert tok.decode(tok.encode(["aZb"])[0]) == "ab"


def test_byte_bpe_tokens_spell_the_utf8_bytes():
    tok = TextTokenizer.train(_lines(SHAKESPEARE), 300, kind="byte-bpe")
    assert tok.vocab_size == 300
    symbol_to_byte = {s: b for b, s in _gpt2_bytes_to_symbols().items()}
    text = SHAKESPEARE + "日本語 never seen\n"  # unseen characters: still bytes, no [UNK]
    enc = tok.tokenizer.encode(text)
    assert 1 not in enc.ids
    spelled = bytes(symbol_to_byte[s] for token in enc.tokens for s in token)
    assert spelled == text.encode("utf-8")
    assert tok.decode(enc.ids) == text
    # merges never cross a word start: no token holds a letter followed by a space symbol
    space = _gpt2_bytes_to_symbols()[ord(" ")]
    assert not any(space in token.lstrip(space) for token in tok.tokenizer.get_vocab()
                   if token not in SPECIAL_TOKENS)
    assert any(t.startswith(space) and t[1:].isalpha() for t in tok.tokenizer.get_vocab())


@pytest.mark.parametrize("kind", ["char", "byte-bpe"])
def test_truncation_keeps_the_first_tokens(kind):
    tok = TextTokenizer.train(_lines(SHAKESPEARE), 300, kind=kind, max_length=5)
    full = TextTokenizer.train(_lines(SHAKESPEARE), 300, kind=kind).encode([SHAKESPEARE])[0]
    assert tok.encode([SHAKESPEARE])[0] == full[:5]
    assert tok.tokenize([SHAKESPEARE])[0].truncated
    with pytest.raises(InputError, match="has no tokens"):
        tok.encode([""])


def test_bad_kind_is_named():
    with pytest.raises(InputError, match=r"kind must be one of .*'char', 'byte-bpe'.*'chars'"):
        TextTokenizer.train(["abc"], 300, kind="chars")


@pytest.mark.skipif(not DATA.is_file(), reason="Tiny Shakespeare is not on this machine")
@pytest.mark.parametrize("kind", ["char", "byte-bpe"])
def test_tiny_shakespeare_round_trip(kind):
    text = DATA.read_text(encoding="utf-8")
    tok = TextTokenizer.train(_lines(text), 1024, kind=kind)
    ids = [i for row in tok.encode(_lines(text), allow_empty=True) for i in row]
    assert tok.decode(ids) == text
    if kind == "char":
        assert len(ids) == len(text) and tok.vocab_size == 4 + 65
    else:
        assert len(ids) < len(text) / 2  # the merges shorten the text
