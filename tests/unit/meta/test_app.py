"""The meta service's HTTP app on a real 127.0.0.1 port, driven by the real MetaClient."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    Invalid,
    NoSuchBucket,
    NoSuchKey,
    Unavailable,
    UnknownAccessKey,
)
from blobstore.core.records import NodeRole, NodeState, ObjectVersion, Segment, SegmentRef
from blobstore.meta.app import create_app
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.meta_client import MetaClient

SECRET = "test-secret"
TRICKY_KEYS = ["a b/%?#ü", "..", ".", "../x", "a//b", "/lead", "+plus", "%41", "x%2Fy",
               "sp ace&=;", "\x00nul", "tab\there", "\U0001f600", "?", "#", "~t"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(tmp_path: Path, access_key: str = "", secret_key: str = "") -> ClusterConfig:
    meta = NodeConfig(id="meta-1", role=NodeRole.META, address=f"127.0.0.1:{free_port()}",
                      data_dir=str(tmp_path / "meta-1"))
    storage = NodeConfig(id="store-1", role=NodeRole.STORAGE, address="127.0.0.1:1",
                         data_dir=str(tmp_path / "store-1"))
    gateway = NodeConfig(id="gw-1", role=NodeRole.GATEWAY, address="127.0.0.1:2",
                         data_dir=str(tmp_path / "gw-1"))
    return ClusterConfig(secret=SECRET, nodes=(meta, storage, gateway), data_shards=2,
                         parity_shards=1, access_key=access_key, secret_key=secret_key)


async def wait_healthy(address: str, timeout_s: float = 10.0) -> None:
    """The replica starts in the background (it elects itself, a group of one)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"http://{address}/_blobstore/healthz") as response:
                if response.status == 200:
                    return
            assert asyncio.get_running_loop().time() < deadline, "meta never became healthy"
            await asyncio.sleep(0.02)


@asynccontextmanager
async def serving(config: ClusterConfig) -> AsyncIterator[str]:
    node = config.node("meta-1")
    runner = web.AppRunner(create_app(config, node))
    await runner.setup()
    try:
        await web.TCPSite(runner, node.host, node.port).start()
        await wait_healthy(node.address)
        yield node.address
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client(address: str) -> AsyncIterator[MetaClient]:
    async with new_session() as session:
        yield MetaClient(RpcClient(session, SECRET), [address], backoff_s=0.01)


