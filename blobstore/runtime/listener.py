"""The listening socket of a node: every connection waiting in the backlog is accepted each
time the socket is readable, not one per turn of the event loop.

uvloop (libuv) accepts a single connection per loop iteration. While a gateway is busy
(16 large GETs at once made its iterations 10-25 ms long), forty clients connecting together
waited up to 0.66 s just to be accepted, one after the other, before their first request
was even read; a request that admission control would refuse at once got its 503 SlowDown
after more than a second under the chaos schedule. asyncio's own selector loop drains up to
``backlog`` connections per wake-up; this does the same on any loop: accept until the
backlog is empty and hand each socket to the loop with ``connect_accepted_socket``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from typing import Any

from aiohttp import web
from yarl import URL

log = logging.getLogger(__name__)
# Errors that say the process or the kernel is out of a resource, not that one client
# misbehaved: the waiting connections stay in the backlog and accepting pauses briefly.
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_PAUSE_S = 1.0


class BatchAcceptSite(web.BaseSite):
    """A ``web.TCPSite`` (address reuse on, as before) whose backlog is drained in batches."""

    __slots__ = ("_host", "_port", "_name")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = 128) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host, self._port = host, port
        scheme = "https" if ssl_context else "http"
        self._name = str(URL.build(scheme=scheme, host=host or "0.0.0.0", port=port))

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        factory = self._runner.server
        assert factory is not None
        sock = listening_socket(self._host, self._port, self._backlog)
        self._server = BatchAcceptor(asyncio.get_running_loop(), sock, factory,  # type: ignore[assignment]
                                     self._ssl_context, self._backlog)


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking socket listening on ``host:port``; OSError (e.g. EADDRINUSE) as is."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


class BatchAcceptor:
    """Accepts on ``sock`` for ``factory``; looks enough like an ``asyncio.Server`` for
    aiohttp's runner, which only closes it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Any,
                 ssl_context: ssl.SSLContext | None, batch: int) -> None:
        self._loop, self._sock, self._factory = loop, sock, factory
        self._ssl, self._batch = ssl_context, max(1, batch)
        self._handshakes: set[asyncio.Task[None]] = set()
        self._closed = False
        loop.add_reader(sock.fileno(), self._accept_waiting)

    def _accept_waiting(self) -> None:
        for _ in range(self._batch):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    log.warning("cannot accept connections for %.0f s: %s", ACCEPT_PAUSE_S, exc)
                    self._loop.remove_reader(self._sock.fileno())
                    self._loop.call_later(ACCEPT_PAUSE_S, self._resume)
                    return
                continue  # e.g. ECONNABORTED: that client gave up; take the next one
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self._loop.create_task(self._connect(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
        except (OSError, ssl.SSLError) as exc:  # a failed TLS handshake, a reset: that client's
            log.debug("connection dropped before it was served: %s", exc)
            conn.close()

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept_waiting)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for task in self._handshakes:
            task.cancel()

    async def wait_closed(self) -> None:
        return None
