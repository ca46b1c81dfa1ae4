"""The storage app on a real 127.0.0.1 socket, driven through the real StorageClient."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import (
    BlobstoreError,
    Corrupt,
    Invalid,
    NoSuchShard,
    Unauthorized,
    Unavailable,
)
from blobstore.core.records import NodeRole
from blobstore.core.shard_format import payload_xxh3
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.server import internal_app, json_response
from blobstore.rpc.storage_client import StorageClient
from blobstore.storage.app import STATE_KEY, StorageSettings, create_app, parse_range

SECRET = "test-cluster-secret"
SEGMENT = "c0" * 32


def shard(index: int, segment: str = SEGMENT) -> str:
    return f"{segment}.{index}"


def free_address() -> str:
    """An address nobody listens on (a port the kernel just handed out and took back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def make_config(data_dir: Path, meta_addresses: list[str]) -> tuple[ClusterConfig, NodeConfig]:
    node = NodeConfig(id="storage-1", role=NodeRole.STORAGE, address="127.0.0.1:1",
                      data_dir=str(data_dir))
    metas = tuple(NodeConfig(id=f"meta-{i}", role=NodeRole.META, address=address,
                             data_dir=str(data_dir.parent / f"meta-{i}"))
                  for i, address in enumerate(meta_addresses, start=1))
    return ClusterConfig(secret=SECRET, nodes=(*metas, node)), node


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Node:
    address: str
    client: StorageClient
    rpc: RpcClient
    session: aiohttp.ClientSession
    app: web.Application
    data_dir: Path


@contextlib.asynccontextmanager
async def storage_node(tmp_path: Path, *, meta_addresses: list[str] | None = None,
                       settings: StorageSettings | None = None) -> AsyncIterator[Node]:
    config, node = make_config(tmp_path / "storage-1", meta_addresses or [free_address()])
    app = create_app(config, node, settings=settings)
    async with serve(app) as address, new_session() as session:
        rpc = RpcClient(session, SECRET)
        yield Node(address, StorageClient(rpc), rpc, session, app, Path(node.data_dir))


def run(coroutine_function, tmp_path: Path, **options):
    async def main():
        async with storage_node(tmp_path, **options) as node:
            await coroutine_function(node)

    asyncio.run(main())


async def put(node: Node, shard_id: str, payload: bytes):
    return await node.client.put_shard(node.address, shard_id, payload, data_shards=4,
                                       parity_shards=2, segment_length=4 * len(payload),
                                       xxh3_hex=payload_xxh3(payload))


def test_round_trip(tmp_path):
    async def scenario(node: Node):
        payload = bytes(range(256)) * 4096  # 1 MiB, the usual shard size
        info = await put(node, shard(1), payload)
        assert (info.shard_id, info.payload_length, info.xxh3) == (
            shard(1), len(payload), payload_xxh3(payload))
        assert await node.client.get_shard(node.address, shard(1)) == payload
        view = memoryview(payload)[:1000]  # the gateway sends views of the encoded segment
        await node.client.put_shard(node.address, shard(2), view, data_shards=4,
                                    parity_shards=2, segment_length=4000,
                                    xxh3_hex=payload_xxh3(view))
        assert await node.client.get_shard(node.address, shard(2)) == payload[:1000]
        await node.client.delete_shard(node.address, shard(2))
        assert await node.client.head_shard(node.address, shard(1)) == info
        assert await node.client.list_shards(node.address) == ([info], None)
        status = await node.client.status(node.address)
        assert status["node_id"] == "storage-1" and status["shard_count"] == 1
        assert status["capacity_bytes"] > status["used_bytes"] > 0
        assert status["payload_bytes"] == len(payload)  # its shards, not the disk's use
        await node.client.delete_shard(node.address, shard(1))
        await node.client.delete_shard(node.address, shard(1))  # idempotent
        with pytest.raises(NoSuchShard):
            await node.client.get_shard(node.address, shard(1))

    run(scenario, tmp_path)


def test_head_of_a_raw_http_request_carries_content_length(tmp_path):
    async def scenario(node: Node):
        await put(node, shard(0), b"12345")
        path = f"/v1/shards/{shard(0)}"
        url = f"http://{node.address}{path}"
        async with node.session.head(url, headers=node.rpc.headers("HEAD", path)) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == "5"
            assert response.headers["X-Shard-Xxh3"] == payload_xxh3(b"12345")

    run(scenario, tmp_path)


def test_range_get(tmp_path):
    async def scenario(node: Node):
        payload = bytes(range(256)) * 8
        await put(node, shard(2), payload)
        get = node.client.get_shard
        assert await get(node.address, shard(2), start=10, end=20) == payload[10:20]
        assert await get(node.address, shard(2), start=2000) == payload[2000:]
        assert await get(node.address, shard(2), end=3) == payload[:3]
        assert await get(node.address, shard(2), start=2040, end=9999) == payload[2040:]
        path = f"/v1/shards/{shard(2)}"
        status, headers, body = await node.rpc.request("GET", node.address, path,
                                                       headers={"Range": "bytes=5-9"})
        assert (status, body, headers["Content-Range"]) == (206, payload[5:10], "bytes 5-9/2048")
        for bad_range in ["bytes=2048-", "bytes=9-5", "bytes=-5", "bytes=1-2,4-5", "items=1-2"]:
            with pytest.raises(Invalid):
                await node.rpc.request("GET", node.address, path, headers={"Range": bad_range})
        with pytest.raises(Invalid):
            await get(node.address, shard(2), start=5, end=5)

    run(scenario, tmp_path)


def test_missing_shard_is_404(tmp_path):
    async def scenario(node: Node):
        with pytest.raises(NoSuchShard):
            await node.client.get_shard(node.address, shard(3))
        with pytest.raises(NoSuchShard):
            await node.client.head_shard(node.address, shard(3))
        with pytest.raises(NoSuchShard) as raised:
            await node.rpc.request("GET", node.address, f"/v1/shards/{shard(3)}")
        assert raised.value.http_status == 404

    run(scenario, tmp_path)


def test_unsigned_or_badly_signed_requests_are_refused(tmp_path):
    async def scenario(node: Node):
        await put(node, shard(0), b"secret data")
        for path in ["/v1/status", f"/v1/shards/{shard(0)}", "/v1/shards"]:
            async with node.session.get(f"http://{node.address}{path}") as response:
                assert response.status == 401
                assert b"secret data" not in await response.read()
        wrong = StorageClient(RpcClient(node.session, "not-the-secret"))
        with pytest.raises(Unauthorized):
            await wrong.get_shard(node.address, shard(0))
        with pytest.raises(Unauthorized):
            await wrong.put_shard(node.address, shard(1), b"x", data_shards=4, parity_shards=2,
                                  segment_length=4, xxh3_hex=payload_xxh3(b"x"))
        with pytest.raises(Unauthorized):
            await wrong.head_shard(node.address, shard(0))
        for path in ["/_blobstore/healthz", "/_blobstore/readyz"]:  # public, unsigned
            async with node.session.get(f"http://{node.address}{path}") as response:
                assert response.status == 200

    run(scenario, tmp_path)


def test_bad_xxh3_is_refused_and_nothing_is_stored(tmp_path):
    async def scenario(node: Node):
        with pytest.raises(Invalid, match="xxh3"):
            await node.client.put_shard(node.address, shard(4), b"payload", data_shards=4,
                                        parity_shards=2, segment_length=28,
                                        xxh3_hex=payload_xxh3(b"other payload"))
        assert await node.client.list_shards(node.address) == ([], None)
        with pytest.raises(NoSuchShard):
            await node.client.head_shard(node.address, shard(4))
        assert [p for p in (node.data_dir / "shards").rglob("*") if p.is_file()] == []

    run(scenario, tmp_path)


def test_put_without_shard_headers_is_invalid(tmp_path):
    async def scenario(node: Node):
        path = f"/v1/shards/{shard(0)}"
        with pytest.raises(Invalid, match="X-Shard-Data-Shards"):
            await node.rpc.request("PUT", node.address, path, data=b"x")
        headers = {"X-Shard-Data-Shards": "4", "X-Shard-Parity-Shards": "2",
                   "X-Shard-Segment-Length": "four", "X-Shard-Xxh3": payload_xxh3(b"x")}
        with pytest.raises(Invalid, match="X-Shard-Segment-Length"):
            await node.rpc.request("PUT", node.address, path, data=b"x", headers=headers)

    run(scenario, tmp_path)


@pytest.mark.parametrize("raw_id", ["..%2F..%2Fx", "..%2F..%2F" + SEGMENT + ".0", "x.0",
                                    SEGMENT.upper() + ".0", SEGMENT + ".256", SEGMENT,
                                    SEGMENT + ".0%00", "%00"])
def test_bad_shard_ids_are_400_before_any_path_is_built(tmp_path, raw_id):
    async def scenario(node: Node):
        before = sorted(str(p) for p in tmp_path.rglob("*"))
        headers = {"X-Shard-Data-Shards": "4", "X-Shard-Parity-Shards": "2",
                   "X-Shard-Segment-Length": "4", "X-Shard-Xxh3": payload_xxh3(b"x")}
        for method in ["PUT", "GET", "HEAD", "DELETE"]:
            with pytest.raises(BlobstoreError) as raised:
                await node.rpc.request(method, node.address, f"/v1/shards/{raw_id}",
                                       data=b"x" if method == "PUT" else None, headers=headers)
            assert raised.value.http_status == 400, (method, raised.value)
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before

    run(scenario, tmp_path)


def test_the_client_refuses_bad_shard_ids_itself(tmp_path):
    async def scenario(node: Node):
        for call in (node.client.get_shard, node.client.head_shard, node.client.delete_shard):
            with pytest.raises(Invalid):
                await call(node.address, "../../x")
        with pytest.raises(Invalid):
            await node.client.put_shard(node.address, "../../x", b"x", data_shards=4,
                                        parity_shards=2, segment_length=4,
                                        xxh3_hex=payload_xxh3(b"x"))

    run(scenario, tmp_path)


def test_a_corrupt_file_is_422_and_quarantined(tmp_path):
    async def scenario(node: Node):
        await put(node, shard(5), b"A" * 100)
        path = node.data_dir / "shards" / "c0" / "c0" / shard(5)
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0xFF
        path.write_bytes(bytes(raw))
        with pytest.raises(Corrupt) as raised:
            await node.client.get_shard(node.address, shard(5))
        assert raised.value.http_status == 422
        assert not path.exists()
        assert len(list((node.data_dir / "quarantine").iterdir())) == 1
        with pytest.raises(NoSuchShard):
            await node.client.get_shard(node.address, shard(5))

    run(scenario, tmp_path)


def test_list_pages_over_http(tmp_path):
    async def scenario(node: Node):
        ids = sorted(shard(i, segment) for segment in ("01" * 32, "fe" * 32) for i in range(5))
        for sid in ids:
            await put(node, sid, sid.encode())
        seen, after = [], ""
        while True:
            rows, after = await node.client.list_shards(node.address, after=after, limit=3)
            seen += [row.shard_id for row in rows]
            if after is None:
                break
        assert seen == ids
        with pytest.raises(Invalid):
            await node.client.list_shards(node.address, limit=0)
        with pytest.raises(Invalid):
            await node.rpc.request("GET", node.address, "/v1/shards?limit=ten")

    run(scenario, tmp_path)


def test_bodies_over_the_limit_are_refused(tmp_path):
    async def scenario(node: Node):
        with pytest.raises(BlobstoreError) as raised:
            await put(node, shard(0), b"x" * 2048)
        assert raised.value.http_status == 413
        await put(node, shard(0), b"x" * 512)

    run(scenario, tmp_path, settings=StorageSettings(client_max_size_bytes=1024))


def test_heartbeats_reach_the_first_meta_node_that_answers(tmp_path, caplog):
    beats: list[dict] = []

    async def heartbeat(request: web.Request) -> web.Response:
        beats.append(msgspec.json.decode(await request.read()))
        return json_response({})

    async def main():
        meta = internal_app(SECRET)
        meta.router.add_post("/v1/heartbeat", heartbeat)
        async with serve(meta) as meta_address:
            settings = StorageSettings(heartbeat_interval_s=0.05, heartbeat_timeout_s=0.5)
            async with storage_node(tmp_path, meta_addresses=[free_address(), meta_address],
                                    settings=settings) as node:
                await put(node, shard(0), b"x")
                for _ in range(200):
                    if len(beats) >= 3 and beats[-1]["shard_count"] == 1:
                        break
                    await asyncio.sleep(0.02)
                state = node.app[STATE_KEY]
                assert state.heartbeat is not None
                assert state.heartbeat.status().last_meta_address == meta_address
        assert state.store is None  # closed on shutdown, after the heartbeat stopped

    asyncio.run(main())
    assert beats[-1]["node_id"] == "storage-1"
    assert beats[-1]["shard_count"] == 1
    assert beats[-1]["capacity_bytes"] > beats[-1]["used_bytes"] > 0
    assert beats[-1]["payload_bytes"] > 0
    assert {"node_id", "capacity_bytes", "used_bytes", "shard_count",
            "scrub_passes_completed", "scrub_corrupt_found"} <= set(beats[-1])
    warnings = [r for r in caplog.records if r.name == "blobstore.storage.heartbeat"]
    assert len(warnings) <= 1


def test_heartbeat_without_meta_warns_once_and_keeps_serving(tmp_path, caplog):
    async def scenario(node: Node):
        await asyncio.sleep(0.3)  # ~6 failed beats
        state = node.app[STATE_KEY]
        assert state.heartbeat is not None and state.heartbeat.status().beats_failed >= 3
        assert (await node.client.status(node.address))["shard_count"] == 0

    settings = StorageSettings(heartbeat_interval_s=0.05, heartbeat_timeout_s=0.2)
    run(scenario, tmp_path, settings=settings)
    warnings = [r for r in caplog.records if r.name == "blobstore.storage.heartbeat"]
    assert len(warnings) == 1 and "no meta node took the heartbeat" in warnings[0].getMessage()


def test_an_unreachable_node_is_unavailable(tmp_path):
    async def main():
        async with new_session() as session:
            client = StorageClient(RpcClient(session, SECRET))
            with pytest.raises(Unavailable):
                await client.get_shard(free_address(), shard(0), timeout_s=2)
            with pytest.raises(Unavailable):
                await client.head_shard(free_address(), shard(0), timeout_s=2)

    asyncio.run(main())


@pytest.mark.parametrize("value, expected", [
    (None, (None, None)), ("bytes=0-0", (0, 1)), ("bytes=5-", (5, None)),
    ("bytes=10-19", (10, 20)), (" bytes=1-2 ", (1, 3)),
])
def test_parse_range(value, expected):
    assert parse_range(value) == expected


def test_bytes_damaged_in_transit_are_unavailable_not_corrupt():
    async def lying_node(request: web.Request) -> web.Response:
        return web.Response(body=b"abc", headers={"X-Shard-Xxh3": payload_xxh3(b"abd")})

    async def main():
        fake = internal_app(SECRET)
        fake.router.add_get("/v1/shards/{shard_id}", lying_node)
        async with serve(fake) as address, new_session() as session:
            client = StorageClient(RpcClient(session, SECRET))
            with pytest.raises(Unavailable, match="in transit"):
                await client.get_shard(address, shard(0))

    asyncio.run(main())
