"""``show --html``, ``explain`` and ``heads --roles`` on a Hugging Face folder of each family
(GPT-2, the Llama layout, RoBERTa, DistilBERT).

Each folder is a tiny random model written by ``transformers`` (``save_pretrained``) with a
word-level ``tokenizer.json`` of the model's vocabulary size built with ``tokenizers``: the
encoders' wraps a text as ``[CLS] ... [SEP]``, GPT-2's adds nothing (as GPT-2's own), the Llama
one adds ``<s>`` first. Oracle: :func:`attnlab.inspect.capture` on the loaded model, in a pass of
its own, and the causal mask (a decoder's upper triangle is 0).
"""

from __future__ import annotations

import base64
import json
import os
import re

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may reach the hub

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from tokenizers.processors import TemplateProcessing

from attnlab.cli import main
from attnlab.inspect import METHODS, capture, create_app, load_subject
from attnlab.io.families import load_family

transformers = pytest.importorskip("transformers")

VOCAB = 60
TEXT, WORDS = "a b c", ["a", "b", "c", "d"]
SMALL = dict(initializer_range=0.15, vocab_size=VOCAB)
# name -> (the transformers class, its config, the special tokens, what they wrap a text in)
FAMILIES = {
    "gpt2": ("GPT2LMHeadModel", lambda: transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=32, n_positions=64, bos_token_id=0, eos_token_id=0,
        **SMALL), ["<|endoftext|>"], None),
    "llama": ("LlamaForCausalLM", lambda: transformers.LlamaConfig(
        hidden_size=32, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
        intermediate_size=48, max_position_embeddings=64, **SMALL), ["<unk>", "<s>", "</s>"],
        "<s> $A"),
    "roberta": ("RobertaModel", lambda: transformers.RobertaConfig(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=48,
        max_position_embeddings=64, type_vocab_size=1, pad_token_id=0, **SMALL),
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]"], "[CLS] $A [SEP]"),
    "distilbert": ("DistilBertModel", lambda: transformers.DistilBertConfig(
        n_layers=2, n_heads=4, dim=32, hidden_dim=48, max_position_embeddings=64,
        pad_token_id=0, **SMALL), ["[PAD]", "[UNK]", "[CLS]", "[SEP]"], "[CLS] $A [SEP]"),
}
DECODERS = ("gpt2", "llama")


def word_tokenizer(specials: list[str], template: str | None) -> Tokenizer:
    """A word-level tokenizer of exactly ``VOCAB`` ids: the specials first, then words."""
    words = [*specials, *WORDS]
    vocab = {w: i for i, w in enumerate(words + [f"w{i}" for i in range(VOCAB - len(words))])}
    unk = next((s for s in specials if "unk" in s.lower()), specials[0])
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(specials)
    if template is not None:
        tokenizer.post_processor = TemplateProcessing(
            single=template, special_tokens=[(s, vocab[s]) for s in specials
                                             if s in template])
    assert tokenizer.get_vocab_size() == VOCAB
    return tokenizer


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    made = {}
    for name, (cls, make, specials, template) in FAMILIES.items():
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(name)
        getattr(transformers, cls)(make()).eval().save_pretrained(folder, safe_serialization=True)
        word_tokenizer(specials, template).save(str(folder / "tokenizer.json"))
        made[name] = folder
    return made


def tokens_of(name: str) -> list[str]:
    return {"gpt2": ["a", "b", "c"], "llama": ["<s>", "a", "b", "c"]}.get(
        name, ["[CLS]", "a", "b", "c", "[SEP]"])


@torch.no_grad()
def captured(folder, name: str) -> tuple[list[torch.Tensor], object]:
    """Every layer's weights ``(H, L, L)`` on TEXT, from a pass of our own, and the output."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = torch.tensor([tokenizer.encode(TEXT).ids])  # (1, L)
    assert tokenizer.encode(TEXT).tokens == tokens_of(name)
    model = load_family(folder)
    with capture(model) as cap:
        out = model(ids, torch.ones_like(ids))
    return [cap[i][0] for i in range(len(cap.names))], out


def page_weights(page: str, layer: int, head: int) -> torch.Tensor:
    """One head's weights as the page embeds them (``round(w·255)`` bytes), over 255."""
    block = re.findall(r'<script id="attnlab-data" type="application/json">(.*?)</script>',
                       page, re.S)
    sentence = json.loads(block[0])["sentences"][0]
    raw = base64.b64decode(sentence["attention"][layer][head])
    n = len(sentence["tokens"])
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(n, n).float() / 255


