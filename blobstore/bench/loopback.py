"""Loopback HTTP: how fast this machine's Python HTTP stack moves bytes between processes.

A ceiling for any S3 gateway written on aiohttp here, as our gateway is: a bare server
process (``python -m blobstore.bench.loopback``; no auth, no disk, bodies from memory)
and a client in the calling process with the same aiohttp settings as the benchmark's
client, reading every body to the end. Three figures: GET of 1 MiB bodies (server to
client), PUT of 1 MiB bodies (client to server), and requests per second for empty bodies.

The server binds port 0 and prints its port on the first line of stdout, so there is no
race for a port; the caller owns the process and ends it by its handle.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

from blobstore.bench.s3 import BufferPayload
from blobstore.bench.units import MIB, mb_per_s

BODY_BYTES = MIB
BULK_CONCURRENCY = 4
TINY_CONCURRENCY = 16
SERVER_START_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class LoopbackFigures:
    get_mb_per_s: float
    put_mb_per_s: float
    tiny_requests_per_s: float


def _app() -> web.Application:
    body = bytes(BODY_BYTES)

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/octet-stream")

    async def sink(request: web.Request) -> web.Response:
        async for _chunk in request.content.iter_any():
            pass
        return web.Response(status=200)

    async def tiny(request: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application(client_max_size=BODY_BYTES * 2)
    app.router.add_get("/blob", blob)
    app.router.add_put("/sink", sink)
    app.router.add_get("/tiny", tiny)
    return app


async def _serve() -> None:
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    try:
        await asyncio.Event().wait()  # until the parent ends us
    finally:
        await runner.cleanup()


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    """Start the server process; returns it and its port (the caller must end it)."""
    process = subprocess.Popen([sys.executable, "-m", "blobstore.bench.loopback", "--serve"],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    line = process.stdout.readline()  # the server prints its port first, then nothing
    if not line.strip().isdigit():
        stop_server(process)
        raise RuntimeError("the loopback HTTP server did not start")
    return process, int(line)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def _drive(session: aiohttp.ClientSession, method: str, url: URL, data: memoryview | None,
                 concurrency: int, seconds: float) -> tuple[int, int]:
    """Requests in a loop from ``concurrency`` workers; returns (requests, body bytes)."""
    deadline = time.perf_counter() + seconds
    totals = [0, 0]

    async def worker() -> None:
        while time.perf_counter() < deadline:
            body = None if data is None else BufferPayload(data)
            async with session.request(method, url, data=body) as response:
                async for chunk in response.content.iter_any():
                    totals[1] += len(chunk)
                response.raise_for_status()
            totals[0] += 1
            if data is not None:
                totals[1] += data.nbytes

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return totals[0], totals[1]


async def measure(port: int, seconds: float) -> LoopbackFigures:
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=TINY_CONCURRENCY + BULK_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     read_bufsize=256 * 1024,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.perf_counter()
        _, got = await _drive(session, "GET", URL(f"{base}/blob"), None, BULK_CONCURRENCY,
                              seconds)
        get_rate = mb_per_s(got, time.perf_counter() - started)
        started = time.perf_counter()
        _, sent = await _drive(session, "PUT", URL(f"{base}/sink"), memoryview(bytes(BODY_BYTES)),
                               BULK_CONCURRENCY, seconds)
        put_rate = mb_per_s(sent, time.perf_counter() - started)
        started = time.perf_counter()
        requests, _ = await _drive(session, "GET", URL(f"{base}/tiny"), None, TINY_CONCURRENCY,
                                   seconds)
        tiny_rate = requests / (time.perf_counter() - started)
    return LoopbackFigures(get_rate, put_rate, tiny_rate)


def measure_loopback(seconds: float) -> LoopbackFigures:
    """Start the server, measure the three figures for ``seconds`` each, stop it."""
    process, port = start_server()
    try:
        return asyncio.run(measure(port, seconds))
    finally:
        stop_server(process)


def main() -> None:
    parser = argparse.ArgumentParser(description="loopback HTTP server for machine limits")
    parser.add_argument("--serve", action="store_true", help="run the server (internal)")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
    else:
        print(measure_loopback(args.seconds))


if __name__ == "__main__":
    main()
