"""A Marian (opus-mt) folder on attnlab's own attention, against ``transformers``.

The folder is a tiny random ``MarianMTModel`` (2 + 2 layers, d_model 32, 4 heads) written by
``save_pretrained``, with a SentencePiece model trained here on a few sentences (as
``source.spm`` and ``target.spm``) and a ``vocab.json`` over its pieces, which ``transformers``'
``MarianTokenizer`` reads as it reads opus-mt's. Oracles: ``MarianTokenizer``, the
``MarianMTModel`` forward pass (eager attention, ``output_attentions=True``) and its
``generate`` (greedy and beam search).
"""

from __future__ import annotations

import io
import json
import math
import os
import re

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may reach the hub

import pytest
import torch

from attnlab.cli import main
from attnlab.inspect import METHODS, capture
from attnlab.io.families import load_family
from attnlab.models.generation import beam_search_nbest, greedy_search
from attnlab.text.marian_tokenizer import MarianTokenizer

transformers = pytest.importorskip("transformers")
sentencepiece = pytest.importorskip("sentencepiece")

CORPUS = ["ein hund rennt durch den schnee", "zwei männer spielen fußball im park",
          "eine frau liest ein buch", "a dog runs through the snow",
          "two men play football in the park", "a woman reads a book", "kinder lachen laut"]
SOURCES = ["ein hund rennt", "zwei männer lesen ein buch im park", "a woman"]
MAX_LENGTH = 12  # tokens generated at most, </s> included (transformers: 13, with the start)


def train_pieces() -> bytes:
    """A SentencePiece BPE model of the corpus, serialised."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4), model_writer=model, vocab_size=60, model_type="bpe",
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    return model.getvalue()


def write_folder(folder, pieces: bytes, *, share: bool = True, tie: bool = True) -> int:
    """A Marian folder: the model (random weights, a random final_logits_bias) and its
    tokenizer files; returns the vocabulary size."""
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(pieces)
    processor = sentencepiece.SentencePieceProcessor(model_proto=pieces)
    words = [processor.id_to_piece(i) for i in range(processor.get_piece_size())
             if not processor.is_control(i) and not processor.is_unknown(i)]
    vocab = {p: i for i, p in enumerate(["</s>", "<unk>", *words, "<pad>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    V = len(vocab)
    config = transformers.MarianConfig(
        vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
        max_position_embeddings=64, pad_token_id=V - 1, decoder_start_token_id=V - 1,
        eos_token_id=0, forced_eos_token_id=0, scale_embedding=True, init_std=0.2,
        activation_function="swish", share_encoder_decoder_embeddings=share,
        tie_word_embeddings=tie)
    torch.manual_seed(0)
    model = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_()
    model.save_pretrained(folder)
    return V


@pytest.fixture(scope="module")
def pieces() -> bytes:
    return train_pieces()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, pieces):
    path = tmp_path_factory.mktemp("opus-mt-tiny")
    write_folder(path, pieces)
    return path


def hf_model(folder, dtype=torch.float32):
    return transformers.MarianMTModel.from_pretrained(folder, attn_implementation="eager",
                                                      dtype=dtype).eval()


def source_batch(folder):
    """SOURCES through transformers' tokenizer, padded (its oracle), and ours."""
    theirs = transformers.MarianTokenizer.from_pretrained(folder)
    batch = theirs(SOURCES, padding=True, return_tensors="pt")
    return theirs, batch["input_ids"], batch["attention_mask"]


def test_tokenizer_gives_transformers_ids_and_text(folder):
    theirs, input_ids, mask = source_batch(folder)
    ours = MarianTokenizer.load(folder)
    assert ours.encode(SOURCES) == [row[m.bool()].tolist() for row, m in zip(input_ids, mask,
                                                                              strict=True)]
    assert (ours.pad_token_id, ours.eos_token_id) == (theirs.pad_token_id, theirs.eos_token_id)
    ids = torch.randint(0, ours.vocab_size, (5, 9), generator=torch.Generator().manual_seed(1))
    assert ours.decode_batch(ids) == theirs.batch_decode(ids, skip_special_tokens=True)
    text = "zwei männer lesen"  # the character span of each piece, [start] and </s> none
    encoding = ours.tokenizer.encode(text)
    words = "".join(text[a:b] for a, b in encoding.offsets)
    assert words == text.replace(" ", "") or words == text
    assert encoding.special_tokens_mask[0] == encoding.special_tokens_mask[-1] == 1


@pytest.mark.parametrize("share,tie", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_logits_equal_transformers_with_padding(tmp_path, pieces, share, tie, dtype, atol):
    V = write_folder(tmp_path, pieces, share=share, tie=tie)
    ours = load_family(tmp_path).to(dtype)
    theirs = hf_model(tmp_path, dtype)
    input_ids = torch.tensor([[5, 9, 12, 7, 0], [8, 3, 0, V - 1, V - 1]])  # (2, 5), padded
    mask = (torch.arange(5)[None] < torch.tensor([[5], [3]])).long()  # (2, 5)
    decoder_ids = torch.tensor([[V - 1, 4, 6, 11], [V - 1, 10, 2, 5]])  # (2, 4)
    with torch.no_grad():
        expected = theirs(input_ids=input_ids, attention_mask=mask,
                          decoder_input_ids=decoder_ids).logits
        got = ours(input_ids, mask, decoder_ids).logits
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)


