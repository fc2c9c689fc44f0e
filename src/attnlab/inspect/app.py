"""A live attention explorer: type a sentence, see the prediction, the rollout, what mattered
to the decision (each token's attribution by a method the user picks) and every head.

``create_app(subject)`` serves any :class:`~attnlab.inspect.protocol.Inspectable`: a
classifier or encoder (a :class:`~attnlab.inspect.subject.Subject`), or a translation run (the
page then shows the translation and its encoder self-, decoder self- and cross-attention); the
subject gives the page's data (:meth:`~attnlab.inspect.protocol.Inspectable.payload`) and the
sentence it opens on. It returns a FastAPI application with:

* ``GET /``: the page (the same view as the HTML file, plus a text box), opening on an example
  sentence already analysed (its data embedded) and updating as the user types;
* ``POST /api/attend`` with ``{"text": "..."}``: the page's data for that text (JSON, with the
  queries, keys and values the neuron view needs), or a 4xx
  with ``{"detail": message}`` for a body that is not JSON, not an object with a string
  ``text``, an empty text, or a text over the length limit.

A hostile client gets a 4xx too: a body over 64 KiB is refused by its ``Content-Length`` before
it is read, and a chunked one once the limit is passed (413); a lone surrogate, JSON nested too
deeply and a number of thousands of digits get 400. Every request's ``Host`` header must name
an allowed host (400 otherwise): by default only the loopback names ``127.0.0.1``,
``localhost`` and ``[::1]``, so a page whose domain name was re-pointed at 127.0.0.1 (DNS
rebinding) cannot use the app. :func:`allowed_hosts` adds the bound address and the names given.

Requests are served one at a time (the model is not shared between threads) and a bad request
never stops the server, nor does a client that leaves mid-body. :func:`serve` runs it with
uvicorn, on 127.0.0.1 unless told otherwise, within :class:`ServeLimits`: uvicorn closes idle
connections after an answer but sets no deadline on a request; :func:`make_server` adds one.

(No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations, and
``Request`` is imported inside :func:`create_app`, FastAPI being an optional dependency.)
"""

import ipaddress
import json
import sys
import threading
from collections.abc import Callable, Iterable

from attnlab.errors import InputError
from attnlab.inspect.html import model_name, render_page
from attnlab.inspect.protocol import Inspectable
from attnlab.inspect.roles_probe import head_roles
from attnlab.inspect.roles_view import roles_payload
from attnlab.inspect.server import DEFAULT_LIMITS, ServeLimits, bind_sockets, make_server

__all__ = ["LOOPBACK_HOSTS", "MAX_CHARS", "ServeLimits", "allowed_hosts", "bind_sockets",
           "create_app", "is_loopback", "make_server", "non_loopback_warning", "serve"]

MAX_CHARS = 2000  # longest text accepted by /api/attend, in characters


class _Default:
    """The type of :data:`DEFAULT`: the example that suits the subject."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()  # create_app's and serve's example: default_example(subject)
_MAX_BODY = 64 * 1024  # longest request body read, in bytes
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})  # Host names accepted by default
ANY_HOST = "*"  # in allowed hosts: accept every Host header
_WILDCARDS = {"0.0.0.0", "::", ""}  # addresses that bind every interface


def _host_name(value: str) -> str:
    """A host name as compared: lower case, without a final dot or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return value.rstrip(".") if value != "." else value


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to bind) reaches this machine only."""
    name = _host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str = "127.0.0.1", extra: Iterable[str] = ()) -> set[str]:
    """The ``Host`` header names the app accepts when bound to ``host``.

    Always the loopback names; also ``host`` itself unless it binds every interface
    (``0.0.0.0``, ``::``), and each name of ``extra`` (``"*"``: any host at all).
    """
    names = set(LOOPBACK_HOSTS)
    if _host_name(host) not in _WILDCARDS and not is_loopback(host):
        names.add(_host_name(host))
    names.update(ANY_HOST if n.strip() == ANY_HOST else _host_name(n) for n in extra)
    return names


def non_loopback_warning(host: str, port: int) -> str | None:
    """The warning to print before binding ``host``, or ``None`` for a loopback address."""
    if is_loopback(host):
        return None
    names = ("; requests that name this machine other than by a loopback name need "
             "--allow-host NAME" if _host_name(host) in _WILDCARDS else "")
    return (f"--host {host} is not a loopback address: the app then answers anyone who can "
            f"reach this machine on port {port}, without any authentication (use the default "
            f"--host 127.0.0.1 to serve this machine only){names}")


def _split_host_header(value: str) -> str | None:
    """The host name of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), or None."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    elif value.count(":") > 1:  # a bare IPv6 address is not a valid Host header
        return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    name = _host_name(name)
    return name or None


