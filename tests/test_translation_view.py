"""The attention views of a translation run: the payload's three kinds (encoder self-, decoder
self- and cross-attention) and their shapes, the cross-attention as generation captured it,
words merged from pieces, ``show --html``, the live app and ``serve --example``."""

from __future__ import annotations

import base64
import json
import re

import pytest
import torch

from attnlab.cli import inspect as cli_inspect
from attnlab.cli import main
from attnlab.inspect.app import create_app
from attnlab.inspect.html import render_page
from attnlab.inspect.subject import EXAMPLE
from attnlab.models.generation import beam_search_nbest, greedy_search
from attnlab.tasks.translation.subject import EXAMPLE as TRANSLATION_EXAMPLE
from attnlab.tasks.translation.subject import TranslationSubject
from attnlab.tasks.translation.translator import Translator
from attnlab.tasks.translation.view import attend_translation, translation_payload
from tiny_run import XSS, make_tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE = "Ein Mann fährt Fahrrad."


@pytest.fixture(scope="module")
def run(translation_run):
    return Translator.load(translation_run)


def decoded(kind: dict, layer: int) -> torch.Tensor:
    """One layer's weights of a payload kind, ``(H, rows, columns)``, back in [0, 1]."""
    rows, cols = len(kind["query_tokens"]), len(kind["key_tokens"])
    heads = [torch.frombuffer(bytearray(base64.b64decode(b)), dtype=torch.uint8)
             for b in kind["attention"][layer]]
    return torch.stack(heads).view(-1, rows, cols).float() / 255  # (H, rows, columns)


def source_ids(run, text):
    return torch.tensor([run.tokenizer.encode([text])[0][1:]])  # (1, S): pieces + [EOS]


def test_shapes_rows_and_causality(run):
    a = attend_translation(run, SOURCE, max_length=10)
    S, T = len(a.source_tokens), len(a.target_tokens)
    assert a.source_tokens[-1] == "[SEP]" and a.decoder_tokens[0] == "[CLS]"
    assert len(a.decoder_tokens) == T and S != T
    assert a.encoder.shape == (1, 2, S, S)
    assert a.decoder.shape == (2, 2, T, T) and a.cross.shape == (2, 2, T, S)
    for w in (a.encoder, a.decoder, a.cross):
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5, rtol=0)
    assert float(a.decoder.triu(diagonal=1).abs().max()) == 0.0  # causal


@pytest.mark.parametrize("beam", [1, 3])
def test_cross_attention_is_the_one_generation_captured(run, beam):
    a = attend_translation(run, SOURCE, beam=beam, max_length=10)
    ids = source_ids(run, SOURCE)
    mask = torch.ones_like(ids)
    hyp = (greedy_search(run.model, ids, mask, max_length=10, attention=True)[0] if beam == 1
           else beam_search_nbest(run.model, ids, mask, beam=beam, max_length=10,
                                  attention=True)[0][0])
    assert a.ids == hyp.tokens and a.finished == hyp.finished
    torch.testing.assert_close(a.cross, hyp.attention.float(), atol=0, rtol=0)
    assert a.translation == run.tokenizer.decode(hyp.tokens)


def test_payload_kinds_match_the_tensors(run):
    a = attend_translation(run, SOURCE, max_length=10)
    payload = translation_payload(run, [a])
    assert payload["model"] == "de-en/best"
    [s] = payload["sentences"]
    assert s["translation"] == a.translation and s["kind"] == "cross" and s["vectors"] is None
    kinds = {k["name"]: k for k in s["kinds"]}
    assert list(kinds) == ["self", "decoder", "cross"]
    expected = {"self": (a.encoder, a.source_tokens, a.source_tokens),
                "decoder": (a.decoder, a.decoder_tokens, a.decoder_tokens),
                "cross": (a.cross, a.target_tokens, a.source_tokens)}
    for name, (weights, rows, cols) in expected.items():
        k = kinds[name]
        assert k["query_tokens"] == rows and k["key_tokens"] == cols
        assert k["heads"] == [2] * weights.shape[0]
        for layer in range(weights.shape[0]):
            w = decoded(k, layer)
            assert w.shape == weights[layer].shape  # (H, T|S, T|S)
            torch.testing.assert_close(w, weights[layer], atol=0.5 / 255 + 1e-6, rtol=0)
    assert kinds["cross"]["key_special"][-1] == 1 and kinds["decoder"]["query_special"][0] == 1


