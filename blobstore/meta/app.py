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
    POST /v1/heartbeat            {"node_id", "capacity_bytes", "used_bytes", "shard_count", "payload_bytes"}
    GET  /v1/users/{access_key}   {"access_key", "secret_key"}
    GET  /v1/status               this replica: role, term, leader, commit index, counters;
                                  on the leader each replica's match/next index
    POST /v1/raft                 a batch of raft messages (meta/raft_transport.py)
    GET  /v1/raft/state           {"node_id", "bootstrapped", "voters", ...} (rule 5 of
                                  meta/service.py: how a fresh replica decides to start)
    POST /v1/raft/conf_change     {"kind": "add"|"remove", "node_id", "dry_run"?}
    POST /v1/raft/transfer_leader {"to": node_id}
    GET  /_blobstore/healthz      {"status": "ok"|"starting", "role", "leader"} (unsigned)

Replication (``meta/service.py``): writes and reads go to the Raft leader; a follower
answers 421 NotLeader with the leader's address (``meta/errors.py``) and a replica without a
leader (or a leader without a quorum) answers 503 Unavailable at once, unless
``allow_stale_reads`` lets it serve reads from its own state (``X-Blobstore-Stale: 1``).

Object keys, prefixes and markers travel as query parameters, never in the path: a key may
hold ``/``, ``..``, ``%``, ``?``, ``#`` or spaces, and a path would be normalised on the way
(dot segments removed, escapes re-quoted) and no longer match its signature. Query values
are decoded exactly by aiohttp; ``rpc/meta_client.py`` builds them with yarl, whose
canonical form is what both ends sign.

