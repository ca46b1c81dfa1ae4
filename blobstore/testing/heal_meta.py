"""A one-process metadata service for testing the healing workers: the REAL state machine
and the REAL heal routes, with a cluster map the test controls.

It serves what storage nodes and the CLI ask of meta (``POST /v1/command``, ``GET
/v1/status``, ``GET /v1/cluster_map``, ``POST /v1/segments/lookup``, ``POST /v1/heartbeat``
and ``/v1/heal/*``), applying commands straight to a ``StateMachine`` on a temporary LMDB
(no log, no replication). Node states are whatever ``states`` says (default up), so a test
declares a node down by assignment instead of waiting ``down_after_s``.

    async with HealMeta.serving(tmp_path, config) as meta:
        meta.states["storage-3"] = NodeState.DOWN
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgspec
from aiohttp import web

from blobstore.config import ClusterConfig
from blobstore.core.records import ClusterMap, NodeState, NodeView
from blobstore.meta import invariants
from blobstore.meta.commands import envelope_from_json
from blobstore.meta.heal_routes import HealHost, add_heal_routes, record_heartbeat
from blobstore.meta.schema import MAX_DBS
from blobstore.meta.state_machine import StateMachine
from blobstore.rpc.server import internal_app, json_response

T = TypeVar("T")


class HealMeta:
    def __init__(self, path: Path, config: ClusterConfig) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.env = lmdb.open(str(path), map_size=256 * 1024 * 1024, max_dbs=MAX_DBS,
                             sync=False)
        self.state = StateMachine(self.env)
        self.states: dict[str, NodeState] = {}
        self.address = ""

    async def read(self, function: Callable[..., T], *args: object) -> tuple[T, bool]:
        """The service's read: ``function(state_machine, *args)``, never stale here."""
        return function(self.state, *args), False

    def cluster_map(self) -> ClusterMap:
        return ClusterMap(epoch=1, data_shards=self.config.data_shards,
                          parity_shards=self.config.parity_shards,
                          nodes=[NodeView(id=n.id, role=n.role, address=n.address, zone=n.zone,
                                          weight=n.weight,
                                          state=self.states.get(n.id, NodeState.UP))
                                 for n in self.config.nodes])

    def problems(self) -> list[str]:
        return invariants.check(self.env, self.state.dbs)

    def app(self) -> web.Application:
        app = internal_app(self.config.secret, client_max_size=64 * 1024 * 1024)
        add_heal_routes(app, HealHost(
            read=lambda request, function, *args: self.read(function, *args),
            cluster_map=lambda request: self.cluster_map(),
            data_shards=lambda request: self.config.data_shards))
        app.router.add_post("/v1/command", self._command)
        app.router.add_get("/v1/status", self._status)
        app.router.add_get("/v1/cluster_map", self._map)
        app.router.add_post("/v1/segments/lookup", self._lookup)
        app.router.add_post("/v1/heartbeat", self._heartbeat)
        return app

    async def _command(self, request: web.Request) -> web.Response:
        envelope = envelope_from_json(await request.read())
        index = self.state.last_applied() + 1
        outcome = self.state.apply(index, envelope)
        return json_response({"index": index, "result": outcome.unwrap()})

    async def _status(self, request: web.Request) -> web.Response:
        counts = self.state.counts()
        return json_response({"node_id": "heal-meta", "leader": "heal-meta", "term": 0,
                              **msgspec.to_builtins(counts)})

    async def _map(self, request: web.Request) -> web.Response:
        return json_response(self.cluster_map())

    async def _lookup(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = msgspec.json.decode(await request.read())
        return json_response({"segments": self.state.lookup_segments(body["ids"])})

    async def _heartbeat(self, request: web.Request) -> web.Response:
        await record_heartbeat(request)
        return json_response({})

    @classmethod
    @contextlib.asynccontextmanager
    async def serving(cls, path: Path, config: ClusterConfig,
                      address: str) -> AsyncIterator[HealMeta]:
        meta = cls(path, config)
        runner = web.AppRunner(meta.app())
        await runner.setup()
        try:
            host, port = address.rsplit(":", 1)
            await web.TCPSite(runner, host, int(port)).start()
            meta.address = address
            yield meta
        finally:
            await runner.cleanup()
            meta.env.close()