def test_words_merge_pieces(run):
    a = attend_translation(run, SOURCE, max_length=10)
    kinds = {k["name"]: k for k in translation_payload(run, [a])["sentences"][0]["kinds"]}
    cross = kinds["cross"]["words"]
    assert cross["key_tokens"] == [*SOURCE.split(), "[SEP]"]  # [EOS] stays itself
    assert len(kinds["cross"]["key_tokens"]) > len(cross["key_tokens"])  # "fährt": 3 pieces
    assert kinds["self"]["words"]["query_tokens"] == cross["key_tokens"]
    assert kinds["decoder"]["words"]["query_tokens"][0] == "[CLS]"
    for k in kinds.values():
        for layer in range(len(k["words"]["heads"])):
            w = decoded(k["words"], layer)  # (H, words, words)
            rows = w.sum(-1)
            torch.testing.assert_close(rows, torch.ones_like(rows), atol=0.05, rtol=0)
    # the encoder's words by hand: a word starts at a "▁" piece; [EOS] stays itself
    starts = [i for i, t in enumerate(a.source_tokens) if t.startswith("\u2581")]
    groups = [range(b, e) for b, e in zip(starts, [*starts[1:], len(a.source_tokens) - 1],
                                          strict=True)] + [range(len(a.source_tokens) - 1,
                                                                  len(a.source_tokens))]
    w = a.encoder[0]  # (H, S, S)
    expected = torch.stack([torch.stack([w[:, list(q)][:, :, list(k)].sum(-1).mean(-1)
                                         for k in groups], -1) for q in groups], -2)  # (H, U, U)
    torch.testing.assert_close(decoded(kinds["self"]["words"], 0), expected,
                               atol=0.5 / 255 + 1e-6, rtol=0)


def test_page_is_self_contained_and_hostile_text_stays_data(run):
    page = render_page("view.html", translation_payload(run, [attend_translation(
        run, XSS, max_length=6)]))
    assert "default-src 'none'" in page and "connect-src" not in page
    assert "<img" not in page and page.count("<script") == 3
    block = re.search(r'<script id="attnlab-data" type="application/json">(.*?)</script>',
                      page, re.S).group(1)
    assert json.loads(block)["sentences"][0]["text"] == XSS


def test_show_html_writes_a_translation_page(translation_run, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "view.html"
    assert main(["show", str(translation_run), SOURCE, "Zwei Männer.", "--html", str(out),
                 "--beam", "2"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = json.loads(re.search(r'<script id="attnlab-data" type="application/json">(.*?)'
                                r'</script>', out.read_text(), re.S).group(1))
    assert data["model"] == "de-en" and [s["text"] for s in data["sentences"]] == [
        SOURCE, "Zwei Männer."]
    assert data["sentences"][0]["beam"] == 2 and len(data["sentences"][0]["kinds"]) == 3
    assert str(tmp_path) not in out.read_text()


# --- the live app and serve --example ---------------------------------------------------------

def embedded(page: str) -> dict:
    return json.loads(re.search(r'<script id="attnlab-data" type="application/json">(.*?)'
                                r'</script>', page, re.S).group(1))


def test_live_app_translates(run):
    testclient = pytest.importorskip("fastapi.testclient")
    client = testclient.TestClient(create_app(TranslationSubject(run, "de-en"), max_chars=80),
                                   base_url="http://127.0.0.1:8000")
    data = embedded(client.get("/").text)
    assert data["task"] == "translation" and data["max_chars"] == 80
    [s] = data["example"]["sentences"]
    assert s["text"] == TRANSLATION_EXAMPLE
    assert s["translation"] == attend_translation(run, TRANSLATION_EXAMPLE).translation
    r = client.post("/api/attend", json={"text": SOURCE})
    assert r.status_code == 200
    [s] = r.json()["sentences"]
    assert s["text"] == SOURCE and [k["name"] for k in s["kinds"]] == ["self", "decoder", "cross"]
    assert client.post("/api/attend", json={"text": "  "}).status_code == 422
    assert client.post("/api/attend", json={"text": "a" * 81}).status_code == 413
    assert client.post("/api/attend", json={"text": SOURCE},
                       headers={"Host": "evil.example"}).status_code == 400
    other = testclient.TestClient(
        create_app(TranslationSubject(run, "de-en"), example="Zwei Männer."),
        base_url="http://127.0.0.1")
    assert embedded(other.get("/").text)["example"]["sentences"][0]["text"] == "Zwei Männer."


@pytest.fixture
def serve_calls(monkeypatch):
    calls = []
    def fake_serve(subject, *, announce, **kw):  # announces once bound, as serve does
        calls.append((subject, kw))
        announce(f"http://{kw['host']}:{kw['port']}/")

    monkeypatch.setattr(cli_inspect, "serve", fake_serve)
    return calls


def test_serve_example_defaults_by_kind_of_run(translation_run, tmp_path, serve_calls, capsys):
    assert main(["serve", str(translation_run)]) == 0
    assert serve_calls[-1][1]["example"] == TRANSLATION_EXAMPLE
    assert "serving de-en on http://127.0.0.1:8000/" in capsys.readouterr().out
    assert main(["serve", str(translation_run), "--example", "Zwei Männer."]) == 0
    assert serve_calls[-1][1]["example"] == "Zwei Männer."
    classifier = make_tiny_run(tmp_path / "clf")
    assert main(["serve", str(classifier)]) == 0
    assert serve_calls[-1][1]["example"] == EXAMPLE
    assert main(["serve", str(classifier), "--example", "i loved it"]) == 0
    assert serve_calls[-1][1]["example"] == "i loved it"
    assert main(["serve", str(classifier), "--example", ""]) == 0
    assert serve_calls[-1][1]["example"] is None
    capsys.readouterr()
    assert main(["serve", str(classifier), "--example", "a" * 30, "--max-chars", "20"]) == 2
    assert "--example is 30 characters; --max-chars is 20" in capsys.readouterr().err
