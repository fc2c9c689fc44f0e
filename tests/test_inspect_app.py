"""The live app's API: answers, errors with 4xx and a message, and keeps serving after them."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from attnlab.inspect.app import allowed_hosts, create_app, is_loopback  # noqa: E402
from attnlab.inspect.roles_probe import head_roles  # noqa: E402
from attnlab.inspect.subject import EXAMPLE, load_subject  # noqa: E402
from tiny_run import make_tiny_run  # noqa: E402


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return load_subject(make_tiny_run(tmp_path_factory.mktemp("run") / "run"))


@pytest.fixture(scope="module")
def client(subject):
    # the Host header must be a loopback name (see test_host_header_is_checked)
    return TestClient(create_app(subject, max_chars=80), base_url="http://127.0.0.1:8000")


def test_page_and_answer(client):
    page = client.get("/")
    assert page.status_code == 200 and "attnlab-form" in page.text
    r = client.post("/api/attend", json={"text": "a good film"})
    assert r.status_code == 200
    s = r.json()["sentences"][0]
    assert s["tokens"] == ["[CLS]", "a", "good", "film", "[SEP]"]
    assert s["heads"] == [4, 4] and s["prediction"]["label"] in ("negative", "positive")


@pytest.mark.parametrize("body,status,message", [
    (b"not json", 400, "body must be JSON"),
    (b"", 400, "body must be JSON"),
    (b'["a list"]', 422, 'object with a "text" field'),
    (b'{"txt": "hi"}', 422, 'object with a "text" field'),
    (b'{"text": 3}', 422, '"text" must be a string, got int'),
    (b'{"text": "   "}', 422, '"text" is empty'),
    (b'{"text": "' + b"a" * 81 + b'"}', 413, '"text" is 81 characters; the limit is 80'),
    (b"\xff\xfe", 400, "body must be JSON"),
])
def test_bad_requests_get_4xx_and_server_stays_up(client, body, status, message):
    r = client.post("/api/attend", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status
    assert message in r.json()["detail"]
    assert client.post("/api/attend", json={"text": "i loved it"}).status_code == 200


def test_hostile_text_comes_back_as_data(client):
    text = "<img src=x onerror=alert(1)> </script><script>alert(2)</script>"
    r = client.post("/api/attend", json={"text": text})
    assert r.status_code == 200 and r.json()["sentences"][0]["text"] == text


def test_bad_limit():
    with pytest.raises(ValueError, match="max_chars"):
        create_app(object(), max_chars=0)


def test_serve_binds_localhost_by_default():
    from attnlab.cli import build_parser

    args = build_parser().parse_args(["serve", "runs/x"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


# --- a hostile client (issue 14, section 4) ---------------------------------------------------

def _asgi_post(app, headers, chunk=b"x" * 16384, max_chunks=200):
    """POST /api/attend straight to the ASGI app; returns (status, body, receive calls)."""
    calls = []

    async def receive():
        calls.append(1)
        if len(calls) > max_chunks:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": len(calls) < max_chunks}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/attend",
             "raw_path": b"/api/attend", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                         *headers],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), len(calls)


def test_body_over_limit_by_content_length_is_refused_unread(client):
    status, body, calls = _asgi_post(client.app, [(b"content-length", b"100000000")])
    assert status == 413 and "Content-Length 100000000" in body["detail"]
    assert "limit is 65536 bytes" in body["detail"]
    assert calls == 0  # not one byte of the body was read


def test_chunked_body_reading_stops_past_the_limit(client):
    status, body, calls = _asgi_post(client.app, [])  # no Content-Length: chunked
    assert status == 413 and "larger than the limit of 65536 bytes" in body["detail"]
    assert calls <= 65536 // 16384 + 1  # stopped at the limit, not at 200 chunks


def test_big_bodies_get_413_over_http(client):
    r = client.post("/api/attend", content=b"x" * 70000,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "Content-Length 70000" in r.json()["detail"]

    def chunks():
        for _ in range(10):
            yield b"x" * 10000

    r = client.post("/api/attend", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than the limit" in r.json()["detail"]
    assert client.post("/api/attend", json={"text": "i loved it"}).status_code == 200


@pytest.mark.parametrize("body,message", [
    (b'{"text":"\\ud800 film"}', "lone surrogate"),
    (b'{"text":"a film \xed\xa0\x80"}', "lone surrogate"),
    (b"[" * 30000 + b"]" * 30000, "nested too deeply"),
    (b'{"text":"a film", "n":' + b"7" * 5000 + b"}", "too many digits"),
])
def test_hostile_json_gets_400_not_500(client, body, message):
    r = client.post("/api/attend", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert message in r.json()["detail"]
    assert client.post("/api/attend", json={"text": "i loved it"}).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:80",
                                  "[::1]", "[::1]:8000"])
def test_loopback_host_names_are_served(client, host):
    assert client.get("/", headers={"Host": host}).status_code == 200
    r = client.post("/api/attend", json={"text": "a film"}, headers={"Host": host})
    assert r.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "localhost.evil.example", "[::1", "::1", "127.0.0.1:x", ""])
def test_host_header_is_checked(client, host):
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 is refused."""
    for r in (client.get("/", headers={"Host": host}),
              client.post("/api/attend", json={"text": "a film"}, headers={"Host": host})):
        assert r.status_code == 400
        assert "not allowed" in r.json()["detail"] and "--allow-host" in r.json()["detail"]