class _HostCheck:
    """ASGI middleware: a request whose ``Host`` header is not allowed gets 400."""

    def __init__(self, app, hosts: set[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket") and ANY_HOST not in self.hosts:
            raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            name = _split_host_header(raw)
            if name not in self.hosts:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                shown = ", ".join(f"[{h}]" if ":" in h else h for h in sorted(self.hosts))
                detail = (f"Host {raw!r} is not allowed: this app answers only to {shown} "
                          f"(start it with --allow-host NAME to accept another name)")
                body = json.dumps({"detail": detail}).encode("utf-8")
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode("ascii"))]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _parse_json(body: bytes, http_error):
    """``body`` as JSON; each kind of bad body raises ``http_error(400, message)``."""
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise http_error(400, 'body must be JSON: {"text": "a sentence"}') from None
    except UnicodeDecodeError:
        raise http_error(400, 'body must be JSON in UTF-8: {"text": "a sentence"}') from None
    except RecursionError:
        raise http_error(400, "body must be JSON nested only a few levels deep; this one is "
                              "nested too deeply") from None
    except ValueError:  # an integer of more digits than int() converts (4300)
        raise http_error(400, "body must be JSON without huge numbers; one here has too many "
                              "digits") from None


def _roles(subject: Inspectable) -> dict | None:
    """The Roles tab's data (every head scored once, at start-up), or ``None`` where the role
    probe does not fit the model (said on stderr)."""
    try:
        return roles_payload(head_roles(subject))
    except InputError as err:
        print(f"attnlab serve: no Roles tab: {err}", file=sys.stderr)
        return None