def run_with_meta(config: ClusterConfig,
                  body: Callable[[MetaClient, str], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving(config) as address, client(address) as meta:
            await body(meta, address)

    asyncio.run(main())


def sid(n: int) -> str:
    return f"{n:064x}"


def segment(n: int, placement: list[str | None] | None = None) -> Segment:
    return Segment(id=sid(n), length=5, data_shards=2, parity_shards=1,
                   shard_xxh3=["0" * 16] * 3, placement=placement or ["store-1", "a", "b"])


def version(bucket: str, key: str, segments: list[int], version_id: str = "v1") -> ObjectVersion:
    refs = [SegmentRef(id=sid(n), offset=5 * i, length=5) for i, n in enumerate(segments)]
    return ObjectVersion(bucket=bucket, key=key, version_id=version_id, size=5 * len(segments),
                         etag="etag", created_ns=42, segments=refs)


def test_bucket_lifecycle(tmp_path: Path) -> None:
    async def body(meta: MetaClient, _address: str) -> None:
        bucket = await meta.create_bucket("photos", created_ns=123)
        assert bucket.name == "photos" and bucket.created_ns == 123
        with pytest.raises(BucketAlreadyExists):
            await meta.create_bucket("photos", created_ns=124)
        await meta.create_bucket("art", created_ns=5)
        assert [b.name for b in await meta.list_buckets()] == ["art", "photos"]
        assert (await meta.head_bucket("photos")).created_ns == 123
        await meta.put_object(version("photos", "k", []), [])
        with pytest.raises(BucketNotEmpty):
            await meta.delete_bucket("photos")
        assert await meta.delete_object("photos", "k")
        assert not await meta.delete_object("photos", "k")
        await meta.delete_bucket("photos")
        with pytest.raises(NoSuchBucket):
            await meta.head_bucket("photos")
        with pytest.raises(NoSuchBucket):
            await meta.head_bucket("../etc")  # cannot exist: answered without a request
        with pytest.raises(Invalid):
            await meta.create_bucket("bad/name", created_ns=1)

    run_with_meta(make_config(tmp_path), body)


def test_put_and_get_manifest_with_tricky_keys(tmp_path: Path) -> None:
    async def body(meta: MetaClient, _address: str) -> None:
        await meta.create_bucket("b", created_ns=1)
        with pytest.raises(NoSuchBucket):
            await meta.put_object(version("nope", "k", [1]), [segment(1)])
        replaced = await meta.put_object(version("b", "a b/%?#ü", [1, 2, 1]),
                                         [segment(1), segment(2, ["x", None, "y"])])
        assert replaced is None
        manifest = await meta.get_manifest("b", "a b/%?#ü")
        assert manifest.version == version("b", "a b/%?#ü", [1, 2, 1])
        assert manifest.segments[sid(1)].refcount == 2
        assert manifest.segments[sid(2)].placement == ["x", None, "y"]
        for key in TRICKY_KEYS:
            await meta.put_object(version("b", key, [2]), [])
            assert (await meta.get_manifest("b", key)).version.key == key
        listed = await meta.list_objects("b", max_keys=1000)
        assert [e.key for e in listed.entries] == sorted(TRICKY_KEYS)
        with pytest.raises(NoSuchKey):
            await meta.get_manifest("b", "a b/%?#")
        with pytest.raises(NoSuchBucket):
            await meta.get_manifest("zz", "k")
        found = await meta.lookup_segments([sid(1), sid(3), "not-an-id", sid(1)])
        assert list(found) == [sid(1)]
        assert await meta.put_object(version("b", "a b/%?#ü", [], "v2"), []) == "v1"
        status = await meta.status()
        assert status["degraded_segments"] == 1 and status["repair_backlog"] == 1
        assert await meta.report_bad_shard(sid(2), 0, "x", "xxh3 mismatch")
        assert not await meta.report_bad_shard(sid(2), 0, "elsewhere", "stale")

    run_with_meta(make_config(tmp_path), body)


def test_listing_with_delimiter_and_paging(tmp_path: Path) -> None:
    keys = ["a.txt", "dir/one", "dir/sub/two", "dir/three", "dir2/x", "z"]

    async def body(meta: MetaClient, _address: str) -> None:
        await meta.create_bucket("b", created_ns=1)
        for key in keys:
            await meta.put_object(version("b", key, []), [])
        page = await meta.list_objects("b", delimiter="/")
        assert [e.key for e in page.entries] == ["a.txt", "z"]
        assert page.common_prefixes == ["dir/", "dir2/"] and not page.is_truncated
        page = await meta.list_objects("b", prefix="dir/", delimiter="/")
        assert [e.key for e in page.entries] == ["dir/one", "dir/three"]
        assert page.common_prefixes == ["dir/sub/"]
        first = await meta.list_objects("b", delimiter="/", max_keys=2)
        assert first.is_truncated and first.next_marker == "dir/"
        second = await meta.list_objects("b", delimiter="/", start_after="dir/", max_keys=2)
        assert second.common_prefixes == ["dir2/"] and [e.key for e in second.entries] == ["z"]
        assert not second.is_truncated
        empty = await meta.list_objects("b", max_keys=0)
        assert empty.entries == [] and not empty.is_truncated
        with pytest.raises(NoSuchBucket):
            await meta.list_objects("nope")

    run_with_meta(make_config(tmp_path), body)


def test_unsigned_and_wrongly_signed_requests_are_refused(tmp_path: Path) -> None:
    async def body(_meta: MetaClient, address: str) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{address}/v1/buckets") as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "Unauthorized"
            async with session.get(f"http://{address}/_blobstore/healthz") as response:
                assert response.status == 200
        async with new_session() as session:
            wrong = MetaClient(RpcClient(session, "not-the-secret"), [address])
            with pytest.raises(Exception) as raised:
                await wrong.list_buckets()
            assert getattr(raised.value, "code", "") == "Unauthorized"

    run_with_meta(make_config(tmp_path), body)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path, access_key="BOOTKEY", secret_key="bootsecret")

    async def main() -> None:
        async with serving(config) as address, client(address) as meta:
            assert await meta.get_user("BOOTKEY") == "bootsecret"
            await meta.create_bucket("b", created_ns=1)
            await meta.put_object(version("b", "kept", [7]), [segment(7)])
            await meta.put_user("AK2", "SK2", "second")
            before = await meta.status()
        async with serving(config) as address, client(address) as meta:
            assert (await meta.get_manifest("b", "kept")).segments[sid(7)].refcount == 1
            assert await meta.get_user("AK2") == "SK2"
            assert await meta.get_user("BOOTKEY") == "bootsecret"
            after = await meta.status()
            # the bootstrap user was not proposed again: only the new term's NOOP entry
            assert after["last_applied"] == before["last_applied"] + 1
            assert after["term"] == before["term"] + 1
            assert after["objects"] == 1 and after["segments"] == 1
            with pytest.raises(UnknownAccessKey):
                await meta.get_user("nobody")
            with pytest.raises(UnknownAccessKey):
                await meta.get_user("no/such key")

    asyncio.run(main())


def test_repeated_command_on_the_wire_applies_once(tmp_path: Path) -> None:
    async def body(meta: MetaClient, address: str) -> None:
        envelope = {"client_id": "wire", "sequence": 1,
                    "command": {"type": "create_bucket", "name": "b", "created_ns": 9}}
        first = await meta.rpc.request("POST", address, "/v1/command", body=envelope)
        second = await meta.rpc.request("POST", address, "/v1/command", body=envelope)
        one, two = msgspec.json.decode(first[2]), msgspec.json.decode(second[2])
        assert one["result"] == two["result"] == {"name": "b", "created_ns": 9}
        assert two["index"] == one["index"] + 1
        with pytest.raises(Invalid):
            await meta.rpc.request("POST", address, "/v1/command",
                                   body={"client_id": "", "sequence": 1, "command": {
                                       "type": "delete_bucket", "name": "b"}})
        with pytest.raises(Invalid):
            await meta.rpc.request("POST", address, "/v1/command", body={"nonsense": 1})

    run_with_meta(make_config(tmp_path), body)


def test_retries_reach_a_live_address(tmp_path: Path) -> None:
    async def body(meta: MetaClient, address: str) -> None:
        dead = f"127.0.0.1:{free_port()}"
        retrying = MetaClient(meta.rpc, [dead, address], backoff_s=0.01)
        await retrying.create_bucket("b", created_ns=1)
        assert [b.name for b in await retrying.list_buckets()] == ["b"]
        hopeless = MetaClient(meta.rpc, [dead], attempts=2, backoff_s=0.01)
        with pytest.raises(Unavailable):
            await hopeless.list_buckets()

    run_with_meta(make_config(tmp_path), body)


def test_cluster_map_and_heartbeats(tmp_path: Path) -> None:
    async def body(meta: MetaClient, _address: str) -> None:
        states = {n.id: n.state for n in (await meta.cluster_map()).nodes}
        assert states == {"meta-1": NodeState.UP, "store-1": NodeState.SUSPECT,
                          "gw-1": NodeState.UP}
        await meta.heartbeat("store-1", capacity_bytes=1000, used_bytes=10, shard_count=3,
                             payload_bytes=7)
        cluster = await meta.cluster_map()
        assert cluster.epoch == 1 and (cluster.data_shards, cluster.parity_shards) == (2, 1)
        store = cluster.storage_nodes()[0]
        assert store.state == NodeState.UP and store.capacity_bytes == 1000
        assert store.shard_count == 3 and store.last_heartbeat_ns > 0
        assert store.payload_bytes == 7  # what a drain must move (check_drain reads it)
        with pytest.raises(Invalid):
            await meta.heartbeat("stranger", capacity_bytes=1, used_bytes=0, shard_count=0)
        status = await meta.status()
        assert status["leader"] == status["node_id"] == "meta-1" and status["term"] >= 1
        assert status["commit_index"] == status["last_applied"]
        assert status["role"] == "leader" and list(status["replicas"]) == ["meta-1"]

    run_with_meta(make_config(tmp_path), body)


def test_concurrent_commands_from_one_client_each_apply_once(tmp_path: Path) -> None:
    async def body(meta: MetaClient, _address: str) -> None:
        await meta.create_bucket("b", created_ns=1)
        await asyncio.gather(*(meta.put_object(version("b", f"k{i:03d}", [i % 5]),
                                               [segment(i % 5)]) for i in range(60)))
        page = await meta.list_objects("b")
        assert [e.key for e in page.entries] == [f"k{i:03d}" for i in range(60)]
        found = await meta.lookup_segments([sid(n) for n in range(5)])
        assert sorted(s.refcount for s in found.values()) == [12] * 5
        assert (await meta.status())["last_applied"] == 61 + 1  # + the leader's NOOP

    run_with_meta(make_config(tmp_path), body)


def test_a_replica_that_is_not_bootstrapped_yet_answers_503_and_is_not_healthy(
        tmp_path: Path) -> None:
    """A second meta node of cluster.toml that never started keeps the first from
    bootstrapping the group (rule 5 of meta/service.py): nothing diverges meanwhile."""
    config = make_config(tmp_path)
    absent = NodeConfig(id="meta-2", role=NodeRole.META, address=f"127.0.0.1:{free_port()}",
                        data_dir=str(tmp_path / "meta-2"))
    config = ClusterConfig(secret=SECRET, nodes=(*config.nodes, absent), data_shards=2,
                           parity_shards=1)

    async def main() -> None:
        node = config.node("meta-1")
        runner = web.AppRunner(create_app(config, node))
        await runner.setup()
        await web.TCPSite(runner, node.host, node.port).start()
        try:
            async with new_session() as session:
                async with session.get(f"http://{node.address}/_blobstore/healthz") as response:
                    assert response.status == 503
                    assert (await response.json())["status"] == "starting"
                rpc = RpcClient(session, SECRET)
                with pytest.raises(Unavailable):
                    await MetaClient(rpc, [node.address], attempts=1,
                                     deadline_s=0.5).list_buckets()
                _status, _headers, body = await rpc.request("GET", node.address,
                                                            "/v1/raft/state")
                assert msgspec.json.decode(body) == {"node_id": "meta-1", "bootstrapped": False}
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_batching_client_sends_concurrent_calls_together_with_their_own_answers(
        tmp_path: Path) -> None:
    """The gateway's client: concurrent commands and reads go out as batches; every call
    still gets its own result or its own typed error, and each command applies once."""
    async def body(_meta: MetaClient, address: str) -> None:
        async with new_session() as session:
            meta = MetaClient(RpcClient(session, SECRET), [address], backoff_s=0.01,
                              batching=True)
            await meta.create_bucket("b", created_ns=1)
            puts = [meta.put_object(version("b", f"k{i:03d}", [i % 4]), [segment(i % 4)])
                    for i in range(80)]
            puts.append(meta.put_object(version("nope", "k", [1]), [segment(1)]))
            results = await asyncio.gather(*puts, return_exceptions=True)
            assert all(r is None for r in results[:-1])
            assert isinstance(results[-1], NoSuchBucket)
            reads = [meta.get_manifest("b", f"k{i:03d}") for i in range(80)]
            reads += [meta.get_manifest("b", "missing"), meta.get_manifest("zz", "k")]
            found = await asyncio.gather(*reads, return_exceptions=True)
            assert [m.version.key for m in found[:80]] == [f"k{i:03d}" for i in range(80)]
            assert isinstance(found[80], NoSuchKey) and isinstance(found[81], NoSuchBucket)
            segments = await meta.lookup_segments([sid(n) for n in range(4)])
            assert sorted(s.refcount for s in segments.values()) == [20] * 4
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://{address}/_blobstore/metrics") as response:
            text = await response.text()
            batches = [line for line in text.splitlines()
                       if 'operation="POST /v1/commands"' in line
                       or 'operation="POST /v1/objects_batch"' in line]
        assert batches, "no batch was sent: the calls went out one by one"

    run_with_meta(make_config(tmp_path), body)


def test_inline_objects_carry_exactly_their_bytes(tmp_path: Path) -> None:
    async def body(meta: MetaClient, _address: str) -> None:
        await meta.create_bucket("b", created_ns=1)
        small = ObjectVersion(bucket="b", key="tiny", version_id="v1", size=5, etag="e",
                              created_ns=1, segments=[], inline=b"hello")
        await meta.put_object(small, [])
        assert (await meta.get_manifest("b", "tiny")).version.inline == b"hello"
        for bad in (msgspec.structs.replace(small, size=4),
                    msgspec.structs.replace(small, segments=[SegmentRef(sid(1), 0, 5)]),
                    msgspec.structs.replace(small, inline=b"x" * (256 * 1024 + 1),
                                            size=256 * 1024 + 1)):
            with pytest.raises(Invalid):
                await meta.put_object(bad, [segment(1)])
        assert (await meta.get_manifest("b", "tiny")).version.inline == b"hello"

    run_with_meta(make_config(tmp_path), body)