def test_allowed_hosts_for_an_explicit_host(subject):
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("192.168.1.5") == {"127.0.0.1", "localhost", "::1", "192.168.1.5"}
    assert allowed_hosts("0.0.0.0", ["Box.lan", "[fe80::1]"]) == {
        "127.0.0.1", "localhost", "::1", "box.lan", "fe80::1"}
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    app = TestClient(create_app(subject, allowed_hosts=allowed_hosts("0.0.0.0", ["box.lan"])),
                     base_url="http://box.lan:8000")
    assert app.get("/").status_code == 200
    assert app.get("/", headers={"Host": "127.0.0.1"}).status_code == 200
    assert app.get("/", headers={"Host": "evil.example"}).status_code == 400
    anyone = TestClient(create_app(subject, allowed_hosts=["*"]), base_url="http://evil.example")
    assert anyone.get("/").status_code == 200


def test_page_names_the_model_not_its_path(client, subject):
    page = client.get("/").text
    path = subject.name
    assert path not in page and '"model":"run"' in page
    r = client.post("/api/attend", json={"text": "a good film"})
    assert r.json()["model"] == "run"


# --- the page opens on an example, and the API carries the neuron view's vectors ---------------

def embedded(page: str) -> dict:
    block = re.search(r'<script id="attnlab-data" type="application/json">(.*?)</script>',
                      page, re.S).group(1)
    return json.loads(block)


def test_page_opens_on_the_example_with_its_vectors(client, subject):
    page = client.get("/").text
    data = embedded(page)
    assert data["model"] == "run" and data["max_chars"] == 80
    [s] = data["example"]["sentences"]
    assert s["text"] == EXAMPLE and s["tokens"][0] == "[CLS]"
    assert data["example"]["model"] == "run" and subject.name not in page
    assert len(s["vectors"]) == 2 and s["vectors"][0]["d_k"] == 4
    assert "see what attention attends to" in page


def test_answer_carries_vectors(client):
    s = client.post("/api/attend", json={"text": "a good film"}).json()["sentences"][0]
    assert s["vectors_note"] is None and len(s["vectors"]) == 2
    assert len(s["vectors"][1]["q"]) == 4 and s["vectors"][1]["mask"] is None


def test_example_is_configurable(subject):
    page = TestClient(create_app(subject, example="i loved it"),
                      base_url="http://127.0.0.1").get("/").text
    assert embedded(page)["example"]["sentences"][0]["text"] == "i loved it"
    page = TestClient(create_app(subject, example=None), base_url="http://127.0.0.1").get("/")
    assert embedded(page.text)["example"] is None
    for bad in ("", "  ", "a" * 81, 3):
        with pytest.raises(ValueError, match="example must be None or a sentence of 1 to 80"):
            create_app(subject, max_chars=80, example=bad)


def test_page_carries_the_roles_of_every_head(client, subject):
    """The Roles tab's data, scored once at start-up: every head of the model, as
    `heads --roles` scores them."""
    roles = embedded(client.get("/").text)["roles"]
    table = head_roles(subject)
    assert [(h["layer"], h["head"]) for h in roles["heads"]] == \
        [(h.layer, h.head) for h in table.heads] == [(l, h) for l in range(2) for h in range(4)]
    assert roles["heads"][5]["scores"] == pytest.approx(table.heads[5].scores)
    assert roles["model"] == "run" and "marked" in roles
