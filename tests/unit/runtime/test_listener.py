"""A node's listening socket accepts every waiting connection at once, on uvloop too, so a
busy node does not keep new clients in its backlog for one loop turn each."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import uvloop
from aiohttp import web

from blobstore.runtime.listener import BatchAcceptSite, listening_socket
from blobstore.testing.processes import free_port

CLIENTS = 40


async def loop_turns_to_serve(site_kind: str) -> tuple[int, list[bytes]]:
    """Open CLIENTS connections at once, each sending one GET, before the server's loop
    runs again; return how many loop turns apart the first and the last were handled, and
    the answers."""
    handled_at: list[int] = []

    async def handle(_: web.Request) -> web.Response:
        handled_at.append(turns)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site: web.BaseSite = (BatchAcceptSite(runner, "127.0.0.1", port) if site_kind == "batch"
                          else web.TCPSite(runner, "127.0.0.1", port))
    await site.start()
    loop = asyncio.get_running_loop()
    turns = 0
    busy = True

    def one_turn() -> None:  # reschedules itself: runs once per loop iteration
        nonlocal turns
        turns += 1
        if busy:
            loop.call_soon(one_turn)

    try:
        clients = []
        for _ in range(CLIENTS):  # connected and sent before the server's loop runs again
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            sock.setblocking(False)
            clients.append(sock)
        loop.call_soon(one_turn)
        answers = [await read_all(loop, sock) for sock in clients]
        busy = False
        return max(handled_at) - min(handled_at), answers
    finally:
        for sock in clients:
            sock.close()
        await runner.cleanup()


async def read_all(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    chunks = []
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
        chunks.append(chunk)
    return b"".join(chunks)


def test_every_waiting_connection_is_accepted_in_one_turn_on_uvloop():
    turns, answers = uvloop.run(loop_turns_to_serve("batch"))
    assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"ok") for a in answers)
    # All forty are accepted in one turn, so they are handled within a turn or two.
    assert turns <= 2, turns


def test_uvloop_alone_accepts_one_connection_per_turn():
    """Why the site exists: if this starts failing, uvloop drains its backlog itself."""
    turns, answers = uvloop.run(loop_turns_to_serve("tcp"))
    assert len(answers) == CLIENTS
    assert turns >= CLIENTS - 1, turns


def test_a_taken_port_is_an_os_error_before_anything_listens():
    taken = listening_socket("127.0.0.1", 0, 8)
    try:
        with pytest.raises(OSError) as excinfo:
            listening_socket("127.0.0.1", taken.getsockname()[1], 8)
        assert excinfo.value.errno == 98  # EADDRINUSE
    finally:
        taken.close()


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def test_tls_connections_are_served_and_a_failed_handshake_is_dropped(tmp_path: Path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    client_tls.check_hostname = False

    async def scenario() -> list[bytes]:
        app = web.Application()
        app.router.add_get("/", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await BatchAcceptSite(runner, "127.0.0.1", port, ssl_context=server_tls).start()
        try:
            plain = socket.create_connection(("127.0.0.1", port))  # not TLS: dropped
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answers = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls)
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answers.append(await asyncio.wait_for(reader.read(), 10))
                writer.close()
            plain.settimeout(10)
            assert plain.recv(100) == b""  # closed by the server, nothing served
            plain.close()
            return answers
        finally:
            await runner.cleanup()

    answers = uvloop.run(scenario())
    assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"ok") for a in answers)
