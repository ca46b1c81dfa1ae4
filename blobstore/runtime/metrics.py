"""Prometheus metrics of one process: the registry, the request middleware, the gauges other
modules set, and the ``GET /_blobstore/metrics`` handler (text exposition, no auth).

Every series is named ``blobstore_*``; the table below is the contract that dashboards and
``deploy/prometheus/alerts.yml`` rely on (docs/operations.md lists it too).

Requests (every role, from ``metrics_middleware``)::

    blobstore_requests_total{role, operation, status}        counter
    blobstore_request_bytes_total{role, operation}           counter (body bytes received)
    blobstore_response_bytes_total{role, operation}          counter (body bytes sent)
    blobstore_request_duration_seconds{role, operation}      histogram
    blobstore_requests_in_flight{role}                       gauge

``role`` is gateway, or what an internal app sets in ``app[ROLE]`` (meta, storage;
``internal`` until it does). ``operation`` is what the role names it: the gateway names S3
operations (PutObject, GetObject, ListObjectsV2, ...); an internal app is named by its route
(``PUT /v1/shards/{shard_id}``) unless the handler calls ``set_operation``.

Set by the roles through the typed functions below (see each one for the series)::

    storage  set_storage_usage, set_scrub_progress, observe_fsync, count_repair,
             count_worker_event (every PeriodicWorker counter)
    meta     set_raft, set_repair_backlog (or both from set_meta_status), observe_fsync
    gateway  set_cluster_nodes, set_cluster_meta (its view of the cluster map and meta)

Rules:

1. One registry per process (``REGISTRY``), holding our series and the process collector
   (CPU, memory, file descriptors). A process runs one role, so module-level metrics are
   that process's metrics; several apps in one test process share them, which is harmless.
2. Label values are bounded: operations come from a fixed table or from route templates,
   never from raw paths; status is the HTTP code.
3. Setting a metric costs a dict lookup and an add, so roles call these functions on hot
   paths (fsync, every request); only a programming error (unknown label) raises.
4. Scrape hooks (``add_scrape_hook``) let a role refresh gauges only when scraped, instead
   of on every change; a failing hook is logged and the rest of the page is still served.
5. A role's series appear once the role first sets them: a storage node exports no Raft
   term, and a meta replica whose hook is not wired yet exports nothing rather than a 0
   that alerts would read as "no leader".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from blobstore.runtime import request_id

log = logging.getLogger(__name__)
access_log = logging.getLogger("blobstore.access")  # one line per request (ACCESS_LOG_ENV)
METRICS_PATH = "/_blobstore/metrics"
ACCESS_LOG_ENV = "BLOBSTORE_ACCESS_LOG"  # "1": every request is logged at INFO, not DEBUG
SLOW_REQUEST_S = 1.0  # a request slower than this is logged at INFO regardless
ROLE: web.AppKey[str] = web.AppKey("metrics_role", str)  # an internal app's role label

disable_created_metrics()  # no *_created series: half the lines, nothing we alert on
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5, 5.0)

# ---- requests (every role) -----------------------------------------------------------------
REQUESTS = Counter("blobstore_requests", "Requests handled, by role, operation and HTTP status.",
                   ["role", "operation", "status"], registry=REGISTRY)
REQUEST_BYTES = Counter("blobstore_request_bytes", "Request body bytes received.",
                        ["role", "operation"], registry=REGISTRY)
RESPONSE_BYTES = Counter("blobstore_response_bytes", "Response body bytes sent.",
                         ["role", "operation"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("blobstore_request_duration_seconds",
                            "Time from the request's headers to the handler's return "
                            "(a streamed body is included).",
                            ["role", "operation"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
IN_FLIGHT = Gauge("blobstore_requests_in_flight", "Requests being handled now.", ["role"],
                  registry=REGISTRY)

M = TypeVar("M", Counter, Gauge, Histogram)


class _Lazy(Generic[M]):
    """A metric registered on first use (rule 5): a process exports what its role sets."""

    def __init__(self, name: str, factory: Callable[[], M]) -> None:
        self.name = name
        self._factory = factory
        self._metric: M | None = None
        self._lock = threading.Lock()  # fsync is observed from I/O threads

    def __call__(self) -> M:
        metric = self._metric
        if metric is None:
            with self._lock:
                if self._metric is None:
                    self._metric = self._factory()
                metric = self._metric
        return metric


def _gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> _Lazy[Gauge]:
    return _Lazy(name, lambda: Gauge(name, documentation, labels, registry=REGISTRY))


def _counter(name: str, documentation: str, labels: tuple[str, ...] = ()) -> _Lazy[Counter]:
    return _Lazy(name + "_total", lambda: Counter(name, documentation, labels, registry=REGISTRY))


# ---- durability (storage, meta) ----------------------------------------------------------
FSYNC_SECONDS = _Lazy("blobstore_fsync_duration_seconds", lambda: Histogram(
    "blobstore_fsync_duration_seconds", "Duration of one fsync (file, directory or log), by kind.",
    ["kind"], buckets=FSYNC_BUCKETS, registry=REGISTRY))

# ---- storage node -------------------------------------------------------------------------
SHARDS_HELD = _gauge("blobstore_shards_held", "Shard files this storage node holds.")
DISK_CAPACITY = _gauge("blobstore_disk_capacity_bytes", "Capacity of this node's data disk.")
DISK_USED = _gauge("blobstore_disk_used_bytes", "Bytes used on this node's data disk.")
SCRUB_CHECKED = _gauge("blobstore_scrub_shards_checked",
                       "Shards verified so far in the current (or last) scrub pass.")
SCRUB_TOTAL = _gauge("blobstore_scrub_shards_total", "Shards the current scrub pass covers.")
SCRUB_PASSES = _gauge("blobstore_scrub_passes_completed", "Scrub passes completed since start.")
SCRUB_CORRUPT = _gauge("blobstore_scrub_corrupt_shards_found",
                       "Corrupt shards the scrubber found and quarantined since start.")
SCRUB_LAST_PASS = _gauge("blobstore_scrub_last_pass_completed_timestamp_seconds",
                         "Unix time the last scrub pass completed (0: none yet).")
REPAIRS = _counter("blobstore_repairs", "Segment repairs attempted, by outcome.", ("outcome",))
SHARDS_REPAIRED = _counter("blobstore_shards_repaired", "Shards rebuilt and written by repairs.")
REPAIRED_BYTES = _counter("blobstore_repair_bytes", "Shard bytes written by repairs.")
WORKER_EVENTS = _counter("blobstore_worker_events",
                         "What background workers (scrubber, repairer, inventory, collector) "
                         "counted, by worker and event.", ("worker", "event"))

# ---- meta replica -------------------------------------------------------------------------
RAFT_TERM = _gauge("blobstore_raft_term", "Current Raft term of this replica.")
RAFT_COMMIT = _gauge("blobstore_raft_commit_index", "Raft commit index of this replica.")
RAFT_APPLIED = _gauge("blobstore_raft_applied_index",
                      "Raft index applied to the state machine.")
RAFT_LAST = _gauge("blobstore_raft_last_index", "Last index in this replica's Raft log.")
RAFT_IS_LEADER = _gauge("blobstore_raft_is_leader", "1 if this replica is the Raft leader.")
RAFT_HAS_LEADER = _gauge("blobstore_raft_has_leader", "1 if this replica knows a leader.")
REPAIR_BACKLOG = _gauge("blobstore_repair_backlog_segments",
                        "Segments queued for repair (meta's repair queue).")
DEGRADED = _gauge("blobstore_degraded_segments",
                  "Segments with fewer healthy shards than data + parity.")
GC_BACKLOG = _gauge("blobstore_gc_backlog", "Shards or segments awaiting garbage collection.")

# ---- cluster as one gateway sees it (cached cluster map, meta status) --------------------
CLUSTER_NODE_UP = _gauge("blobstore_cluster_node_up",
                         "1 if the cluster map shows the node up, else 0 (suspect, down, ...).",
                         ("node", "role", "zone"))
CLUSTER_NODE_STATE = _gauge("blobstore_cluster_node_state",
                            "1 for the node's state in the cluster map (one series per state).",
                            ("node", "state"))
CLUSTER_NODE_CAPACITY = _gauge("blobstore_cluster_node_capacity_bytes",
                               "Capacity a storage node last reported.", ("node", "zone"))
CLUSTER_NODE_USED = _gauge("blobstore_cluster_node_used_bytes",
                           "Bytes used a storage node last reported.", ("node", "zone"))
CLUSTER_NODE_SHARDS = _gauge("blobstore_cluster_node_shards",
                             "Shards a storage node last reported.", ("node", "zone"))
CLUSTER_META_HAS_LEADER = _gauge("blobstore_cluster_meta_has_leader",
                                 "1 if meta answered with a leader at the last sample.")
CLUSTER_META_REACHABLE = _gauge("blobstore_cluster_meta_replica_reachable",
                                "1 if the meta leader reaches this replica.", ("node",))
CLUSTER_RAFT_TERM = _gauge("blobstore_cluster_raft_term", "The meta leader's term.")
CLUSTER_REPAIR_BACKLOG = _gauge("blobstore_cluster_repair_backlog_segments",
                                "Meta's repair backlog at the last sample.")
CLUSTER_DEGRADED = _gauge("blobstore_cluster_degraded_segments",
                          "Meta's degraded segment count at the last sample.")

_dynamic_gauges: dict[str, Gauge] = {}
ScrapeHook = Callable[[], Awaitable[None] | None]
_scrape_hooks: list[ScrapeHook] = []
_APP_HOOKS: web.AppKey[list[ScrapeHook]] = web.AppKey("metrics_scrape_hooks", list)


# ---- typed setters ------------------------------------------------------------------------


def observe_fsync(seconds: float, kind: str = "file") -> None:
    """One fsync took ``seconds``; ``kind`` is ``file``, ``dir``, ``raft_log``, ``lmdb``."""
    FSYNC_SECONDS().labels(kind).observe(seconds)


def set_storage_usage(capacity_bytes: int, used_bytes: int, shard_count: int) -> None:
    DISK_CAPACITY().set(capacity_bytes)
    DISK_USED().set(used_bytes)
    SHARDS_HELD().set(shard_count)


def set_scrub_progress(shards_checked: int, shards_total: int, passes_completed: int,
                       corrupt_found: int, last_pass_completed_s: float) -> None:
    SCRUB_CHECKED().set(shards_checked)
    SCRUB_TOTAL().set(shards_total)
    SCRUB_PASSES().set(passes_completed)
    SCRUB_CORRUPT().set(corrupt_found)
    SCRUB_LAST_PASS().set(last_pass_completed_s)


def count_repair(outcome: str = "ok", shards: int = 0, bytes_written: int = 0) -> None:
    """One segment repair ended (``ok``, ``failed``, ``lost``...) having written ``shards``."""
    REPAIRS().labels(outcome).inc()
    SHARDS_REPAIRED().inc(shards)
    REPAIRED_BYTES().inc(bytes_written)


def count_worker_event(worker: str, event: str, amount: int = 1) -> None:
    """A ``PeriodicWorker.count()`` (runtime/workers.py): e.g. repairer/shards_rebuilt."""
    WORKER_EVENTS().labels(worker, event).inc(amount)


def set_raft(term: int, commit_index: int, applied_index: int, *, is_leader: bool,
             has_leader: bool, last_index: int | None = None) -> None:
    RAFT_TERM().set(term)
    RAFT_COMMIT().set(commit_index)
    RAFT_APPLIED().set(applied_index)
    RAFT_IS_LEADER().set(1 if is_leader else 0)
    RAFT_HAS_LEADER().set(1 if has_leader else 0)
    if last_index is not None:
        RAFT_LAST().set(last_index)


def set_repair_backlog(segments: int, degraded_segments: int | None = None,
                       gc_backlog: int | None = None) -> None:
    REPAIR_BACKLOG().set(segments)
    if degraded_segments is not None:
        DEGRADED().set(degraded_segments)
    if gc_backlog is not None:
        GC_BACKLOG().set(gc_backlog)


class ClusterNode(NamedTuple):
    """One node of the cluster map, as ``set_cluster_nodes`` takes it."""

    node: str
    role: str
    zone: str
    state: str
    capacity_bytes: int = 0
    used_bytes: int = 0
    shard_count: int = 0


def set_cluster_nodes(nodes: Iterable[ClusterNode]) -> None:
    """Replace the per-node cluster gauges with ``nodes`` (a removed node's series go)."""
    up, state, capacity = CLUSTER_NODE_UP(), CLUSTER_NODE_STATE(), CLUSTER_NODE_CAPACITY()
    used, shards = CLUSTER_NODE_USED(), CLUSTER_NODE_SHARDS()
    for gauge in (up, state, capacity, used, shards):
        gauge.clear()
    for n in nodes:
        state.labels(n.node, n.state).set(1)
        if n.state == "removed":
            continue  # gone from the cluster on purpose: not "down", and holds nothing
        # A draining node is alive and serving reads: up, so that no NodeDown alert fires.
        up.labels(n.node, n.role, n.zone).set(1 if n.state in ("up", "draining") else 0)
        if n.role == "storage":
            capacity.labels(n.node, n.zone).set(n.capacity_bytes)
            used.labels(n.node, n.zone).set(n.used_bytes)
            shards.labels(n.node, n.zone).set(n.shard_count)


def set_cluster_meta(*, has_leader: bool, term: int | None, repair_backlog: int | None,
                     degraded_segments: int | None,
                     reachable: dict[str, bool] | None = None) -> None:
    """The gateway's last sample of meta's status (None: not known, left as it was)."""
    CLUSTER_META_HAS_LEADER().set(1 if has_leader else 0)
    if term is not None:
        CLUSTER_RAFT_TERM().set(term)
    if repair_backlog is not None:
        CLUSTER_REPAIR_BACKLOG().set(repair_backlog)
    if degraded_segments is not None:
        CLUSTER_DEGRADED().set(degraded_segments)
    if reachable is not None:
        gauge = CLUSTER_META_REACHABLE()
        gauge.clear()
        for node, ok in reachable.items():
            gauge.labels(node).set(1 if ok else 0)


def set_gauge(name: str, value: float, **labels: str) -> None:
    """Set a gauge not in the table above (created on first use, ``blobstore_`` prefix,
    the same label names every time). Prefer a typed setter for anything alerts use."""
    if not name.startswith("blobstore_"):
        raise ValueError(f"metric {name!r} must start with blobstore_")
    gauge = _dynamic_gauges.get(name)
    if gauge is None:
        gauge = Gauge(name, f"{name} (set by set_gauge)", sorted(labels), registry=REGISTRY)
        _dynamic_gauges[name] = gauge
    (gauge.labels(**labels) if labels else gauge).set(value)


def metric_names() -> set[str]:
    """Every series family this module can export (as scraped: counters with ``_total``)."""
    eager = {"blobstore_requests_total", "blobstore_request_bytes_total",
             "blobstore_response_bytes_total", "blobstore_request_duration_seconds",
             "blobstore_requests_in_flight"}
    lazy = {value.name for value in globals().values() if isinstance(value, _Lazy)}
    return eager | lazy | set(_dynamic_gauges)


def add_scrape_hook(hook: ScrapeHook, app: web.Application | None = None) -> None:
    """Run ``hook`` (sync or async) before each scrape, to refresh gauges (rule 4).

    With ``app`` (call it before the app starts), the hook belongs to that app and runs for
    its scrapes only: several apps in one test process do not see each other's hooks."""
    if app is None:
        _scrape_hooks.append(hook)
        return
    if _APP_HOOKS not in app:
        app[_APP_HOOKS] = []
    app[_APP_HOOKS].append(hook)


def remove_scrape_hook(hook: ScrapeHook) -> None:
    if hook in _scrape_hooks:
        _scrape_hooks.remove(hook)


def set_meta_status(status: Mapping[str, Any]) -> None:
    """The gauges of a meta replica from its ``/v1/status`` answer (``MetaService.status()``:
    role, leader, term, commit_index, last_applied, last_index, repair_backlog, ...)."""
    term, commit, applied = (status.get(k) for k in ("term", "commit_index", "last_applied"))
    if isinstance(term, int) and isinstance(commit, int) and isinstance(applied, int):
        last_index = status.get("last_index")
        set_raft(term, commit, applied, is_leader=status.get("role") == "leader",
                 has_leader=bool(status.get("leader")),
                 last_index=last_index if isinstance(last_index, int) else None)
    backlog = status.get("repair_backlog")
    if isinstance(backlog, int):
        degraded, gc = status.get("degraded_segments"), status.get("gc_backlog")
        set_repair_backlog(backlog, degraded if isinstance(degraded, int) else None,
                           gc if isinstance(gc, int) else None)


# ---- HTTP ---------------------------------------------------------------------------------


async def handle_metrics(request: web.Request) -> web.Response:
    """``GET /_blobstore/metrics``: Prometheus text exposition of ``REGISTRY``."""
    for hook in [*_scrape_hooks, *request.app.get(_APP_HOOKS, ())]:
        try:
            result = hook()
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("metrics scrape hook %r failed", hook, exc_info=True)
    return web.Response(body=generate_latest(REGISTRY),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    """Serve ``GET /_blobstore/metrics`` on ``app`` (before any catch-all route)."""
    app.router.add_get(METRICS_PATH, handle_metrics)


OperationOf = Callable[[web.Request], str | None]


def metrics_middleware(role: str | None = None, operation_of: OperationOf | None = None):  # type: ignore[no-untyped-def]
    """Count, size and time every request; hold its request id (``runtime/request_id``).

    ``role`` labels the series; when None it is ``app[ROLE]``, else ``"internal"``. The
    operation is what the handler named (``set_operation``; ``request["operation"]`` too),
    else ``operation_of``'s answer, else the matched route (``METHOD /template``), else
    ``unmatched``. An incoming ``X-Request-Id`` is held for the request (the gateway then
    replaces it with its own)."""
    access_info = os.environ.get(ACCESS_LOG_ENV, "") == "1"

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        label = role or request.app.get(ROLE, "internal")
        start = time.perf_counter()
        in_flight = IN_FLIGHT.labels(label)
        in_flight.inc()
        status = 500
        response: web.StreamResponse | None = None
        with request_id.bound(request.headers.get(request_id.HEADER)):
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = 499  # the client went away (nginx's code for it)
                raise
            finally:
                in_flight.dec()
                _record(request, response, label, status, time.perf_counter() - start,
                        operation_of, access_info)

    return middleware


def _record(request: web.Request, response: web.StreamResponse | None, role: str, status: int,
            seconds: float, operation_of: OperationOf | None, access_info: bool) -> None:
    operation = _operation(request, operation_of)
    bytes_in = getattr(request.content, "total_bytes", 0) or 0
    bytes_out = _response_bytes(request, response)
    REQUESTS.labels(role, operation, str(status)).inc()
    REQUEST_BYTES.labels(role, operation).inc(bytes_in)
    RESPONSE_BYTES.labels(role, operation).inc(bytes_out)
    REQUEST_SECONDS.labels(role, operation).observe(seconds)
    level = logging.INFO if access_info or seconds >= SLOW_REQUEST_S else logging.DEBUG
    if access_log.isEnabledFor(level):
        access_log.log(level, "method=%s path=%s status=%s operation=%s bytes_in=%d "
                       "bytes_out=%d ms=%.1f", request.method, _logged_path(request), status,
                       operation.replace(" ", "_"), bytes_in, bytes_out, seconds * 1000)


_OPERATION_KEY: Any = web.RequestKey("operation", str) if hasattr(web, "RequestKey") else "operation"


def set_operation(request: web.Request, name: str) -> None:
    """Name the request's operation for its metrics (a handler that knows better than its
    route, e.g. meta's ``POST /v1/command`` naming the command type)."""
    request[_OPERATION_KEY] = name


def _logged_path(request: web.Request) -> str:
    """The path as sent, without the query (a presigned URL's signature is a credential)."""
    return request.raw_path.partition("?")[0][:256]


def _operation(request: web.Request, operation_of: OperationOf | None) -> str:
    named = request.get(_OPERATION_KEY) or request.get("operation")
    if isinstance(named, str) and named:
        return named
    if operation_of is not None:
        try:
            derived = operation_of(request)
        except Exception:  # naming must never fail a request; say so once per request
            log.debug("operation_of failed for %s %s", request.method, request.path,
                      exc_info=True)
            derived = None
        if derived:
            return derived
    return route_operation(request)


def route_operation(request: web.Request) -> str:
    """``METHOD /route/{template}`` of the matched route, or ``unmatched``."""
    try:
        resource = request.match_info.route.resource
    except (AttributeError, RuntimeError):
        return "unmatched"
    if resource is None:
        return "unmatched"
    return f"{request.method} {resource.canonical}"


def _response_bytes(request: web.Request, response: web.StreamResponse | None) -> int:
    if response is None or request.method == "HEAD":
        return 0
    if response.prepared:  # streamed by the handler: what it wrote, or what it declared
        return response.body_length or response.content_length or 0
    return response.content_length or 0


__all__ = [
    "METRICS_PATH", "REGISTRY", "ROLE", "ClusterNode", "add_routes", "add_scrape_hook",
    "count_repair", "count_worker_event", "handle_metrics", "metric_names",
    "metrics_middleware", "observe_fsync", "remove_scrape_hook", "route_operation",
    "set_cluster_meta", "set_cluster_nodes", "set_gauge", "set_meta_status", "set_operation",
    "set_raft", "set_repair_backlog", "set_scrub_progress", "set_storage_usage",
]
