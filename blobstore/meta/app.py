"""The metadata service's HTTP API (docs/internal-api.md, "Metadata service").

Routes (all but ``/_blobstore/*`` need the cluster signature, checked by
``rpc/server.internal_app``):

    POST /v1/command              CommandEnvelope -> {"index", "result"}, or the typed error
    GET  /v1/buckets              {"buckets": [Bucket]}
    GET  /v1/buckets/{bucket}     Bucket
    GET  /v1/objects/{bucket}?key=K                                  Manifest
    GET  /v1/list/{bucket}?prefix=&delimiter=&start_after=&max_keys=  ListPage
    POST /v1/segments/lookup      {"ids": [...]} -> {"segments": {id: Segment}}
    GET  /v1/cluster_map          ClusterMap
    POST /v1/heartbeat            {"node_id", "capacity_bytes", "used_bytes", "shard_count"}
    GET  /v1/users/{access_key}   {"access_key", "secret_key"}
    GET  /v1/status               counters, leader, term, commit index
    GET  /_blobstore/healthz      {"status": "ok"} (unsigned)

Object keys, prefixes and markers travel as query parameters, never in the path: a key may
hold ``/``, ``..``, ``%``, ``?``, ``#`` or spaces, and a path would be normalised on the way
(dot segments removed, escapes re-quoted) and no longer match its signature. Query values
are decoded exactly by aiohttp; ``rpc/meta_client.py`` builds them with yarl, whose
canonical form is what both ends sign.

One active replica until Raft: the first meta node of the config is the leader. Any other
meta node opens nothing and answers every ``/v1`` request with 503 Unavailable (naming the
leader), so a MetaClient given every meta address moves on to the leader instead of
writing to a second, diverging copy; its healthz answers 200 so supervisors start it.

Startup (``cleanup_ctx``): open ``node.data_dir/meta.lmdb``, re-apply any logged entry above
``last_applied``, and if ``config.access_key`` is set and unknown, propose ``put_user`` for it
as client ``bootstrap`` (next sequence of that session: a concurrent duplicate applies once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import Invalid, Unavailable, UnknownAccessKey
from blobstore.core.records import NodeRole
from blobstore.meta import schema
from blobstore.meta.commands import CommandEnvelope, PutUser, envelope_from_json
from blobstore.meta.failure_detector import FailureDetector
from blobstore.meta.service import MetaService
from blobstore.rpc.server import internal_app, json_response

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024 * 1024  # a put_object of a large object lists many segments
BOOTSTRAP_CLIENT_ID = "bootstrap"


class HeartbeatBody(msgspec.Struct, frozen=True):
    node_id: str
    capacity_bytes: int = 0
    used_bytes: int = 0
    shard_count: int = 0


class LookupBody(msgspec.Struct, frozen=True):
    ids: list[str]


class _Runtime:
    """What startup opens: the service and the failure detector (None before startup)."""

    def __init__(self, config: ClusterConfig, node: NodeConfig) -> None:
        self.config = config
        self.node = node
        self.service: MetaService | None = None
        self.leader_id = config.by_role(NodeRole.META)[0].id
        self.detector = FailureDetector(config, started_s=time.monotonic())


RUNTIME: web.AppKey[_Runtime] = web.AppKey("meta_runtime", _Runtime)


def create_app(config: ClusterConfig, node: NodeConfig) -> web.Application:
    app = internal_app(config.secret, client_max_size=MAX_BODY_BYTES)
    app[RUNTIME] = _Runtime(config, node)
    app.cleanup_ctx.append(_service_context)
    app.router.add_post("/v1/command", handle_command)
    app.router.add_get("/v1/buckets", handle_list_buckets)
    app.router.add_get("/v1/buckets/{bucket}", handle_head_bucket)
    app.router.add_get("/v1/objects/{bucket}", handle_get_manifest)
    app.router.add_get("/v1/list/{bucket}", handle_list_objects)
    app.router.add_post("/v1/segments/lookup", handle_lookup_segments)
    app.router.add_get("/v1/cluster_map", handle_cluster_map)
    app.router.add_post("/v1/heartbeat", handle_heartbeat)
    app.router.add_get("/v1/users/{access_key}", handle_get_user)
    app.router.add_get("/v1/status", handle_status)
    app.router.add_get("/_blobstore/healthz", handle_healthz)
    return app


async def _service_context(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    if runtime.leader_id != runtime.node.id:
        log.warning("standing by: %s is the one active meta replica until Raft",
                    runtime.leader_id)
        yield
        return
    path = Path(runtime.node.data_dir) / "meta.lmdb"
    service = await asyncio.to_thread(MetaService.open, path)
    try:
        replayed = await service.run(service.recover)
        if replayed:
            log.info("re-applied %d logged entries", replayed)
        await _bootstrap_user(service, runtime.config)
        runtime.detector = FailureDetector(runtime.config, started_s=time.monotonic())
        runtime.service = service
        log.info("meta ready at %s, last_applied=%d", path, service.state.last_applied())
        yield
    finally:
        runtime.service = None
        await asyncio.to_thread(service.close)


async def _bootstrap_user(service: MetaService, config: ClusterConfig) -> None:
    if not config.access_key:
        return
    try:
        await service.run(service.state.get_user, config.access_key)
        return
    except UnknownAccessKey:
        pass
    if not config.secret_key:
        log.warning("[s3] access_key is set without a secret_key: no user created")
        return
    sequence = await service.run(service.state.session_last_sequence, BOOTSTRAP_CLIENT_ID) + 1
    envelope = CommandEnvelope(client_id=BOOTSTRAP_CLIENT_ID, sequence=sequence,
                               command=PutUser(access_key=config.access_key,
                                               secret_key=config.secret_key, name="bootstrap"))
    _index, outcome = await service.propose(envelope)
    outcome.unwrap()
    log.info("created the bootstrap S3 user %s", config.access_key)


def _service(request: web.Request) -> MetaService:
    """The service, if this node is the leader; Unavailable sends clients to another."""
    runtime = request.app[RUNTIME]
    if runtime.leader_id != runtime.node.id:
        raise Unavailable(f"{runtime.node.id} is not the leader; {runtime.leader_id} is "
                          "(one active meta replica until Raft)")
    assert runtime.service is not None, "handlers run only between startup and cleanup"
    return runtime.service


def _query(request: web.Request, name: str, default: str = "") -> str:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise Invalid(f"query parameter {name!r} given twice")
    return values[0] if values else default


# ---- handlers -----------------------------------------------------------------------------


async def handle_command(request: web.Request) -> web.Response:
    envelope = envelope_from_json(await request.read())
    schema.check_client_id(envelope.client_id)
    index, outcome = await _service(request).propose(envelope)
    return json_response({"index": index, "result": outcome.unwrap()})


async def handle_list_buckets(request: web.Request) -> web.Response:
    service = _service(request)
    return json_response({"buckets": await service.run(service.state.list_buckets)})


async def handle_head_bucket(request: web.Request) -> web.Response:
    service = _service(request)
    return json_response(await service.run(service.state.get_bucket,
                                           request.match_info["bucket"]))


async def handle_get_manifest(request: web.Request) -> web.Response:
    service = _service(request)
    if "key" not in request.query:
        raise Invalid("missing query parameter 'key'")
    manifest = await service.run(service.state.get_manifest, request.match_info["bucket"],
                                 _query(request, "key"))
    return json_response(manifest)


async def handle_list_objects(request: web.Request) -> web.Response:
    service = _service(request)
    max_keys_text = _query(request, "max_keys", "1000")
    if not (max_keys_text.isascii() and max_keys_text.isdigit()):
        raise Invalid(f"max_keys must be a non-negative integer, not {max_keys_text!r}")
    page = await service.run(service.state.list_objects, request.match_info["bucket"],
                             _query(request, "prefix"), _query(request, "delimiter"),
                             _query(request, "start_after"), int(max_keys_text))
    return json_response(page)


async def handle_lookup_segments(request: web.Request) -> web.Response:
    service = _service(request)
    body = msgspec.json.decode(await request.read(), type=LookupBody)
    found = await service.run(service.state.lookup_segments, body.ids)
    return json_response({"segments": found})


async def handle_cluster_map(request: web.Request) -> web.Response:
    _service(request)
    return json_response(request.app[RUNTIME].detector.cluster_map(time.monotonic()))


async def handle_heartbeat(request: web.Request) -> web.Response:
    _service(request)
    body = msgspec.json.decode(await request.read(), type=HeartbeatBody)
    request.app[RUNTIME].detector.heartbeat(
        body.node_id, time.monotonic(), time.time_ns(), capacity_bytes=body.capacity_bytes,
        used_bytes=body.used_bytes, shard_count=body.shard_count)
    return json_response({})


async def handle_get_user(request: web.Request) -> web.Response:
    service = _service(request)
    user = await service.run(service.state.get_user, request.match_info["access_key"])
    return json_response({"access_key": user.access_key, "secret_key": user.secret_key})


async def handle_status(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    service = _service(request)
    counts = await service.run(service.state.counts)
    last_applied = await service.run(service.state.last_applied)
    return json_response({
        "node_id": runtime.node.id, "leader": runtime.leader_id, "term": 0,
        "commit_index": last_applied, "last_applied": last_applied,
        "repair_backlog": counts.repair_backlog, "degraded_segments": counts.degraded_segments,
        "objects": counts.objects, "segments": counts.segments,
        "gc_backlog": counts.gc_backlog,
    })


async def handle_healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    ready = runtime.service is not None or runtime.leader_id != runtime.node.id
    return json_response({"status": "ok" if ready else "starting"}, status=200 if ready else 503)
