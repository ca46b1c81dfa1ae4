"""The overload burst's client: it runs in its own process, sends the presigned query as
signed, reads every body, and sorts each answer into served, SlowDown, timeout or other."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from blobstore.chaos.burst import run_burst
from blobstore.testing.processes import free_port

SIGNED_QUERY = "X-Amz-Credential=AK%2F20261127%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=60"
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """A server that serves every third GET, refuses the others with SlowDown, and answers
    403 to a query that is not byte for byte the signed one."""
    seen: list[str] = []
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        if request.raw_path.partition("?")[2] != SIGNED_QUERY:
            return web.Response(status=403, body=b"<Error><Code>SignatureDoesNotMatch</Code>")
        if len(seen) % 3:
            return web.Response(status=503, body=SLOWDOWN, content_type="application/xml")
        return web.Response(body=b"x" * 300_000)

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_answers_are_sorted_into_served_and_slowdown(server):
    base, seen = server
    result = run_burst(f"{base}/bucket/key?{SIGNED_QUERY}", True, workers=8, seconds=0.5)
    assert result.requests == len(seen) > 8
    assert result.served == len(seen) // 3
    assert result.slowdowns == result.requests - result.served
    assert 0 < result.slowdown_p50_s <= result.slowdown_p99_s <= result.slowest_slowdown_s < 1.0
    assert (result.timeouts, result.other) == (0, {})


def test_other_answers_are_counted_by_status(server):
    base, _ = server
    result = run_burst(f"{base}/bucket/key?X-Amz-Expires=60", True, workers=2, seconds=0.2)
    assert result.requests > 0 and result.other == {"403": result.requests}


def test_a_refused_connection_counts_as_a_timeout():
    result = run_burst(f"http://127.0.0.1:{free_port()}/b/k", True, workers=2, seconds=0.2)
    assert result.requests > 0 and result.timeouts == result.requests
