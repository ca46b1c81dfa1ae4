"""What the gateway shows operators: the status page, its data, and the gateway's metrics.

Routes (no S3 auth, like every ``/_blobstore/`` path; no bucket can be named ``_blobstore``)::

    GET /_blobstore/status              the page: static HTML, CSS and JS (gateway/static/)
    GET /_blobstore/static/{name}       status.css, status.js
    GET /_blobstore/status.json         the data the page polls every 2 s (``snapshot()``)
    GET /_blobstore/metrics             Prometheus text (``runtime/metrics.py``)

How the data is gathered (``ClusterWatch``, one per gateway, a background task owned by
``GatewayState``):

1. Every ``SAMPLE_INTERVAL_S`` it reads the gateway's CACHED cluster map (refreshed by
   ``GatewayState`` anyway: no extra meta load for nodes) and asks meta for its status once
   (leader, term, commit index, replicas, repair backlog). A page view never calls meta:
   any number of people can watch the page.
2. Every ``SCRUB_POLL_EVERY`` samples it asks each storage node that is up for its status
   (scrub progress, corrupt shards found), a few at a time, each with a short deadline.
3. Events are DERIVED from what changes between two samples (``node_events``,
   ``meta_events``, ``scrub_events``, pure functions): node up/suspect/down, leader
   elected or lost, meta unreachable, repair backlog queued and cleared, corruption found.
   A gateway only knows what it observed since it started; every gateway keeps its own.
4. Bounded memory: ``HISTORY_POINTS`` samples of the repair backlog (an hour) and the last
   ``MAX_EVENTS`` events.
5. The samples also set the ``blobstore_cluster_*`` gauges, so Prometheus alerts on node
   state, disk use and leadership work without any hook in meta.

The gateway names S3 operations for its request metrics (``s3_operation``): PutObject,
GetObject, ListObjectsV2, ... from the method, the shape of the path and the query.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

from aiohttp import web

from blobstore.core.errors import BlobstoreError
from blobstore.core.records import ClusterMap, NodeRole, NodeState
from blobstore.gateway.routing import split_target
from blobstore.gateway.state import GatewayState
from blobstore.runtime import metrics, request_id

log = logging.getLogger(__name__)
SAMPLE_INTERVAL_S = 2.0
META_STATUS_TIMEOUT_S = 3.0
SCRUB_POLL_EVERY = 5  # samples: storage nodes are asked every 10 s
SCRUB_POLL_TIMEOUT_S = 2.0
SCRUB_POLL_CONCURRENCY = 8
HISTORY_POINTS = 1800  # one hour of samples
MAX_EVENTS = 200
STATIC_FILES = {"status.css": "text/css", "status.js": "text/javascript"}


@dataclass(frozen=True, slots=True)
class Event:
    """Something the gateway saw change. ``severity``: info | warning | error."""

    at: float  # unix time
    kind: str  # node_down, node_up, leader_elected, repair_done, scrub_corruption, ...
    severity: str
    message: str
    node: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"t": self.at, "kind": self.kind, "severity": self.severity,
                "message": self.message, "node": self.node}


# ---- events: pure functions of two samples ------------------------------------------------

_STATE_EVENTS = {
    NodeState.UP: ("node_up", "info", "is up"),
    NodeState.SUSPECT: ("node_suspect", "warning", "is suspect (heartbeats late)"),
    NodeState.DOWN: ("node_down", "error", "is down"),
    NodeState.DRAINING: ("node_draining", "warning", "is draining"),
    NodeState.REMOVED: ("node_removed", "info", "was removed"),
}


def node_events(before: Mapping[str, NodeState] | None, after: Mapping[str, NodeState],
                at: float) -> list[Event]:
    """Node state changes; on the first sample (``before`` None), nodes not up."""
    events: list[Event] = []
    for node, state in sorted(after.items()):
        old = None if before is None else before.get(node)
        if before is not None and old is None:
            events.append(Event(at, "node_added", "info", f"{node} joined the cluster map "
                                f"({state.value})", node))
        elif old != state and (before is not None or state != NodeState.UP):
            kind, severity, text = _STATE_EVENTS[state]
            was = f" (was {old.value})" if old is not None else ""
            events.append(Event(at, kind, severity, f"{node} {text}{was}", node))
    for node in sorted(set(before or ()) - set(after)):
        events.append(Event(at, "node_removed", "info", f"{node} left the cluster map", node))
    return events


def meta_events(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                at: float) -> list[Event]:
    """Leadership, reachability and repair backlog changes between two meta statuses.

    None: meta did not answer that sample; ``{}``: no earlier sample (the first one)."""
    if after is None:
        return [] if before is None else [
            Event(at, "meta_unreachable", "error", "meta does not answer the gateway")]
    events: list[Event] = []
    if before is None:
        events.append(Event(at, "meta_reachable", "info", "meta answers the gateway again"))
    before = before or {}
    leader, old_leader = after.get("leader"), before.get("leader")
    if leader and leader != old_leader:
        events.append(Event(at, "leader_elected", "info",
                            f"{leader} leads meta (term {after.get('term')})", leader))
    elif not leader and (old_leader or not before):
        events.append(Event(at, "meta_no_leader", "error", "meta has no leader"))
    old_reach = _reachability(before)
    for node, ok in sorted(_reachability(after).items()):
        if node in old_reach and old_reach[node] != ok:
            events.append(Event(at, "replica_reachable" if ok else "replica_unreachable",
                                "info" if ok else "warning",
                                f"meta replica {node} is {'reachable' if ok else 'unreachable'} "
                                "from the leader", node))
    events += _backlog_events(before, after, at)
    return events


def _reachability(status: Mapping[str, Any]) -> dict[str, bool]:
    replicas = status.get("replicas")
    if not isinstance(replicas, dict):
        return {}
    return {str(node): bool(info.get("reachable")) for node, info in replicas.items()
            if isinstance(info, dict)}


def _backlog_events(before: Mapping[str, Any], after: Mapping[str, Any],
                    at: float) -> list[Event]:
    events: list[Event] = []
    old_backlog, backlog = before.get("repair_backlog"), after.get("repair_backlog")
    if isinstance(backlog, int) and isinstance(old_backlog, int):
        if old_backlog == 0 and backlog > 0:
            events.append(Event(at, "repair_queued", "warning",
                                f"{backlog} segment(s) queued for repair"))
        elif old_backlog > 0 and backlog == 0:
            events.append(Event(at, "repair_done", "info",
                                f"repair backlog cleared ({old_backlog} segment(s) repaired)"))
    old_degraded, degraded = before.get("degraded_segments"), after.get("degraded_segments")
    if isinstance(degraded, int) and isinstance(old_degraded, int):
        if old_degraded == 0 and degraded > 0:
            events.append(Event(at, "segments_degraded", "warning",
                                f"{degraded} segment(s) degraded"))
        elif old_degraded > 0 and degraded == 0:
            events.append(Event(at, "segments_healthy", "info", "no degraded segments left"))
    return events


def scrub_events(before: Mapping[str, int], after: Mapping[str, int], at: float) -> list[Event]:
    """Corrupt shards found by a node's scrubber since the last poll (counts per node;
    a count that went down is a restarted node, not news)."""
    events = []
    for node, found in sorted(after.items()):
        old = before.get(node)
        if old is not None and found > old:
            events.append(Event(at, "scrub_corruption", "error",
                                f"scrub on {node} found {found - old} corrupt shard(s)", node))
    return events


# ---- the sampler --------------------------------------------------------------------------


@dataclass
class _Sample:
    at: float
    meta: dict[str, Any] | None
    meta_error: str | None
    cluster_map: ClusterMap | None
    map_age_s: float | None


@dataclass
class ClusterWatch:
    """Samples the cluster for the status page and the ``blobstore_cluster_*`` gauges."""

    state: GatewayState
    wall: Callable[[], float] = time.time
    name: str = "cluster-watch"
    history: collections.deque[tuple[float, int | None, int | None]] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY_POINTS))
    events: collections.deque[Event] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_EVENTS))
    scrub: dict[str, dict[str, Any]] = field(default_factory=dict)
    last: _Sample | None = None
    samples: int = 0

    async def run(self) -> None:
        """Sample forever (cancelled with the app); a failed sample is logged, never fatal
        (meta being down is not a failure: it is what the page reports)."""
        self._add([Event(self.wall(), "gateway_started", "info",
                         f"{self.state.node.id} started watching the cluster",
                         self.state.node.id)])
        while True:
            try:
                await self.run_once()
            except Exception:  # a bug here must not stop the sampling: logged, retried
                log.exception("%s: sample failed; next one in %.0f s", self.name,
                              SAMPLE_INTERVAL_S)
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    async def run_once(self) -> None:
        """One sample: cached map, meta status, maybe storage scrub status; events; gauges."""
        at = self.wall()
        meta, meta_error = await self._meta_status()
        cluster_map = self.state.cluster_map
        age = time.monotonic() - self.state.map_fetched_at if cluster_map else None
        sample = _Sample(at, meta, meta_error, cluster_map, age)
        before = self.last
        events: list[Event] = []
        if cluster_map is not None:
            old_states = None
            if before is not None and before.cluster_map is not None:
                old_states = _states(before.cluster_map)
            events += node_events(old_states, _states(cluster_map), at)
        events += meta_events({} if before is None else before.meta, meta, at)
        if self.samples % SCRUB_POLL_EVERY == 0 and cluster_map is not None:
            events += await self._poll_scrub(cluster_map, at)
        self.history.append((at, _int_or_none(meta, "repair_backlog"),
                             _int_or_none(meta, "degraded_segments")))
        self._add(events)
        self.last = sample
        self.samples += 1
        _export_gauges(sample)

    def _add(self, events: Iterable[Event]) -> None:
        for event in events:
            self.events.append(event)
            log.log(logging.WARNING if event.severity == "error" else logging.INFO,
                    "event kind=%s node=%s %s", event.kind, event.node or "-", event.message)

    async def _meta_status(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            async with asyncio.timeout(META_STATUS_TIMEOUT_S):
                return await self.state.meta.status(), None
        except TimeoutError:
            return None, f"meta did not answer within {META_STATUS_TIMEOUT_S:.0f} s"
        except BlobstoreError as exc:
            return None, exc.message

    async def _poll_scrub(self, cluster_map: ClusterMap, at: float) -> list[Event]:
        nodes = [n for n in cluster_map.storage_nodes() if n.state == NodeState.UP]
        limit = asyncio.Semaphore(SCRUB_POLL_CONCURRENCY)

        async def one(address: str) -> dict[str, Any] | None:
            async with limit:
                try:
                    return await self.state.storage.status(address,
                                                           timeout_s=SCRUB_POLL_TIMEOUT_S)
                except BlobstoreError:
                    return None

        answers = await asyncio.gather(*(one(n.address) for n in nodes))
        before = {node: int(info.get("scrub_corrupt_found", 0))
                  for node, info in self.scrub.items()}
        for node, answer in zip(nodes, answers, strict=True):
            if answer is not None:
                self.scrub[node.id] = answer
        after = {node: int(info.get("scrub_corrupt_found", 0)) for node, info in self.scrub.items()}
        return scrub_events(before, after, at)

    def snapshot(self) -> dict[str, Any]:
        """The status page's data (``GET /_blobstore/status.json``)."""
        sample = self.last
        meta = (sample.meta if sample else None) or {}
        nodes = _node_rows(self.state, sample.cluster_map if sample else None, meta, self.scrub,
                           sample.at if sample else self.wall())
        zones: dict[str, list[dict[str, Any]]] = {}
        for row in nodes:
            zones.setdefault(row["zone"], []).append(row)
        storage = [r for r in nodes if r["role"] == NodeRole.STORAGE.value]
        cluster_map = sample.cluster_map if sample else None
        return {
            "gateway": self.state.node.id,
            "now": self.wall(),
            "sampled_at": sample.at if sample else None,
            "sample_interval_s": SAMPLE_INTERVAL_S,
            "map": None if cluster_map is None else {
                "epoch": cluster_map.epoch, "data_shards": cluster_map.data_shards,
                "parity_shards": cluster_map.parity_shards,
                "age_s": round(sample.map_age_s or 0.0, 1) if sample else None},
            "meta": _meta_view(meta, sample.meta_error if sample else "not sampled yet", nodes),
            "zones": [{"name": name, "nodes": rows} for name, rows in sorted(zones.items())],
            "totals": {
                "nodes": len(nodes),
                "up": sum(1 for r in nodes if r["state"] == "up"),
                "capacity_bytes": sum(r["capacity_bytes"] for r in storage),
                "used_bytes": sum(r["used_bytes"] for r in storage),
                "shards": sum(r["shard_count"] for r in storage)},
            "repair": {key: meta.get(key) for key in
                       ("repair_backlog", "degraded_segments", "gc_backlog", "objects",
                        "segments")} | {"history": [list(p) for p in self.history]},
            "events": [e.to_json() for e in reversed(self.events)],
        }