@pytest.mark.parametrize("name", FAMILIES)
def test_show_html_embeds_the_models_weights(folders, name, tmp_path, capsys):
    out = tmp_path / "view.html"
    assert main(["show", str(folders[name]), TEXT, "--html", str(out)]) == 0
    printed = capsys.readouterr().out
    assert TEXT in printed and "rollout:" in printed
    assert ("next:" in printed) == (name in DECODERS)
    reference, logits = captured(folders[name], name)
    if name in DECODERS:  # the likeliest next token after the text, with its probability
        probs = torch.softmax(logits[0, -1], -1)  # (V,)
        word = Tokenizer.from_file(str(folders[name] / "tokenizer.json")).id_to_token(
            int(probs.argmax()))
        assert f"next: '{word}' {float(probs.max()):.3f}," in printed
    page = out.read_text(encoding="utf-8")
    for layer in range(2):
        for head in range(4):
            got = page_weights(page, layer, head)
            torch.testing.assert_close(got, reference[layer][head], rtol=0, atol=0.5 / 255 + 1e-6)
            if name in DECODERS:  # causal: nothing above the diagonal
                assert torch.equal(got.triu(1), torch.zeros_like(got))
                assert reference[layer][head].triu(1).abs().max() == 0


@pytest.mark.parametrize("name", FAMILIES)
def test_explain_gives_the_heads_weights(folders, name, capsys):
    capsys.readouterr()
    assert main(["explain", str(folders[name]), TEXT, "--layer", "0", "--head", "1", "--token",
                 "b", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    tokens = tokens_of(name)
    query = tokens.index("b")
    assert obj["tokens"] == tokens and obj["query_index"] == query
    reference = captured(folders[name], name)[0][0][1, query].double()  # (S,)
    torch.testing.assert_close(torch.tensor(obj["weights"], dtype=torch.float64), reference,
                               rtol=0, atol=1e-6)
    if name in DECODERS:  # the keys after "b" are masked
        assert obj["mask"] == [1] * (query + 1) + [0] * (len(tokens) - query - 1)


@pytest.mark.parametrize("name", FAMILIES)
def test_heads_roles_run_on_every_family(folders, name, capsys):
    capsys.readouterr()
    assert main(["heads", str(folders[name]), "--roles", "--json", "--repeat-length", "6",
                 "--sequences", "2"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert len(table["heads"]) == 2 * 4
    for head in table["heads"]:
        scores = head["scores"]
        assert all(torch.isfinite(torch.tensor(v)) for v in scores.values() if v is not None)
        assert 0 <= scores["previous"] <= 1
        if name in DECODERS:
            assert scores["next"] == 0  # a causal head never sees the next token


def test_an_unsupported_family_is_one_line(folders, tmp_path, capsys):
    folder = tmp_path / "t5"
    folder.mkdir()
    config = json.loads((folders["gpt2"] / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "t5"}))
    capsys.readouterr()
    assert main(["show", str(folder), TEXT]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'t5'" in err and "gpt2" in err and "llama" in err and "roberta" in err


@pytest.mark.parametrize("name", FAMILIES)
def test_the_live_app_answers_on_every_family(folders, name):
    """``serve``'s app on a family folder: the page, then one sentence's tokens and heads; the
    weights it sends are the model's own (as captured)."""
    fastapi_testclient = pytest.importorskip("fastapi.testclient")
    client = fastapi_testclient.TestClient(create_app(load_subject(folders[name])),
                                           base_url="http://127.0.0.1:8000")
    assert client.get("/").status_code == 200
    r = client.post("/api/attend", json={"text": TEXT})
    assert r.status_code == 200
    sentence = r.json()["sentences"][0]
    assert sentence["tokens"] == tokens_of(name) and sentence["heads"] == [4, 4]
    weights, _ = captured(folders[name], name)
    n = len(sentence["tokens"])
    raw = base64.b64decode(sentence["attention"][0][1])
    sent = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(n, n).float() / 255
    assert (sent - weights[0][1]).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("name", FAMILIES)
def test_attribute_runs_on_every_family_that_decides(folders, name, capsys):
    capsys.readouterr()
    code = main(["attribute", str(folders[name]), TEXT, "--method", "all", "--baseline", "zero",
                 "--steps", "8", "--json"])
    if name not in DECODERS:  # an encoder without a classification head decides nothing
        assert code == 2 and "has no classification head" in capsys.readouterr().err
        return
    assert code == 0
    found = json.loads(capsys.readouterr().out)
    assert isinstance(found, list) and len(found) == len(METHODS)
    tokens = tokens_of(name)
    for row in found:  # one per method; the decision: the likeliest next token
        assert len(row["scores"]) == len(tokens)
        assert all(torch.isfinite(torch.tensor(row["scores"])))
