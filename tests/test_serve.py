"""``attnlab serve`` over a real socket: a port in use, a client that leaves mid-body, idle and
slow clients. Every server here listens on 127.0.0.1 only, on a port the system picks; every
client loop is bounded and every socket has a timeout."""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import threading
import time
from contextlib import contextmanager

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from attnlab.cli import build_parser, main  # noqa: E402
from attnlab.errors import InputError  # noqa: E402
from attnlab.inspect.app import (  # noqa: E402
    ServeLimits,
    bind_sockets,
    create_app,
    make_server,
    serve,
)

HEAD = (b"POST /api/attend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n")


class Records(logging.Handler):
    """Every record logged on ``uvicorn.error`` (where uvicorn logs a failed request)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.exc_info or r.levelno >= logging.ERROR]


@contextmanager
def running(server, sockets):
    """Run ``server`` on ``sockets`` in a thread; yield its port and the records it logs."""
    records, logger = Records(), logging.getLogger("uvicorn.error")
    logger.addHandler(records)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        yield sockets[0].getsockname()[1], records
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        logger.removeHandler(records)
        for sock in sockets:
            sock.close()


def loopback_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def settle(server, limit=5.0) -> None:
    """Wait (at most ``limit`` s) until the server holds no connection and runs no request."""
    deadline = time.monotonic() + limit
    while server.server_state.connections or server.server_state.tasks:
        assert time.monotonic() < deadline, "the server still holds a connection"
        time.sleep(0.02)


def closed_within(sock: socket.socket, seconds: float, feed: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (``None``: still open after ``seconds``),
    sending ``feed`` one byte every 0.05 s meanwhile (a slow client)."""
    start = time.monotonic()
    for i in range(int(seconds / 0.05) + 1):
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                if sock.recv(4096) == b"":
                    return time.monotonic() - start
            except ConnectionResetError:
                return time.monotonic() - start
        if i < len(feed):
            try:
                sock.sendall(feed[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
    return None


def ask(port: int, body: bytes = b'{"text": "a good film"}') -> bytes:
    """POST ``body`` on a new connection that the server closes after answering; the answer."""
    head = HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head % len(body) + body)
        chunks = []
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    raise AssertionError("the answer did not end")


# --- a port in use ---------------------------------------------------------------------------

@pytest.fixture
def taken_port():
    with socket.socket() as other:  # another program's server, on loopback
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_bind_refuses_a_port_in_use(taken_port):
    with pytest.raises(InputError, match=f"127.0.0.1:{taken_port}.*port {taken_port} is "
                                         f"already in use"):
        bind_sockets("127.0.0.1", taken_port)


def test_serve_a_port_in_use_is_one_line_and_exit_2(classifier_run, taken_port, capsys,
                                                    monkeypatch):
    def no_server(*args, **kwargs):
        raise AssertionError("uvicorn started although the port is taken")

    monkeypatch.setattr(uvicorn.Server, "run", no_server)
    assert main(["serve", str(classifier_run), "--port", str(taken_port)]) == 2
    out, err = capsys.readouterr()
    assert "serving" not in out  # nothing announced before the port is bound
    assert err.count("\n") == 1 and f"port {taken_port} is already in use" in err
    assert err.startswith("attnlab serve: error:")


def test_serve_library_raises_input_error(classifier, taken_port):
    with pytest.raises(InputError, match=f"port {taken_port} is already in use"):
        serve(classifier, host="127.0.0.1", port=taken_port)


@pytest.mark.parametrize("option,message", [
    (["--port", "70000"], "--port must be in [0, 65535], got 70000"),
    (["--max-chars", "0"], "--max-chars must be >= 1, got 0"),
])
def test_serve_bad_options_are_one_line(classifier_run, option, message, capsys):
    assert main(["serve", str(classifier_run), *option]) == 2
    assert message in capsys.readouterr().err


def test_serve_help_states_the_limits(capsys):
    """The numbers in ``attnlab serve --help`` are those :class:`ServeLimits` holds."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    limits = ServeLimits()
    assert f"A client has {limits.request_timeout:g} s to send a whole request" in text
    assert f"head of at most {limits.max_head_bytes // 1024} KiB" in text
    assert f"closed {limits.keep_alive:g} s after its last answer" in text
    assert f"from {limits.max_connections} open connections on" in text


# --- a client that leaves mid-body -----------------------------------------------------------

def test_client_leaving_mid_body_leaves_no_traceback(classifier):
    """Content-Length 60000, 1000 bytes sent, then gone: the request ends quietly."""
    sock = loopback_socket()
    server = uvicorn.Server(uvicorn.Config(create_app(classifier), log_config=None,
                                           log_level="info"))
    with running(server, [sock]) as (port, records):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(HEAD % 60000)
                for _ in range(5):
                    s.sendall(b'{"text": "' + b"a" * 190)
                    time.sleep(0.02)
            settle(server)
        assert records.tracebacks() == []
        assert b" 200 OK" in ask(port)  # and the server goes on answering


# --- idle and slow clients -------------------------------------------------------------------

FAST = ServeLimits(request_timeout=0.6, keep_alive=0.3)


@contextmanager
def bounded(app, limits=FAST):
    server = make_server(app, limits, log_config=None)
    with running(server, bind_sockets("127.0.0.1", 0)) as (port, records):
        yield server, port, records


def test_an_idle_connection_is_closed_within_the_timeout(classifier):
    with bounded(create_app(classifier)) as (server, port, records):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            waited = closed_within(s, 6.0)  # sends nothing at all
        assert waited is not None and waited < FAST.request_timeout + 2.5
        settle(server)
        assert records.tracebacks() == []


@pytest.mark.parametrize("part", ["head", "body"])
def test_a_slow_client_is_cut_off_at_the_request_timeout(classifier, part):
    """One byte every 0.05 s never completes the request within the timeout."""
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"y" * 200
    with bounded(create_app(classifier)) as (server, port, records):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if part == "body":
                s.sendall(HEAD % 2000)
                head = b'{"text": "' + b"a" * 200
            waited = closed_within(s, 6.0, feed=head)
        assert waited is not None and waited < FAST.request_timeout + 2.5
        settle(server)
        assert records.tracebacks() == []


def test_keep_alive_connection_is_closed_after_its_answer(classifier):
    with bounded(create_app(classifier)) as (_, port, _records):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            body = b'{"text": "a good film"}'
            s.sendall(HEAD % len(body) + body)
            assert b" 200 OK" in s.recv(65536)
            waited = closed_within(s, 6.0)
        assert waited is not None and waited < FAST.keep_alive + 2.5


def test_a_slow_answer_is_not_cut_off():
    """The timeout bounds the client, not the model: a request received in full is answered
    however long the answer takes."""
    async def slow(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await asyncio.sleep(FAST.request_timeout * 2)  # the model at work, in a thread
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"done"})

    with bounded(slow) as (_, port, records):
        answer = ask(port)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done")
        assert records.tracebacks() == []