Startup (``cleanup_ctx``): the replica starts in a background task (it may have to ask its
peers how to bootstrap, and they may be starting too, so it must not hold up the listening
socket); until it runs, ``/v1`` answers 503 and healthz "starting". Healthz answers 200 once
the replica runs and knows a leader, or has run for ``HEALTHY_WITHOUT_LEADER_S`` (a lone
replica of a group without quorum is alive, and must not block its supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import Invalid, Unavailable
from blobstore.meta import batch_routes, heal_routes, heal_tasks, schema
from blobstore.meta.commands import envelope_from_json
from blobstore.meta.errors import NotLeader
from blobstore.meta.failure_detector import FailureDetector
from blobstore.meta.multipart_routes import add_multipart_routes
from blobstore.meta.service import MetaService, ReplicaOptions
from blobstore.meta.state_machine import StateMachine
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.server import internal_app, json_response
from blobstore.runtime import metrics

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024 * 1024  # a put_object of a large object lists many segments
STALE_HEADER = "X-Blobstore-Stale"
HEALTHY_WITHOUT_LEADER_S = 6.0


class HeartbeatBody(msgspec.Struct, frozen=True):
    node_id: str
    capacity_bytes: int = 0
    used_bytes: int = 0
    shard_count: int = 0
    payload_bytes: int = 0


class LookupBody(msgspec.Struct, frozen=True):
    ids: list[str]


class ConfChangeBody(msgspec.Struct, frozen=True):
    kind: str
    node_id: str
    dry_run: bool = False


class TransferBody(msgspec.Struct, frozen=True):
    to: str


class _Runtime:
    """What startup creates (None before): the replica."""

    def __init__(self, config: ClusterConfig, node: NodeConfig,
                 options: ReplicaOptions | None) -> None:
        self.config = config
        self.node = node
        self.options = options
        self.service: MetaService | None = None
        self.start_error: BaseException | None = None
        self._idle_detector = FailureDetector(config, started_s=time.monotonic())

    @property
    def detector(self) -> FailureDetector:
        """The failure detector of the replica (the leader's is the one storage nodes feed)."""
        return self.service.detector if self.service is not None else self._idle_detector

    def is_leader(self) -> bool:
        """Whether this replica leads the group now (for leader-only background work)."""
        service = self.service
        return (service is not None and service.ready and service.driver is not None
                and service.driver.view.is_leader)


RUNTIME: web.AppKey[_Runtime] = web.AppKey("meta_runtime", _Runtime)


@web.middleware
async def not_leader_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """NotLeader carries the leader's address, which the shared error body has no room for."""
    try:
        return await handler(request)
    except NotLeader as error:
        return web.Response(status=error.http_status, body=msgspec.json.encode(error.body()),
                            content_type="application/json")


def create_app(config: ClusterConfig, node: NodeConfig,
               options: ReplicaOptions | None = None) -> web.Application:
    app = internal_app(config.secret, client_max_size=MAX_BODY_BYTES)
    app[metrics.ROLE] = "meta"
    metrics.add_scrape_hook(functools.partial(_export_metrics, app), app=app)
    app.middlewares.append(not_leader_middleware)
    app[RUNTIME] = _Runtime(config, node, options)
    app.cleanup_ctx.append(_service_context)
    # After the service context, so the healing tasks stop before the service does.
    app.cleanup_ctx.append(heal_tasks.context_for_app(config, node))
    app.router.add_post("/v1/command", handle_command)
    app.router.add_get("/v1/buckets", handle_list_buckets)
    app.router.add_get("/v1/buckets/{bucket}", handle_head_bucket)
    app.router.add_get("/v1/objects/{bucket}", handle_get_manifest)
    app.router.add_post("/v1/commands", handle_commands)
    app.router.add_post("/v1/objects_batch", handle_batch_get)
    app.router.add_get("/v1/list/{bucket}", handle_list_objects)
    app.router.add_post("/v1/segments/lookup", handle_lookup_segments)
    app.router.add_get("/v1/cluster_map", handle_cluster_map)
    app.router.add_post("/v1/heartbeat", handle_heartbeat)
    app.router.add_get("/v1/users/{access_key}", handle_get_user)
    app.router.add_get("/v1/status", handle_status)
    app.router.add_post("/v1/raft", handle_raft)
    app.router.add_get("/v1/raft/state", handle_raft_state)
    app.router.add_post("/v1/raft/conf_change", handle_conf_change)
    app.router.add_post("/v1/raft/transfer_leader", handle_transfer_leader)
    add_multipart_routes(app)
    heal_routes.add_heal_routes(app)
    app.router.add_get("/_blobstore/healthz", handle_healthz)
    app.router.add_get("/_blobstore/readyz", handle_healthz)
    return app


async def _export_metrics(app: web.Application) -> None:
    """Raft term, commit and apply indexes, backlogs: read at scrape time."""
    service = app[RUNTIME].service
    if service is not None and service.driver is not None:
        metrics.set_meta_status(await service.status())


async def _service_context(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    session = new_session()
    service = MetaService(runtime.config, runtime.node, RpcClient(session, runtime.config.secret),
                          runtime.options)
    runtime.service = service

    async def start() -> None:
        try:
            await service.start()
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            runtime.start_error = error
            log.critical("meta replica %s failed to start: %s", runtime.node.id, error,
                         exc_info=True)

    starting = asyncio.get_running_loop().create_task(start(), name="meta-start")
    try:
        yield
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await service.stop()
        await session.close()
        runtime.service = None


def _service(request: web.Request) -> MetaService:
    runtime = request.app[RUNTIME]
    service = runtime.service
    if service is None or not service.ready:
        raise Unavailable(f"meta replica {runtime.node.id} is starting")
    return service


def _query(request: web.Request, name: str, default: str = "") -> str:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise Invalid(f"query parameter {name!r} given twice")
    return values[0] if values else default


def _answer(value: Any, stale: bool) -> web.Response:
    response = json_response(value)
    if stale:
        response.headers[STALE_HEADER] = "1"
    return response


# ---- handlers -----------------------------------------------------------------------------


async def handle_command(request: web.Request) -> web.Response:
    envelope = envelope_from_json(await request.read())
    schema.check_client_id(envelope.client_id)
    index, outcome = await _service(request).command(envelope)
    return json_response({"index": index, "result": outcome.unwrap()})


async def handle_commands(request: web.Request) -> web.Response:
    return await batch_routes.handle_commands(request, _service(request))


async def handle_batch_get(request: web.Request) -> web.Response:
    return await batch_routes.handle_batch_get(request, _service(request))


async def handle_list_buckets(request: web.Request) -> web.Response:
    buckets, stale = await _service(request).read(StateMachine.list_buckets)
    return _answer({"buckets": buckets}, stale)


async def handle_head_bucket(request: web.Request) -> web.Response:
    bucket, stale = await _service(request).read(StateMachine.get_bucket,
                                                  request.match_info["bucket"])
    return _answer(bucket, stale)


async def handle_get_manifest(request: web.Request) -> web.Response:
    service = _service(request)
    if "key" not in request.query:
        raise Invalid("missing query parameter 'key'")
    manifest, stale = await service.read(StateMachine.get_manifest,
                                         request.match_info["bucket"], _query(request, "key"))
    return _answer(manifest, stale)


async def handle_list_objects(request: web.Request) -> web.Response:
    service = _service(request)
    max_keys_text = _query(request, "max_keys", "1000")
    if not (max_keys_text.isascii() and max_keys_text.isdigit()):
        raise Invalid(f"max_keys must be a non-negative integer, not {max_keys_text!r}")
    page, stale = await service.read(StateMachine.list_objects, request.match_info["bucket"],
                                     _query(request, "prefix"), _query(request, "delimiter"),
                                     _query(request, "start_after"), int(max_keys_text))
    return _answer(page, stale)


async def handle_lookup_segments(request: web.Request) -> web.Response:
    service = _service(request)
    body = msgspec.json.decode(await request.read(), type=LookupBody)
    found, stale = await service.read(StateMachine.lookup_segments, body.ids)
    return _answer({"segments": found}, stale)


async def handle_cluster_map(request: web.Request) -> web.Response:
    cluster_map, stale = _service(request).cluster_map()
    return _answer(cluster_map, stale)


async def handle_heartbeat(request: web.Request) -> web.Response:
    service = _service(request)
    body = msgspec.json.decode(await request.read(), type=HeartbeatBody)
    service.heartbeat(body.node_id, capacity_bytes=body.capacity_bytes,
                      used_bytes=body.used_bytes, shard_count=body.shard_count,
                      payload_bytes=body.payload_bytes)
    await heal_routes.record_heartbeat(request)  # scrub progress, for status
    return json_response({})


async def handle_get_user(request: web.Request) -> web.Response:
    user, stale = await _service(request).get_user(request.match_info["access_key"])
    return _answer({"access_key": user.access_key, "secret_key": user.secret_key}, stale)


async def handle_status(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.service is None:
        raise Unavailable(f"meta replica {runtime.node.id} is starting")
    return json_response(await runtime.service.status())


async def handle_raft(request: web.Request) -> web.Response:
    service = _service(request)
    assert service.transport is not None
    return await service.transport.handle(request)


async def handle_raft_state(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.service is None:
        raise Unavailable(f"meta replica {runtime.node.id} is starting")
    return json_response(runtime.service.raft_state())


async def handle_conf_change(request: web.Request) -> web.Response:
    service = _service(request)
    body = msgspec.json.decode(await request.read(), type=ConfChangeBody)
    return json_response(await service.change_membership(body.kind, body.node_id,
                                                         dry_run=body.dry_run))


async def handle_transfer_leader(request: web.Request) -> web.Response:
    service = _service(request)
    body = msgspec.json.decode(await request.read(), type=TransferBody)
    return json_response(await service.transfer_leader(body.to))


async def handle_healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    service = runtime.service
    if runtime.start_error is not None:
        return json_response({"status": "failed", "error": str(runtime.start_error)},
                             status=503)
    if service is not None and service.driver is not None and service.driver.failed:
        return json_response({"status": "failed", "error": repr(service.driver.failed)},
                             status=503)
    if service is None or not service.ready or service.driver is None:
        return json_response({"status": "starting"}, status=503)
    view = service.driver.view
    running_s = time.monotonic() - service.started_s
    healthy = view.leader is not None or running_s >= HEALTHY_WITHOUT_LEADER_S
    return json_response({"status": "ok" if healthy else "starting", "role": view.role,
                          "leader": view.leader, "term": view.term},
                         status=200 if healthy else 503)
