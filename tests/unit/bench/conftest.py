"""Fixtures: a tiny in-memory S3 endpoint for the load generator's own tests (not a store).

It checks every request's SigV4 signature with our verifier, keeps bodies in a dict, and
misbehaves on demand: ``corrupt`` keys come back with one byte flipped, ``short`` keys
with their last byte missing, ``slow_down`` keys (every GET with ``fail_gets``) answer
503 SlowDown.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiohttp import web

from blobstore.core.s3.errors import S3Error
from blobstore.core.s3.sigv4 import check_signature, parse_authorization

ACCESS_KEY = "AKIAFAKEBENCH0000000"
SECRET_KEY = "fake-secret-key-for-bench-tests-000000000"


@dataclass
class FakeS3:
    buckets: set[str] = field(default_factory=set)
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    short: set[str] = field(default_factory=set)
    slow_down: set[str] = field(default_factory=set)
    fail_gets: bool = False
    requests: int = 0
    endpoint: str = ""
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{bucket}", self.bucket)
        app.router.add_route("*", "/{bucket}/{key:.+}", self.object)
        return app

    def _check(self, request: web.Request) -> web.Response | None:
        self.requests += 1
        try:
            parsed = parse_authorization(request.method, request.raw_path, request.query_string,
                                         request.headers, datetime.now(UTC))
            if parsed.access_key != ACCESS_KEY:
                return _error(403, "InvalidAccessKeyId")
            check_signature(parsed, SECRET_KEY)
        except S3Error as error:
            return _error(403, type(error).__name__)
        return None

    async def bucket(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        name = request.match_info["bucket"]
        if request.method == "HEAD":
            return web.Response(status=200 if name in self.buckets else 404)
        if request.method == "PUT":
            self.buckets.add(name)
            return web.Response(status=200)
        return _error(405, "MethodNotAllowed")

    async def object(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        if bucket not in self.buckets:
            return _error(404, "NoSuchBucket")
        if key in self.slow_down or (self.fail_gets and request.method == "GET"):
            return _error(503, "SlowDown")
        if request.method == "PUT":
            self.objects[bucket, key] = await request.read()
            return web.Response(status=200)
        if request.method == "DELETE":
            self.objects.pop((bucket, key), None)
            return web.Response(status=204)
        body = self.objects.get((bucket, key))
        if body is None:
            return _error(404, "NoSuchKey")
        if key in self.corrupt:
            body = bytes([body[0] ^ 1]) + body[1:]
        if key in self.short:
            body = body[:-1]
        return web.Response(body=body)


def _error(status: int, code: str) -> web.Response:
    return web.Response(status=status, content_type="application/xml",
                        text=f"<Error><Code>{code}</Code><Message>x</Message></Error>")


class FakeS3Server:
    """Runs a :class:`FakeS3` on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self) -> None:
        self.state = FakeS3()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> FakeS3:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self.state

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.state.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.state.endpoint = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def __exit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def s3() -> Iterator[FakeS3]:
    with FakeS3Server() as state:
        yield state
