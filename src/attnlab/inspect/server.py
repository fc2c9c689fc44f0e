"""Running the live app with uvicorn, bounded: the port is bound before anything is said (a
port in use is one line), and a client gets a deadline for each request (:class:`ServeLimits`),
which uvicorn alone does not set.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from attnlab.errors import InputError

__all__ = ["DEFAULT_LIMITS", "ServeLimits", "bind_sockets", "make_server"]


@dataclass(frozen=True)
class ServeLimits:
    """How long and how much :func:`serve` waits for a client."""

    request_timeout: float = 10.0  # s to send a whole request, from connecting or last answer
    keep_alive: float = 5.0  # s an idle connection stays open after an answer (uvicorn's)
    max_head_bytes: int = 16 * 1024  # longest request line and headers (h11's bound)
    max_connections: int = 64  # open connections from which new requests get 503


DEFAULT_LIMITS = ServeLimits()  # what `attnlab serve` uses


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` at ``port`` (as uvicorn binds them), not yet
    listening. Raises :class:`~attnlab.errors.InputError` naming the port when it is in use,
    and the host when it cannot be resolved or is not this machine's."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise InputError(f"cannot serve on {where}: {err.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            if sockets and port == 0:  # one port for all addresses
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as err:
                sock.close()
                if err.errno != errno.EADDRNOTAVAIL:
                    raise
                continue  # that family is off on this machine (asyncio skips it too)
            sockets.append(sock)
        if not sockets:
            raise OSError(errno.EADDRNOTAVAIL, "no address to bind")
    except OSError as err:
        for sock in sockets:
            sock.close()
        reason = {errno.EADDRINUSE: f"port {port} is already in use (by another server?); "
                                    f"choose another port",
                  errno.EACCES: f"no permission to use port {port}",
                  errno.EADDRNOTAVAIL: f"{host} is not an address of this machine"}
        raise InputError(f"cannot serve on {where}: "
                         f"{reason.get(err.errno, err.strerror)}") from None
    return sockets


def make_server(app, limits: ServeLimits = DEFAULT_LIMITS, **options):
    """A ``uvicorn.Server`` running ``app`` within ``limits``; ``options``: other
    ``uvicorn.Config`` settings. Run it with ``server.run(sockets=bind_sockets(...))``."""
    import uvicorn

    options.setdefault("log_level", "info")
    config = uvicorn.Config(app, http=_deadline_protocol(limits.request_timeout),
                            timeout_keep_alive=limits.keep_alive,
                            h11_max_incomplete_event_size=limits.max_head_bytes,
                            limit_concurrency=limits.max_connections, **options)
    return uvicorn.Server(config)


def _deadline_protocol(timeout: float):
    """uvicorn's h11 protocol, closing a connection that has not sent a whole request within
    ``timeout`` seconds of connecting or of its last answer (a request received in full is
    answered however long that takes)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DeadlineH11Protocol(H11Protocol):
        deadline = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request's deadline

        def connection_lost(self, exc) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
            if not self.transport.is_closing():
                self.deadline = self.loop.call_later(timeout, self._expire)

        def _expire(self) -> None:
            cycle = self.cycle
            received = cycle is not None and not cycle.response_complete and not cycle.more_body
            if not received and not self.transport.is_closing():
                self.transport.close()  # a request mid-body reads a disconnect

    return DeadlineH11Protocol