def _states(cluster_map: ClusterMap) -> dict[str, NodeState]:
    return {n.id: n.state for n in cluster_map.nodes if n.role != NodeRole.GATEWAY}


def _int_or_none(status: Mapping[str, Any] | None, key: str) -> int | None:
    value = (status or {}).get(key)
    return value if isinstance(value, int) else None


class _Listed(NamedTuple):
    id: str
    role: NodeRole
    zone: str
    address: str


def _node_rows(state: GatewayState, cluster_map: ClusterMap | None, meta: Mapping[str, Any],
               scrub: Mapping[str, Mapping[str, Any]], now_s: float) -> list[dict[str, Any]]:
    """Every node of cluster.toml and of the map (nodes added at run time), with what the
    cluster map and meta say of it."""
    views = {n.id: n for n in cluster_map.nodes} if cluster_map else {}
    reach = _reachability(meta)
    nodes = [_Listed(n.id, n.role, n.zone, n.address) for n in state.config.nodes]
    listed = {n.id for n in nodes}
    nodes += [_Listed(v.id, v.role, v.zone, v.address) for v in views.values()
              if v.id not in listed]
    rows = []
    for node in nodes:
        view = views.get(node.id)
        row: dict[str, Any] = {
            "id": node.id, "role": node.role.value, "zone": node.zone, "address": node.address,
            "state": view.state.value if view else "unknown",
            "capacity_bytes": view.capacity_bytes if view else 0,
            "used_bytes": view.used_bytes if view else 0,
            "shard_count": view.shard_count if view else 0,
            "heartbeat_age_s": (round(max(now_s - view.last_heartbeat_ns / 1e9, 0.0), 1)
                                if view and view.last_heartbeat_ns else None),
            "raft": None, "scrub": None}
        if node.role == NodeRole.META:
            row["raft"] = ("leader" if meta.get("leader") == node.id else
                           "follower" if reach.get(node.id, node.id in meta.get("voters", ()))
                           else "unreachable" if node.id in reach else "unknown")
            if row["raft"] == "unreachable":
                row["state"] = "down"
            elif not meta:  # the map's meta states are static; without meta we know nothing
                row["state"] = "unknown"
        if node.role == NodeRole.GATEWAY:
            row["state"] = "up" if node.id == state.node.id else row["state"]
        info = scrub.get(node.id)
        if info is not None:
            row["scrub"] = {"checked": info.get("scrub_shards_checked", 0),
                            "total": info.get("scrub_shards_total", 0),
                            "passes": info.get("scrub_passes_completed", 0),
                            "corrupt_found": info.get("scrub_corrupt_found", 0)}
        rows.append(row)
    return rows


