"""The live app's API: answers, errors with 4xx and a message, and keeps serving after them."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from attnlab.inspect.app import create_app  # noqa: E402
from attnlab.inspect.subject import load_subject  # noqa: E402
from tiny_run import make_tiny_run  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    subject = load_subject(make_tiny_run(tmp_path_factory.mktemp("run") / "run"))
    return TestClient(create_app(subject, max_chars=80))


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
