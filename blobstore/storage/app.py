"""The storage node's HTTP app: shard PUT/GET/HEAD/DELETE, inventory, status, health.

Routes (docs/internal-api.md, storage section; all signed except ``/_blobstore/*``)::

    PUT    /v1/shards/{shard_id}   body = payload, X-Shard-* headers    -> 201 ShardInfo
    GET    /v1/shards/{shard_id}   optional Range: bytes=a-b | bytes=a- -> 200 / 206 payload
    HEAD   /v1/shards/{shard_id}                                        -> 200, X-Shard-* headers
    DELETE /v1/shards/{shard_id}[?older_than_ns=N]                      -> 204 (idempotent);
                                    409 when older_than_ns is given and the file is that new
    GET    /v1/shards?after=&limit=                                     -> ShardList
    GET    /v1/status                                                   -> StorageStatus
    POST   /v1/scrub, GET /v1/scrub         start a scrub pass / its progress
    POST   /v1/repair|inventory|gc          wake that healing worker -> WorkerStatus
    GET    /v1/repair|inventory|gc          WorkerStatus (storage/healing.py)
    GET    /_blobstore/healthz, /_blobstore/readyz

Rules:

- The shard id from the URL goes through ``core.ids.parse_shard_id`` before anything else
  (Invalid -> 400), so no path is ever built from an unchecked name.
- Every store call blocks (disk, fsync, LMDB), so it runs in one bounded thread pool
  (``io_threads``); the event loop only parses, waits and sends. Request bodies are
  bounded by ``client_max_size_bytes`` (a shard is segment_size / data_shards, ~1 MiB).
- The store and its pool are opened and closed in ``cleanup_ctx``; the heartbeat, the
  scrubber and the healing workers (repairer, inventory, collector: ``storage/healing.py``)
  are later contexts, so on shutdown they stop before the store closes.
- Errors are ``BlobstoreError``s, turned into ``{"error": ...}`` by ``rpc.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import Conflict, Invalid, Unavailable
from blobstore.core.ids import parse_shard_id
from blobstore.core.records import NodeRole
from blobstore.core.shard_format import ShardHeader
from blobstore.rpc import wire
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.meta_client import MetaClient
from blobstore.rpc.server import internal_app, json_response
from blobstore.runtime import metrics
from blobstore.runtime.workers import PeriodicWorker
from blobstore.storage.healing import healing_context, worker_status
from blobstore.storage.heartbeat import Heartbeat
from blobstore.storage.scrubber import Scrubber, ScrubStatus
from blobstore.storage.shard_store import ShardStore, ShardStoreSettings

MIB = 1024 * 1024
T = TypeVar("T")
_RANGE_RE = re.compile(r"bytes=(\d{1,19})-(\d{0,19})")


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Bounds of one storage node process, with their defaults."""

    io_threads: int = 8  # concurrent blocking store calls
    client_max_size_bytes: int = 64 * MIB  # largest request body (one shard payload)
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 1.0  # per attempt, per meta node
    heartbeat_warn_every_s: float = 60.0
    store: ShardStoreSettings = field(default_factory=ShardStoreSettings)