def test_every_heads_attention_equals_transformers(folder):
    ours, theirs = load_family(folder), hf_model(folder)
    _, input_ids, mask = source_batch(folder)
    generator = torch.Generator().manual_seed(2)
    decoder_ids = torch.randint(1, 40, (len(SOURCES), 6), generator=generator)  # (B, T)
    decoder_ids[:, 0] = ours.config.decoder_start_token_id
    with torch.no_grad():
        out = theirs(input_ids=input_ids, attention_mask=mask, decoder_input_ids=decoder_ids,
                     output_attentions=True)
    stacks = {"encoder": [f"encoder.layers.{i}.attn" for i in range(2)],
              "decoder": [f"decoder.layers.{i}.self_attn" for i in range(2)],
              "cross": [f"decoder.layers.{i}.cross_attn" for i in range(2)]}
    with torch.no_grad(), capture(ours, layers=sum(stacks.values(), [])) as weights:
        ours(input_ids, mask, decoder_ids)
    expected = {"encoder": out.encoder_attentions, "decoder": out.decoder_attentions,
                "cross": out.cross_attentions}
    for kind, names in stacks.items():
        for name, reference in zip(names, expected[kind], strict=True):  # (B, H, L, S)
            torch.testing.assert_close(weights[name], reference, rtol=0, atol=1e-6)


def hf_outputs(model, input_ids, mask, **options) -> list[list[int]]:
    """transformers' generated ids per sentence: after the start token, </s> kept, no pad."""
    with torch.no_grad():
        rows = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                              max_length=MAX_LENGTH + 1, min_length=0,
                              bad_words_ids=[[model.config.pad_token_id]], **options)
    pad = model.config.pad_token_id
    return [[t for t in row[1:].tolist() if t != pad] for row in rows]


def ours_outputs(hyps) -> list[list[int]]:
    return [h.tokens + [0] * h.finished for h in hyps]


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_equals_generate(folder, use_cache):
    ours, theirs = load_family(folder), hf_model(folder)
    _, input_ids, mask = source_batch(folder)
    expected = hf_outputs(theirs, input_ids, mask, num_beams=1)
    hyps = greedy_search(ours, input_ids, mask, max_length=MAX_LENGTH, use_cache=use_cache)
    assert ours_outputs(hyps) == expected


@pytest.mark.parametrize("length_penalty,early_stopping", [(1.0, False), (0.0, False),
                                                           (1.0, True), (2.0, False)])
def test_beam_search_equals_generate(folder, length_penalty, early_stopping):
    ours, theirs = load_family(folder), hf_model(folder)
    _, input_ids, mask = source_batch(folder)
    options = dict(num_beams=4, length_penalty=length_penalty, early_stopping=early_stopping)
    expected = hf_outputs(theirs, input_ids, mask, **options)
    with torch.no_grad():
        scores = theirs.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                                 max_length=MAX_LENGTH + 1,
                                 bad_words_ids=[[theirs.config.pad_token_id]],
                                 output_scores=True, return_dict_in_generate=True,
                                 **options).sequences_scores
    for use_cache in (True, False):
        best = [n[0] for n in beam_search_nbest(
            ours, input_ids, mask, beam=4, max_length=MAX_LENGTH, length_penalty=length_penalty,
            early_stopping=early_stopping, use_cache=use_cache)]
        assert ours_outputs(best) == expected
        torch.testing.assert_close(torch.tensor([h.score for h in best]), scores.float(),
                                   rtol=0, atol=1e-5)


def page_data(page: str) -> dict:
    return json.loads(re.search(r'<script id="attnlab-data" type="application/json">(.*?)'
                                r'</script>', page, re.S).group(1))


def test_translate_show_and_explain_through_the_cli(folder, tmp_path, capsys):
    theirs_tok, input_ids, mask = source_batch(folder)
    theirs = hf_model(folder)
    S = int(mask[0].sum())
    limit = min(S + 50, 64)  # the translator's default: 50 past the source, within positions
    expected = {}
    for beam in (1, 3):
        with torch.no_grad():
            rows = theirs.generate(input_ids=input_ids[:1, :S], do_sample=False, num_beams=beam,
                                   max_length=limit + 1, early_stopping=False,
                                   bad_words_ids=[[theirs.config.pad_token_id]])
        expected[beam] = theirs_tok.decode(rows[0], skip_special_tokens=True)
    capsys.readouterr()
    assert main(["translate", str(folder), SOURCES[0], "--beam", "3", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["text"] == SOURCES[0] and line["translation"] == expected[3]

    out = tmp_path / "view.html"
    assert main(["show", str(folder), SOURCES[0], "--html", str(out)]) == 0
    assert f"translation: {expected[1]}" in capsys.readouterr().out
    data = page_data(out.read_text(encoding="utf-8"))
    assert data["task"] == "translation"
    sentence = data["sentences"][0]
    assert sentence["translation"] == expected[1]
    assert [k["name"] for k in sentence["kinds"]] == ["self", "decoder", "cross"]

    # the first query: the decoder's start token (<pad>) over the source, head 2 of layer 1
    assert main(["explain", str(folder), SOURCES[0], "--attention", "cross", "--layer", "1",
                 "--head", "2", "--token", "<pad>", "--json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    with torch.no_grad():
        cross = theirs(input_ids=input_ids[:1, :S], decoder_input_ids=rows[:, :1],
                       output_attentions=True).cross_attentions[1][0, 2, 0]  # (S,)
    torch.testing.assert_close(torch.tensor(explained["weights"], dtype=torch.float64),
                               cross.double(), rtol=0, atol=1e-6)


def test_attribute_explains_each_target_token(folder, capsys):
    """Every method on a Marian translation: one decision per generated token, scored over the
    source pieces and the target prefix (forced decoding, as for a run of ours)."""
    capsys.readouterr()
    assert main(["attribute", str(folder), SOURCES[0], "--method", "all", "--steps", "8",
                 "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found) == len(METHODS)
    for row in found:
        decisions = row["scores"]
        assert decisions and all(len(d) == len(row["tokens"]) for d in decisions)
        assert all(math.isfinite(x) for d in decisions for x in d)