def _meta_view(meta: Mapping[str, Any], error: str | None,
               nodes: list[dict[str, Any]]) -> dict[str, Any]:
    replicas = meta.get("replicas") if isinstance(meta.get("replicas"), dict) else {}
    rows = []
    for node in nodes:
        if node["role"] != NodeRole.META.value:
            continue
        progress = replicas.get(node["id"], {}) if isinstance(replicas, dict) else {}
        rows.append({"id": node["id"], "zone": node["zone"], "address": node["address"],
                     "role": node["raft"], "voter": node["id"] in meta.get("voters", ()),
                     "reachable": progress.get("reachable"),
                     "match_index": progress.get("match_index")})
    return {"leader": meta.get("leader"), "term": meta.get("term"),
            "commit_index": meta.get("commit_index"), "last_applied": meta.get("last_applied"),
            "quorum_active": meta.get("quorum_active"), "error": error, "replicas": rows}


def _export_gauges(sample: _Sample) -> None:
    if sample.cluster_map is not None:
        metrics.set_cluster_nodes(
            metrics.ClusterNode(n.id, n.role.value, n.zone, n.state.value, n.capacity_bytes,
                                n.used_bytes, n.shard_count) for n in sample.cluster_map.nodes)
    meta = sample.meta or {}
    metrics.set_cluster_meta(has_leader=bool(meta.get("leader")),
                             term=_int_or_none(meta, "term"),
                             repair_backlog=_int_or_none(meta, "repair_backlog"),
                             degraded_segments=_int_or_none(meta, "degraded_segments"),
                             reachable=_reachability(meta) if sample.meta else None)


