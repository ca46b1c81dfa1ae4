"""runtime/metrics.py: the request middleware, the typed setters and /_blobstore/metrics,
on an internal app served on a real 127.0.0.1 socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from blobstore.core.errors import NoSuchShard
from blobstore.rpc.client import RpcClient
from blobstore.rpc.server import internal_app, json_response
from blobstore.runtime import metrics, request_id

SECRET = "metrics-test-secret"


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = site._server.sockets  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


def make_app(role: str = "storage") -> tuple[web.Application, list[str | None]]:
    seen_ids: list[str | None] = []

    async def put_thing(request: web.Request) -> web.Response:
        body = await request.read()
        seen_ids.append(request_id.current())
        return json_response({"got": len(body)}, status=201)

    async def named(request: web.Request) -> web.Response:
        metrics.set_operation(request, "command:put_object")
        return json_response({})

    async def missing(_: web.Request) -> web.Response:
        raise NoSuchShard("no such shard")

    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = internal_app(SECRET)
    app[metrics.ROLE] = role
    app.router.add_put("/v1/things/{thing_id}", put_thing)
    app.router.add_post("/v1/named", named)
    app.router.add_get("/v1/missing", missing)
    app.router.add_get("/v1/broken", broken)
    return app, seen_ids


def test_middleware_counts_sizes_and_times_by_route() -> None:
    operation = "PUT /v1/things/{thing_id}"
    before = {
        "requests": sample("blobstore_requests_total", role="unit", operation=operation,
                           status="201"),
        "bytes_in": sample("blobstore_request_bytes_total", role="unit", operation=operation),
        "bytes_out": sample("blobstore_response_bytes_total", role="unit",
                            operation=operation),
        "timed": sample("blobstore_request_duration_seconds_count", role="unit",
                        operation=operation),
    }

    async def main() -> None:
        app, _ = make_app("unit")
        async with serve(app) as address, aiohttp.ClientSession() as session:
            rpc = RpcClient(session, SECRET)
            for thing in ("a", "b", "c"):
                await rpc.request("PUT", address, f"/v1/things/{thing}", data=b"x" * 1000)

    asyncio.run(main())
    assert sample("blobstore_requests_total", role="unit", operation=operation,
                  status="201") == before["requests"] + 3
    assert sample("blobstore_request_bytes_total", role="unit",
                  operation=operation) == before["bytes_in"] + 3000
    assert sample("blobstore_response_bytes_total", role="unit",
                  operation=operation) == before["bytes_out"] + 3 * len(b'{"got":1000}')
    assert sample("blobstore_request_duration_seconds_count", role="unit",
                  operation=operation) == before["timed"] + 3
    assert sample("blobstore_requests_in_flight", role="unit") == 0


def test_operation_names_statuses_and_unmatched_paths() -> None:
    async def main() -> None:
        app, _ = make_app("names")
        async with serve(app) as address, aiohttp.ClientSession() as session:
            rpc = RpcClient(session, SECRET)
            await rpc.request("POST", address, "/v1/named", body={})
            with pytest.raises(NoSuchShard):
                await rpc.request("GET", address, "/v1/missing")
            async with session.get(f"http://{address}/v1/broken",
                                   headers=rpc.headers("GET", "/v1/broken")) as response:
                assert response.status == 500
            async with session.get(f"http://{address}/nowhere/at/all") as response:
                assert response.status == 401  # unsigned: refused before routing matters

    before_unmatched = sample("blobstore_requests_total", role="names", operation="unmatched",
                              status="401")
    asyncio.run(main())
    assert sample("blobstore_requests_total", role="names", operation="command:put_object",
                  status="200") >= 1
    assert sample("blobstore_requests_total", role="names", operation="GET /v1/missing",
                  status="404") >= 1
    assert sample("blobstore_requests_total", role="names", operation="GET /v1/broken",
                  status="500") >= 1
    assert sample("blobstore_requests_total", role="names", operation="unmatched",
                  status="401") == before_unmatched + 1


def test_metrics_page_is_unsigned_and_parses() -> None:
    metrics.set_raft(7, 120, 118, is_leader=True, has_leader=True, last_index=121)
    metrics.set_repair_backlog(5, degraded_segments=3, gc_backlog=2)
    metrics.set_storage_usage(1000, 250, 42)
    metrics.set_scrub_progress(10, 42, 3, 1, 1700000000.0)
    metrics.observe_fsync(0.002, "dir")
    metrics.count_repair("ok", shards=2, bytes_written=2048)

    async def main() -> str:
        app, _ = make_app("page")
        async with serve(app) as address, aiohttp.ClientSession() as session:
            async with session.get(f"http://{address}{metrics.METRICS_PATH}") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                return await response.text()

    text = asyncio.run(main())
    families = {family.name: family for family in text_string_to_metric_families(text)}
    values = {s.name: s.value for family in families.values() for s in family.samples
              if not s.labels}
    assert values["blobstore_raft_term"] == 7
    assert values["blobstore_raft_commit_index"] == 120
    assert values["blobstore_raft_applied_index"] == 118
    assert values["blobstore_repair_backlog_segments"] == 5
    assert values["blobstore_degraded_segments"] == 3
    assert values["blobstore_shards_held"] == 42
    assert values["blobstore_scrub_shards_checked"] == 10
    assert "blobstore_fsync_duration_seconds" in families
    assert "process_resident_memory_bytes" in values  # the process collector is registered
    assert not any(name.endswith("_created") for name in values)


def test_role_series_appear_only_once_set() -> None:
    registered = {family.name for family in metrics.REGISTRY.collect()}
    assert "blobstore_cluster_raft_term" not in registered  # not set yet in this process
    metrics.set_cluster_meta(has_leader=True, term=3, repair_backlog=0, degraded_segments=0,
                             reachable={"meta-1": True, "meta-2": False})
    assert sample("blobstore_cluster_meta_has_leader") == 1
    assert sample("blobstore_cluster_meta_replica_reachable", node="meta-2") == 0
    metrics.set_cluster_nodes([
        metrics.ClusterNode("storage-1", "storage", "z1", "up", 100, 40, 7),
        metrics.ClusterNode("storage-2", "storage", "z2", "down", 100, 10, 1)])
    assert sample("blobstore_cluster_node_up", node="storage-2", role="storage", zone="z2") == 0
    assert sample("blobstore_cluster_node_used_bytes", node="storage-1", zone="z1") == 40
    metrics.set_cluster_nodes([metrics.ClusterNode("storage-1", "storage", "z1", "up")])
    assert metrics.REGISTRY.get_sample_value(
        "blobstore_cluster_node_up", {"node": "storage-2", "role": "storage", "zone": "z2"}) is None


def test_set_gauge_and_names() -> None:
    metrics.set_gauge("blobstore_unit_test_gauge", 4, zone="z9")
    assert sample("blobstore_unit_test_gauge", zone="z9") == 4
    assert "blobstore_unit_test_gauge" in metrics.metric_names()
    assert {"blobstore_requests_total", "blobstore_raft_term",
            "blobstore_fsync_duration_seconds"} <= metrics.metric_names()
    with pytest.raises(ValueError):
        metrics.set_gauge("unprefixed", 1)


def test_scrape_hooks_run_and_a_failing_one_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def sync_hook() -> None:
        calls.append("sync")

    async def async_hook() -> None:
        calls.append("async")
        metrics.set_gauge("blobstore_unit_hooked", len(calls))

    def failing_hook() -> None:
        raise OSError("disk gone")

    for hook in (sync_hook, async_hook, failing_hook):
        metrics.add_scrape_hook(hook)

    async def main() -> int:
        app, _ = make_app("hooks")
        async with serve(app) as address, aiohttp.ClientSession() as session:
            async with session.get(f"http://{address}{metrics.METRICS_PATH}") as response:
                return response.status

    try:
        with caplog.at_level(logging.WARNING):
            assert asyncio.run(main()) == 200
    finally:
        for hook in (sync_hook, async_hook, failing_hook):
            metrics.remove_scrape_hook(hook)
    assert calls == ["sync", "async"]
    assert sample("blobstore_unit_hooked") == 2
    assert "scrape hook" in caplog.text


def test_request_id_travels_on_internal_calls() -> None:
    async def main() -> list[str | None]:
        app, seen = make_app("ids")
        async with serve(app) as address, aiohttp.ClientSession() as session:
            rpc = RpcClient(session, SECRET)
            with request_id.bound("ABC123"):
                await rpc.request("PUT", address, "/v1/things/x", data=b"1")
            await rpc.request("PUT", address, "/v1/things/y", data=b"1")  # outside a request
            async with session.put(f"http://{address}/v1/things/z", data=b"1",
                                   headers={**rpc.headers("PUT", "/v1/things/z"),
                                            request_id.HEADER: "not an id; rm -rf"}) as response:
                assert response.status == 201
        return seen

    assert asyncio.run(main()) == ["ABC123", None, None]


def test_app_scoped_hooks_run_for_their_app_only() -> None:
    calls: list[str] = []

    async def main() -> None:
        first, _ = make_app("scoped-1")
        second, _ = make_app("scoped-2")
        metrics.add_scrape_hook(lambda: calls.append("first"), app=first)
        async with serve(first) as a, serve(second) as b, aiohttp.ClientSession() as session:
            for address in (a, b, a):
                async with session.get(f"http://{address}{metrics.METRICS_PATH}") as response:
                    assert response.status == 200

    asyncio.run(main())
    assert calls == ["first", "first"]


def test_meta_status_and_worker_events() -> None:
    metrics.set_meta_status({"node_id": "meta-2", "role": "follower", "leader": "meta-1",
                             "term": 9, "commit_index": 50, "last_applied": 49,
                             "last_index": 51, "repair_backlog": 4, "degraded_segments": 2,
                             "gc_backlog": 1})
    assert sample("blobstore_raft_term") == 9
    assert sample("blobstore_raft_is_leader") == 0 and sample("blobstore_raft_has_leader") == 1
    assert sample("blobstore_raft_last_index") == 51
    assert sample("blobstore_repair_backlog_segments") == 4
    metrics.set_meta_status({"node_id": "meta-2", "role": "starting", "leader": None,
                             "term": None, "commit_index": None, "last_applied": None})
    assert sample("blobstore_raft_term") == 9  # unknown values leave the gauges alone
    before = sample("blobstore_worker_events_total", worker="repairer", event="shards_rebuilt")
    metrics.count_worker_event("repairer", "shards_rebuilt", 3)
    assert sample("blobstore_worker_events_total", worker="repairer",
                  event="shards_rebuilt") == before + 3