def create_app(subject: Inspectable, *, max_chars: int = MAX_CHARS,
               allowed_hosts: Iterable[str] | None = None,
               example: str | None | _Default = DEFAULT):
    """The FastAPI application serving ``subject``.

    Args:
        subject: the model (see :class:`~attnlab.inspect.protocol.Inspectable`; e.g.
            :func:`~attnlab.inspect.subject.load_subject`).
        max_chars: longest text accepted; longer ones get 413.
        allowed_hosts: ``Host`` header names answered (see :func:`allowed_hosts`; ``"*"`` for
            any); default the loopback names only. Other hosts get 400.
        example: the sentence the page opens on, analysed once here and embedded in the page
            (default the subject's ``default_example``); ``None`` opens on an empty text box.
    """
    try:
        from fastapi import FastAPI, HTTPException, Request
        from fastapi.concurrency import run_in_threadpool
        from fastapi.responses import HTMLResponse, JSONResponse
        from starlette.requests import ClientDisconnect
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("the live app needs FastAPI and uvicorn: pip install "
                          "'attnlab[serve]'") from err
    if not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be an integer >= 1, got {max_chars!r}")
    if not isinstance(subject, Inspectable):
        raise TypeError(f"subject must be Inspectable (load_subject, or attnlab.tasks."
                        f"open_subject), got {type(subject).__name__}")
    if isinstance(example, _Default):
        example = subject.default_example
    if example is not None and not (isinstance(example, str) and example.strip()
                                    and len(example) <= max_chars):
        raise ValueError(f"example must be None or a sentence of 1 to {max_chars} characters, "
                         f"got {example!r}")

    hosts = set(LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts)
    hosts = {h if h == ANY_HOST else _host_name(h) for h in hosts}
    if not hosts:
        raise ValueError("allowed_hosts must name at least one host")

    app = FastAPI(title="attnlab", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_HostCheck, hosts=hosts)
    lock = threading.Lock()

    def run(text: str) -> dict:
        with lock:  # one forward pass (or translation) at a time
            return subject.payload(text)

    page = render_page("app.html", {"model": model_name(subject.name), "max_chars": max_chars,
                                    "task": subject.task,
                                    "example": None if example is None else run(example),
                                    "roles": _roles(subject)})

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    async def read_body(request: Request) -> bytes:
        """The body, refused (413) by its Content-Length or once past the limit."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise HTTPException(400, f"Content-Length must be a number of bytes, got "
                                         f"{declared!r}")
            if int(declared) > _MAX_BODY:
                raise HTTPException(413, f"request body too large: Content-Length {declared} "
                                         f"bytes; the limit is {_MAX_BODY} bytes")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > _MAX_BODY:
                    raise HTTPException(413, f"request body is larger than the limit of "
                                             f"{_MAX_BODY} bytes")
                chunks.append(chunk)
        except ClientDisconnect:  # gone (or cut off at the deadline): no one reads the answer
            raise HTTPException(400, "the client left before sending the whole body") from None
        return b"".join(chunks)

    @app.post("/api/attend")
    async def attend(request: Request) -> JSONResponse:
        data = _parse_json(await read_body(request), HTTPException)
        if not isinstance(data, dict) or "text" not in data:
            raise HTTPException(422, 'body must be a JSON object with a "text" field')
        text = data["text"]
        if not isinstance(text, str):
            raise HTTPException(422, f'"text" must be a string, got {type(text).__name__}')
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise HTTPException(400, f'"text" holds a lone surrogate ({text[err.start]!r} at '
                                     f'character {err.start}), which is not Unicode text; '
                                     f'send UTF-8 text') from None
        if not text.strip():
            raise HTTPException(422, '"text" is empty; type a sentence')
        if len(text) > max_chars:
            raise HTTPException(413, f'"text" is {len(text)} characters; the limit is '
                                     f'{max_chars}')
        try:
            payload = await run_in_threadpool(run, text)
        except ValueError as err:  # a text of no tokens (translation runs say so)
            raise HTTPException(422, str(err)) from None
        return JSONResponse(payload)

    return app


def serve(subject: Inspectable, *, host: str = "127.0.0.1", port: int = 8000,
          max_chars: int = MAX_CHARS, allowed_hosts: Iterable[str] | None = None,
          example: str | None | _Default = DEFAULT, limits: ServeLimits = DEFAULT_LIMITS,
          announce: Callable[[str], None] | None = None) -> None:
    """Run the app with uvicorn until interrupted.

    ``allowed_hosts``: the ``Host`` names answered; default :func:`allowed_hosts` of ``host``.
    ``example``: the sentence the page opens on (see :func:`create_app`). ``announce(url)`` is
    called once the port is bound (a port in use raises :class:`~attnlab.errors.InputError`,
    see :func:`bind_sockets`) and the app built, just before serving.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ValueError(f"port must be an integer in [0, 65535], got {port!r}")
    hosts = _allowed(host) if allowed_hosts is None else allowed_hosts
    sockets = bind_sockets(host, port)
    try:
        app = create_app(subject, max_chars=max_chars, allowed_hosts=hosts, example=example)
        if announce is not None:
            shown = f"[{host}]" if ":" in host else host
            announce(f"http://{shown}:{sockets[0].getsockname()[1]}/")
        make_server(app, limits).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()


_allowed = allowed_hosts  # create_app's and serve's parameter of that name hides the function
