"""A live attention explorer: type a sentence, see the prediction, the rollout and every head.

``create_app(subject)`` returns a FastAPI application with:

* ``GET /``: the page (the same view as the HTML file, plus a text box);
* ``POST /api/attend`` with ``{"text": "..."}``: the page's data for that text (JSON), or a 4xx
  with ``{"detail": message}`` for a body that is not JSON, not an object with a string
  ``text``, an empty text, or a text over the length limit.

Requests are served one at a time (the model is not shared between threads) and a bad request
never stops the server. :func:`serve` runs it with uvicorn, on 127.0.0.1 unless told otherwise.

(No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations, and
``Request`` is imported inside :func:`create_app`, FastAPI being an optional dependency.)
"""

import json
import threading

from attnlab.inspect.html import attention_payload, render_page
from attnlab.inspect.subject import Subject

__all__ = ["MAX_CHARS", "create_app", "serve"]

MAX_CHARS = 2000  # longest text accepted by /api/attend, in characters
_MAX_BODY = 64 * 1024  # longest request body read, in bytes


def create_app(subject: Subject, *, max_chars: int = MAX_CHARS):
    """The FastAPI application serving ``subject``.

    Args:
        subject: the model (see :func:`~attnlab.inspect.subject.load_subject`).
        max_chars: longest text accepted; longer ones get 413.
    """
    try:
        from fastapi import FastAPI, HTTPException, Request
        from fastapi.concurrency import run_in_threadpool
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("the live app needs FastAPI and uvicorn: pip install "
                          "'attnlab[serve]'") from err
    if not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be an integer >= 1, got {max_chars!r}")

    app = FastAPI(title="attnlab", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()
    page = render_page("app.html", {"model": subject.name, "max_chars": max_chars})

    def run(text: str) -> dict:
        with lock:  # one forward pass at a time
            attended = subject.attend([text])
        return attention_payload(subject.name, attended, subject.labels)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.post("/api/attend")
    async def attend(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > _MAX_BODY:
            raise HTTPException(413, f"request body is {len(body)} bytes; the limit is "
                                     f"{_MAX_BODY}")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HTTPException(400, 'body must be JSON: {"text": "a sentence"}') from None
        if not isinstance(data, dict) or "text" not in data:
            raise HTTPException(422, 'body must be a JSON object with a "text" field')
        text = data["text"]
        if not isinstance(text, str):
            raise HTTPException(422, f'"text" must be a string, got {type(text).__name__}')
        if not text.strip():
            raise HTTPException(422, '"text" is empty; type a sentence')
        if len(text) > max_chars:
            raise HTTPException(413, f'"text" is {len(text)} characters; the limit is '
                                     f'{max_chars}')
        payload = await run_in_threadpool(run, text)
        return JSONResponse(payload)

    return app


def serve(subject: Subject, *, host: str = "127.0.0.1", port: int = 8000,
          max_chars: int = MAX_CHARS) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    if not 0 <= port < 65536:
        raise ValueError(f"port must be in [0, 65535], got {port}")
    uvicorn.run(create_app(subject, max_chars=max_chars), host=host, port=port,
                log_level="info")