# ---- S3 operation names (request metrics) -------------------------------------------------


def s3_operation(method: str, bucket: str, key: str | None, query: Mapping[str, str],
                 copy_source: bool) -> str:
    """The S3 API name of a request, from its method, path shape and query keys."""
    if not bucket:
        return "ListBuckets" if method == "GET" else "Unknown"
    if key is None:
        return _bucket_operation(method, query)
    if "uploadId" in query:
        return {"PUT": "UploadPartCopy" if copy_source else "UploadPart",
                "POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload",
                "GET": "ListParts"}.get(method, "Unknown")
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "PUT":
        return "CopyObject" if copy_source else "PutObject"
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(
        method, "Unknown")


def _bucket_operation(method: str, query: Mapping[str, str]) -> str:
    if method == "GET":
        for name, operation in (("location", "GetBucketLocation"),
                                ("versions", "ListObjectVersions"),
                                ("uploads", "ListMultipartUploads")):
            if name in query:
                return operation
        return "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
        method, "Unknown")


def gateway_operation(s3_domain: str) -> Callable[[web.Request], str | None]:
    """``operation_of`` for the gateway's metrics middleware."""

    def operation_of(request: web.Request) -> str | None:
        if request.path.startswith("/_blobstore/"):
            return None  # the route's name: "GET /_blobstore/metrics"
        try:
            bucket, key = split_target(request.raw_path, request.host, s3_domain)
        except UnicodeDecodeError:
            return "Unknown"
        return s3_operation(request.method, bucket, key, request.query,
                            "x-amz-copy-source" in request.headers)

    return operation_of


