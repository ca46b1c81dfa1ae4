"""The healing hooks on the REAL meta app (as meta/app.py wires them):
the heal reads answer through the service, and the leader declares a silent node down."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.records import (
    ClusterMap,
    NodeRole,
    NodeState,
    NodeView,
    ObjectVersion,
    Segment,
    SegmentRef,
)
from blobstore.meta import heal_tasks
from blobstore.meta.app import create_app
from blobstore.meta.heal_board import HealBoard
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.heal_client import HealClient
from blobstore.rpc.meta_client import MetaClient

SECRET = "heal-wiring-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(tmp_path: Path) -> ClusterConfig:
    meta = NodeConfig("meta-1", NodeRole.META, f"127.0.0.1:{free_port()}",
                      str(tmp_path / "meta-1"))
    storage = tuple(NodeConfig(f"store-{i}", NodeRole.STORAGE, f"127.0.0.1:{i}",
                               str(tmp_path / f"store-{i}")) for i in (1, 2, 3))
    return ClusterConfig(secret=SECRET, nodes=(meta, *storage), data_shards=2,
                         parity_shards=1, down_after_s=1.0)


async def wait_healthy(address: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(500):
            async with session.get(f"http://{address}/_blobstore/healthz") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.02)
    raise AssertionError("meta never became healthy")


async def beat(meta: MetaClient, node_ids: list[str]) -> None:
    while True:
        for node_id in node_ids:
            with contextlib.suppress(Exception):
                await meta.heartbeat(node_id, 100, 10, 1)
        await asyncio.sleep(0.2)


def test_the_leader_marks_a_silent_node_down_and_the_heal_reads_answer(tmp_path):
    config = make_config(tmp_path)
    node = config.node("meta-1")

    async def main() -> None:
        app = create_app(config, node)  # meta/app.py wires the heal routes and tasks
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, node.host, node.port).start()
            await wait_healthy(node.address)
            async with new_session() as session:
                meta = MetaClient(RpcClient(session, SECRET), [node.address], backoff_s=0.01)
                heal = HealClient(meta)
                beating = asyncio.create_task(beat(meta, ["store-1", "store-2"]))
                try:
                    await scenario(meta, heal)
                finally:
                    beating.cancel()
        finally:
            await runner.cleanup()

    async def scenario(meta: MetaClient, heal: HealClient) -> None:
        await meta.create_bucket("b", 1)
        seg_id = hashlib.sha256(b"x").hexdigest()
        segment = Segment(id=seg_id, length=10, data_shards=2, parity_shards=1,
                          shard_xxh3=["0" * 16] * 3, placement=["store-1", "store-2", "store-3"])
        await meta.put_object(ObjectVersion(
            bucket="b", key="k", version_id="v", size=10, etag="e", created_ns=1,
            segments=[SegmentRef(id=seg_id, offset=0, length=10)]), [segment])
        deadline = time.monotonic() + 15
        while True:
            status = await heal.status()
            if status.nodes_marked_down:
                break
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
        assert status.nodes_marked_down == ["store-3"] and status.nodes_pending_down == []
        assert (status.repair_backlog, status.degraded_segments) == (1, 1)
        assert (await meta.lookup_segments([seg_id]))[seg_id].placement == [
            "store-1", "store-2", None]
        page = await heal.fsck_page()
        assert [(o.key, o.segment_ids) for o in page.objects] == [("k", [seg_id])]
        assert (await heal.placed_page("store-1")).shard_ids == [f"{seg_id}.0"]
        assert (await heal.gc_page()).candidates == []

    asyncio.run(main())


class _FakeHeal:
    def __init__(self) -> None:
        self.marked: list[str] = []

    async def mark_node_down(self, node_id: str, now_ns: int | None = None) -> int:
        self.marked.append(node_id)
        return 7


def test_a_new_leader_waits_one_down_after_and_marks_each_outage_once():
    clock = [100.0]
    leader = [True]
    states = {"s1": NodeState.UP, "s2": NodeState.DOWN}

    def cluster_map() -> ClusterMap:
        return ClusterMap(epoch=1, data_shards=2, parity_shards=1, nodes=[
            NodeView(id=n, role=NodeRole.STORAGE, address="a:1", zone="z", weight=1.0,
                     state=state) for n, state in states.items()])

    fake = _FakeHeal()
    board = HealBoard()
    marker = heal_tasks.DownMarker(fake, board, down_after_s=30, is_leader=lambda: leader[0],
                                   cluster_map=cluster_map, monotonic=lambda: clock[0])

    async def steps() -> None:
        assert await marker.run_once() == []  # just became leader
        assert board.pending_down == ["s2"]
        clock[0] += 29
        assert await marker.run_once() == []
        clock[0] += 1
        assert await marker.run_once() == ["s2"] and board.pending_down == []
        assert await marker.run_once() == []  # once per outage
        states["s2"] = NodeState.UP
        await marker.run_once()
        states["s2"] = NodeState.DOWN  # a second outage is marked again
        assert await marker.run_once() == ["s2"]
        leader[0] = False  # leadership lost, then regained: wait again
        assert await marker.run_once() == []
        leader[0] = True
        states["s1"] = NodeState.DOWN
        assert await marker.run_once() == []
        clock[0] += 30
        assert await marker.run_once() == ["s1"]

    asyncio.run(steps())
    assert fake.marked == ["s2", "s2", "s1"]