class StorageState:
    """What the running app holds; set by the store context, read by handlers."""

    def __init__(self, node: NodeConfig, settings: StorageSettings) -> None:
        self.node = node
        self.settings = settings
        self.store: ShardStore | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.heartbeat: Heartbeat | None = None
        self.scrubber: Scrubber | None = None
        self.repairer: PeriodicWorker | None = None
        self.inventory: PeriodicWorker | None = None
        self.collector: PeriodicWorker | None = None

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """Run a blocking store call in the bounded pool."""
        if self.executor is None:
            raise Unavailable("the shard store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args))

    @property
    def open_store(self) -> ShardStore:
        if self.store is None:
            raise Unavailable("the shard store is not open")
        return self.store

    async def status(self) -> wire.StorageStatus:
        stats = await self.call(self.open_store.stats)
        scrub = self.scrubber.status() if self.scrubber else ScrubStatus()
        return wire.StorageStatus(
            node_id=self.node.id, capacity_bytes=stats.capacity_bytes,
            used_bytes=stats.used_bytes, shard_count=stats.shard_count,
            payload_bytes=stats.payload_bytes,
            scrub_passes_completed=scrub.passes_completed,
            scrub_shards_checked=scrub.shards_checked, scrub_shards_total=scrub.shards_total,
            scrub_corrupt_found=scrub.corrupt_found,
            scrub_last_pass_completed_s=scrub.last_pass_completed_s)


STATE_KEY = web.AppKey("storage_state", StorageState)


def create_app(config: ClusterConfig, node: NodeConfig, *,
               settings: StorageSettings | None = None) -> web.Application:
    settings = settings or StorageSettings()
    app = internal_app(config.secret, client_max_size=settings.client_max_size_bytes)
    app[metrics.ROLE] = "storage"
    state = StorageState(node, settings)
    app[STATE_KEY] = state
    app.cleanup_ctx.append(functools.partial(_store_context, state))
    app.cleanup_ctx.append(functools.partial(_heartbeat_context, config, state))
    app.cleanup_ctx.append(functools.partial(_scrubber_context, config, state))
    app.cleanup_ctx.append(functools.partial(healing_context, config, state))
    app.router.add_put("/v1/shards/{shard_id}", put_shard)
    app.router.add_get("/v1/shards/{shard_id}", get_shard, allow_head=False)
    app.router.add_head("/v1/shards/{shard_id}", head_shard)
    app.router.add_delete("/v1/shards/{shard_id}", delete_shard)
    app.router.add_get("/v1/shards", list_shards)
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/scrub", start_scrub)
    app.router.add_get("/v1/scrub", scrub_status)
    for worker in ("repair", "inventory", "gc"):
        app.router.add_post(f"/v1/{worker}", wake_worker)
        app.router.add_get(f"/v1/{worker}", get_worker_status)
    app.router.add_get("/_blobstore/healthz", healthz)
    app.router.add_get("/_blobstore/readyz", readyz)
    return app


async def _store_context(state: StorageState, app: web.Application) -> AsyncIterator[None]:
    executor = ThreadPoolExecutor(max_workers=state.settings.io_threads,
                                  thread_name_prefix=f"{state.node.id}-shard-io")
    try:
        loop = asyncio.get_running_loop()
        state.store = await loop.run_in_executor(executor, ShardStore.open, state.node.data_dir,
                                                 state.settings.store)
        state.executor = executor
        yield
    finally:
        state.executor = None
        await asyncio.to_thread(executor.shutdown, wait=True)  # calls in flight finish first
        if state.store is not None:
            state.store.close()
            state.store = None


async def _heartbeat_context(config: ClusterConfig, state: StorageState,
                             app: web.Application) -> AsyncIterator[None]:
    session = new_session(limit_per_host=2)
    settings = state.settings
    heartbeat = Heartbeat(RpcClient(session, config.secret),
                          [n.address for n in config.by_role(NodeRole.META)], state.status,
                          interval_s=settings.heartbeat_interval_s,
                          timeout_s=settings.heartbeat_timeout_s,
                          warn_every_s=settings.heartbeat_warn_every_s)
    state.heartbeat = heartbeat
    task = asyncio.create_task(heartbeat.run(), name=f"{state.node.id}-heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await session.close()


async def _scrubber_context(config: ClusterConfig, state: StorageState,
                            app: web.Application) -> AsyncIterator[None]:
    session = new_session(limit_per_host=2)
    rpc = RpcClient(session, config.secret)
    meta = MetaClient(rpc, [n.address for n in config.by_role(NodeRole.META)],
                      client_id=f"{state.node.id}-scrubber-{time.time_ns()}")

    async def report(segment_id: str, index: int, reason: str) -> object:
        return await meta.report_bad_shard(segment_id, index, state.node.id, reason)

    scrubber = Scrubber(state.open_store, state.call, report, interval_s=config.scrub_interval_s,
                        rate_bytes_per_s=config.scrub_rate_bytes_per_s)
    state.scrubber = scrubber
    task = asyncio.create_task(scrubber.run(), name=f"{state.node.id}-scrubber")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        state.scrubber = None
        await session.close()


# -- handlers ---------------------------------------------------------------------------


def _state(request: web.Request) -> StorageState:
    return request.app[STATE_KEY]


def _shard_id(request: web.Request) -> str:
    shard_id = request.match_info["shard_id"]
    parse_shard_id(shard_id)  # Invalid (400) before any path is built from it
    return shard_id


async def put_shard(request: web.Request) -> web.Response:
    shard_id = _shard_id(request)
    headers = request.headers
    data_shards = wire.header_int(headers, wire.HEADER_DATA_SHARDS)
    parity_shards = wire.header_int(headers, wire.HEADER_PARITY_SHARDS)
    segment_length = wire.header_int(headers, wire.HEADER_SEGMENT_LENGTH)
    xxh3 = wire.header_str(headers, wire.HEADER_XXH3)
    state = _state(request)
    chunks = await _read_chunks(request, state.settings.client_max_size_bytes)
    info = await state.call(state.open_store.put, shard_id, chunks, data_shards,
                            parity_shards, segment_length, xxh3)
    return json_response(info, status=201)


async def _read_chunks(request: web.Request, limit: int) -> list[bytes]:
    """The body as the chunks it arrived in, at most ``limit`` bytes (else 413).

    ``request.read()`` would join them into a bytearray and copy that into bytes: two
    copies of every shard byte, a sixth of a storage node's CPU in a 64 MiB PUT profile.
    The store hashes and writes the chunks as they are.
    """
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    chunks: list[bytes] = []
    size = 0
    async for chunk, _ in request.content.iter_chunks():
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return chunks


async def get_shard(request: web.Request) -> web.Response:
    shard_id = _shard_id(request)
    start, end = parse_range(request.headers.get("Range"))
    state = _state(request)
    header, payload = await state.call(state.open_store.get, shard_id, start, end)
    headers = _header_fields(header)
    if start is None:
        return web.Response(body=payload, headers=headers, content_type="application/octet-stream")
    headers["Content-Range"] = f"bytes {start}-{start + len(payload) - 1}/{header.payload_length}"
    return web.Response(status=206, body=payload, headers=headers,
                        content_type="application/octet-stream")


async def head_shard(request: web.Request) -> web.Response:
    shard_id = _shard_id(request)
    state = _state(request)
    info = await state.call(state.open_store.head, shard_id)
    headers = wire.shard_info_headers(info)
    headers["Content-Length"] = str(info.payload_length)
    headers["Content-Type"] = "application/octet-stream"
    return web.Response(headers=headers)


async def delete_shard(request: web.Request) -> web.Response:
    shard_id = _shard_id(request)
    state = _state(request)
    older_than = request.query.get("older_than_ns")
    if older_than is None:
        await state.call(state.open_store.delete, shard_id)
        return web.Response(status=204)
    if not older_than.isascii() or not older_than.isdigit() or len(older_than) > 19:
        raise Invalid(f"older_than_ns must be a non-negative integer, not {older_than!r}")
    removed = await state.call(state.open_store.delete_if_older, shard_id, int(older_than))
    if removed is None:
        raise Conflict(f"shard {shard_id} was written at or after {older_than}; kept")
    return web.Response(status=204)


async def list_shards(request: web.Request) -> web.Response:
    after = request.query.get("after", "")
    limit_text = request.query.get("limit", "1000")
    if not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > 9:
        raise Invalid(f"limit must be a positive integer, not {limit_text!r}")
    state = _state(request)
    rows, next_after = await state.call(state.open_store.list, after, int(limit_text))
    return json_response(wire.ShardList(shards=rows, next=next_after))


async def status(request: web.Request) -> web.Response:
    return json_response(await _state(request).status())


def _scrubber(request: web.Request) -> Scrubber:
    scrubber = _state(request).scrubber
    if scrubber is None:
        raise Unavailable("the scrubber is not running")
    return scrubber


async def start_scrub(request: web.Request) -> web.Response:
    """Start a pass now; answers the pass count that marks it done (for --wait)."""
    target = _scrubber(request).request_pass()
    return json_response({"done_when_passes_completed_exceeds": target})


async def scrub_status(request: web.Request) -> web.Response:
    return json_response(_scrubber(request).status())


def _worker(request: web.Request) -> PeriodicWorker:
    state = _state(request)
    name = request.path.rsplit("/", 1)[-1]
    worker = {"repair": state.repairer, "inventory": state.inventory,
              "gc": state.collector}.get(name)
    if worker is None:
        raise Unavailable(f"the {name} worker is not running")
    return worker


async def wake_worker(request: web.Request) -> web.Response:
    """Run that worker's pass now (``blobstore repair`` wakes every repairer)."""
    worker = _worker(request)
    worker.wake()
    return json_response(worker_status(worker))


async def get_worker_status(request: web.Request) -> web.Response:
    return json_response(worker_status(_worker(request)))


async def healthz(request: web.Request) -> web.Response:
    return json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    _state(request).open_store  # noqa: B018 - raises Unavailable (503) until the store is open
    return json_response({"ready": True})


def parse_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes=a-b`` -> (a, b + 1) and ``bytes=a-`` -> (a, None); one range only."""
    if value is None:
        return None, None
    match = _RANGE_RE.fullmatch(value.strip())
    if match is None:
        raise Invalid(f"unsupported Range {value!r}: use one bytes=a-b or bytes=a-")
    start = int(match.group(1))
    if not match.group(2):
        return start, None
    last = int(match.group(2))
    if last < start:
        raise Invalid(f"Range {value!r} ends before it starts")
    return start, last + 1


def _header_fields(header: ShardHeader) -> dict[str, str]:
    return {
        wire.HEADER_DATA_SHARDS: str(header.data_shards),
        wire.HEADER_PARITY_SHARDS: str(header.parity_shards),
        wire.HEADER_SEGMENT_LENGTH: str(header.segment_length),
        wire.HEADER_XXH3: header.payload_xxh3,
        wire.HEADER_PAYLOAD_LENGTH: str(header.payload_length),
    }