# ---- HTTP ---------------------------------------------------------------------------------


class _Holder:
    """The app's ClusterWatch, created at startup (the app is frozen by then)."""

    watch: ClusterWatch | None = None


WATCH: web.AppKey[_Holder] = web.AppKey("cluster_watch", _Holder)


def _static(name: str) -> bytes:
    return resources.files("blobstore.gateway").joinpath("static", name).read_bytes()


async def handle_page(_: web.Request) -> web.Response:
    return web.Response(body=_static("status.html"), content_type="text/html",
                        charset="utf-8", headers={"Cache-Control": "no-cache"})


async def handle_static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.Response(body=_static(name), content_type=STATIC_FILES[name], charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def handle_status_json(request: web.Request) -> web.Response:
    watch = request.app[WATCH].watch
    if watch is None:
        return web.json_response({"error": "starting"}, status=503)
    return web.json_response(watch.snapshot(), headers={"Cache-Control": "no-store"})


@web.middleware
async def _hold_request_id(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Innermost: the S3 middleware has named the request; log lines and internal calls
    made while handling it carry that id (runtime/request_id.py)."""
    request_id.set_current(request.get("request_id"))
    return await handler(request)


def install(app: web.Application, state_key: web.AppKey[GatewayState]) -> None:
    """Add metrics, request ids and the status page to the gateway app (before its
    catch-all S3 route). The metrics middleware goes first, to see the final status."""
    app.middlewares.insert(0, metrics.metrics_middleware("gateway", _operation_of(state_key)))
    app.middlewares.append(_hold_request_id)
    metrics.add_routes(app)
    app.router.add_get("/_blobstore/status", handle_page)
    app.router.add_get("/_blobstore/status.json", handle_status_json)
    app.router.add_get("/_blobstore/static/{name}", handle_static)
    holder = _Holder()
    app[WATCH] = holder

    async def start_watch(app: web.Application) -> None:
        state = app[state_key]  # set by the gateway's lifecycle context, which ran first
        holder.watch = ClusterWatch(state)
        state.spawn(holder.watch.run())

    app.on_startup.append(start_watch)


def _operation_of(state_key: web.AppKey[GatewayState]) -> Callable[[web.Request], str | None]:
    by_domain: dict[str, Callable[[web.Request], str | None]] = {}

    def operation_of(request: web.Request) -> str | None:
        state = request.app.get(state_key)
        domain = state.config.s3_domain if state is not None else ""
        if domain not in by_domain:
            by_domain[domain] = gateway_operation(domain)
        return by_domain[domain](request)

    return operation_of


__all__ = ["ClusterWatch", "Event", "install", "meta_events", "node_events", "s3_operation",
           "scrub_events"]
