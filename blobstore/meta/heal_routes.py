"""The metadata service's self-healing reads (docs/internal-api.md, "Healing").

Routes (signed like every ``/v1`` route)::

    GET /v1/heal/status                          HealStatus
    GET /v1/heal/fsck?after=&limit=              FsckPage    (objects + their segments)
    GET /v1/heal/gc?after=&limit=                GcPage      (segments at refcount 0)
    GET /v1/heal/placed?node=&after=&limit=      PlacedPage  (shards placed on a node)
    GET /v1/membership?detail=0|1                node table + move backlog (meta/membership.py)
    GET /v1/membership/placed?after=&limit=      {"counts": {node: shards}, "examined", "next"}

The healing COMMANDS need no route of their own: they go through ``POST /v1/command`` like
every other command (``meta/heal.py``). These reads run exactly as the other reads of
``meta/app.py``: through the service's ``read(function, *args)`` (linearizable on the
leader, redirected by followers, stale only where ``allow_stale_reads`` allows, and then
marked ``X-Blobstore-Stale: 1``) of a ``meta/heal_reads.py`` function. The status adds soft
state: node states from the leader's failure detector and scrub progress from the
heartbeats (``meta/heal_board.py``, fed by ``record_heartbeat``).

How the routes reach the app's service is one ``HealHost`` value; ``add_heal_routes(app)``
builds the default one from ``meta/app.py`` (imported when first needed: app.py imports
this module).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from blobstore.core.errors import Invalid
from blobstore.core.records import ClusterMap, NodeRole, NodeState
from blobstore.meta import heal_reads, membership
from blobstore.meta.heal_board import HEAL_BOARD, HealBoard
from blobstore.rpc.server import json_response
from blobstore.rpc.wire import StorageStatus


@dataclass(frozen=True)
class HealHost:
    """What the routes need from the meta app."""

    # read(request, function, *args) -> (function(state_machine, *args), stale)
    read: Callable[..., Awaitable[tuple[Any, bool]]]
    cluster_map: Callable[[web.Request], ClusterMap]  # the (leader's) failure detector's map
    data_shards: Callable[[web.Request], int]


HEAL_HOST: web.AppKey[HealHost] = web.AppKey("heal_host", HealHost)
STALE_HEADER = "X-Blobstore-Stale"  # as meta/app.py marks a read served without the leader


def default_host() -> HealHost:
    """The host of ``meta/app.py``: ``_service(request)`` with ``read`` and ``cluster_map``."""
    from blobstore.meta import app as meta_app  # here: app.py imports this module

    def read(request: web.Request, function: Callable[..., Any],
             *args: Any) -> Awaitable[tuple[Any, bool]]:
        return meta_app._service(request).read(function, *args)  # type: ignore[no-any-return]

    return HealHost(
        read=read,
        cluster_map=lambda request: meta_app._service(request).cluster_map()[0],
        data_shards=lambda request: request.app[meta_app.RUNTIME].config.data_shards)


def add_heal_routes(app: web.Application, host: HealHost | None = None) -> None:
    """Register the healing reads and the heal board on a meta app (before it starts)."""
    app[HEAL_BOARD] = HealBoard()
    if host is not None:
        app[HEAL_HOST] = host
    app.router.add_get("/v1/heal/status", handle_heal_status)
    app.router.add_get("/v1/heal/fsck", handle_fsck_page)
    app.router.add_get("/v1/heal/gc", handle_gc_page)
    app.router.add_get("/v1/heal/placed", handle_placed_page)
    app.router.add_get("/v1/membership", handle_membership)
    app.router.add_get("/v1/membership/placed", handle_placed_counts)


def note_heartbeat(app: web.Application, body: bytes) -> None:
    """Keep the scrub progress of a storage heartbeat (its raw JSON body)."""
    board = app.get(HEAL_BOARD)
    if board is None:
        return
    try:
        status = msgspec.json.decode(body, type=StorageStatus)
    except msgspec.MsgspecError:
        return  # the heartbeat handler judges the body; progress is best effort
    board.note_heartbeat(status, time.time_ns())


async def record_heartbeat(request: web.Request) -> None:
    """``note_heartbeat`` for the heartbeat handler (aiohttp keeps the body it read)."""
    note_heartbeat(request.app, await request.read())


def _host(app: web.Application) -> HealHost:
    host = app.get(HEAL_HOST)
    return host if host is not None else default_host()


def _query(request: web.Request, name: str, default: str = "") -> str:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise Invalid(f"query parameter {name!r} given twice")
    return values[0] if values else default


def _limit(request: web.Request, default: int = 1000) -> int:
    text = _query(request, "limit", str(default))
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise Invalid(f"limit must be a positive integer, not {text!r}")
    return int(text)


# ---- handlers ------------------------------------------------------------------------------


def _answer(value: object, stale: bool) -> web.Response:
    response = json_response(value)
    if stale:
        response.headers[STALE_HEADER] = "1"
    return response


async def handle_heal_status(request: web.Request) -> web.Response:
    host = _host(request.app)
    status, stale = await host.read(request, heal_reads.heal_status, time.time_ns(),
                                    host.data_shards(request))
    board = request.app[HEAL_BOARD]
    cluster_map = host.cluster_map(request)
    down = sorted(view.id for view in cluster_map.nodes
                  if view.role == NodeRole.STORAGE and view.state == NodeState.DOWN)
    status = msgspec.structs.replace(
        status, nodes_down=down,
        nodes_marked_down=[node for node in down if node in board.marked_down],
        nodes_pending_down=[node for node in down if node not in board.marked_down],
        scrub=board.scrub_list())
    return _answer(status, stale)


async def handle_fsck_page(request: web.Request) -> web.Response:
    page, stale = await _host(request.app).read(request, heal_reads.fsck_page,
                                                _query(request, "after"), _limit(request, 100))
    return _answer(page, stale)


async def handle_gc_page(request: web.Request) -> web.Response:
    page, stale = await _host(request.app).read(request, heal_reads.gc_page,
                                                _query(request, "after"), _limit(request))
    return _answer(page, stale)


async def handle_placed_page(request: web.Request) -> web.Response:
    page, stale = await _host(request.app).read(request, heal_reads.placed_page,
                                                _query(request, "node"),
                                                _query(request, "after"), _limit(request))
    return _answer(page, stale)


async def handle_membership(request: web.Request) -> web.Response:
    value, stale = await _host(request.app).read(
        request, lambda state, now_ns, detail: membership.membership_status(
            state.env, state.dbs, now_ns, detail),
        time.time_ns(), _query(request, "detail", "1") != "0")
    return _answer(value, stale)


async def handle_placed_counts(request: web.Request) -> web.Response:
    value, stale = await _host(request.app).read(
        request, lambda state, after, limit: membership.placed_counts(state.env, state.dbs,
                                                                      after, limit),
        _query(request, "after"), _limit(request, 20_000))
    return _answer(value, stale)
