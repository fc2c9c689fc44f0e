"""What the browser tests share: where Chromium is and how it starts, the marks of a browser test
module, and the live app served on a free loopback port. The ``browser`` and ``page`` fixtures
(conftest.py) start Chromium with these settings."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
READY = '#attnlab-view[data-ready="1"]'  # the view has drawn

BROWSER_MARKS = [  # a browser test module's pytestmark
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Chromium not found at /usr/bin/chromium (apt-get install -y "
                              "chromium) - browser tests skipped"),
]


def serve(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port; yield its address (for a fixture).
    Skips the test when uvicorn is missing."""
    uvicorn = pytest.importorskip("uvicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the attnlab app did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
