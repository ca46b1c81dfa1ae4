"""Three (or four) meta replicas in one process, each a real aiohttp app on a 127.0.0.1 port.

They elect a leader, redirect clients to it, replicate and apply every command once on
each replica, survive the loss of the leader and restarts, fail fast without a quorum,
serve stale reads only where ``allow_stale_reads`` is on, catch a lagging replica up with a
snapshot, and change membership one voter at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig, dump_config
from blobstore.core.errors import Conflict, Unavailable
from blobstore.core.records import NodeRole
from blobstore.meta import errors as meta_errors
from blobstore.meta.app import RUNTIME, STALE_HEADER, create_app
from blobstore.meta.service import MetaService
from blobstore.meta.state_machine import StateMachine
from blobstore.rpc import meta_client
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.meta_client import MetaClient

SECRET = "group-secret"
FAST = {"raft_tick_ms": 50, "raft_election_ticks": 10, "raft_heartbeat_ticks": 1}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(tmp_path: Path, metas: int = 3, allow_stale_reads: bool = False,
                **knobs: Any) -> ClusterConfig:
    nodes = [NodeConfig(id=f"meta-{i}", role=NodeRole.META,
                        address=f"127.0.0.1:{free_port()}", data_dir=str(tmp_path / f"meta-{i}"))
             for i in range(1, metas + 1)]
    nodes.append(NodeConfig(id="store-1", role=NodeRole.STORAGE, address="127.0.0.1:1",
                            data_dir=str(tmp_path / "store-1")))
    return ClusterConfig(secret=SECRET, nodes=tuple(nodes), data_shards=1, parity_shards=0,
                         allow_stale_reads=allow_stale_reads, access_key="BOOTKEY",
                         secret_key="bootsecret", extra={**FAST, **knobs})


class Group:
    """Replicas started and stopped at will; clients; a look inside each replica."""

    def __init__(self, config: ClusterConfig, session: Any) -> None:
        self.config = config
        self.session = session
        self.rpc = RpcClient(session, SECRET)
        self.runners: dict[str, web.AppRunner] = {}

    def meta_ids(self) -> list[str]:
        return [node.id for node in self.config.by_role(NodeRole.META)]

    def address(self, node_id: str) -> str:
        return self.config.node(node_id).address

    async def start(self, *node_ids: str, config: ClusterConfig | None = None) -> None:
        for node_id in node_ids:
            node = (config or self.config).node(node_id)
            runner = web.AppRunner(create_app(config or self.config, node))
            await runner.setup()
            await web.TCPSite(runner, node.host, node.port).start()
            self.runners[node_id] = runner

    async def stop(self, *node_ids: str) -> None:
        for node_id in node_ids:
            await self.runners.pop(node_id).cleanup()

    async def stop_all(self) -> None:
        await self.stop(*list(self.runners))

    def service(self, node_id: str) -> MetaService:
        service = self.runners[node_id].app[RUNTIME].service
        assert service is not None
        return service

    def client(self, *node_ids: str, **kwargs: Any) -> MetaClient:
        addresses = [self.address(n) for n in (node_ids or self.meta_ids())]
        return MetaClient(self.rpc, addresses, backoff_s=0.01, **kwargs)

    async def status(self, node_id: str) -> dict[str, Any]:
        return await self.client(node_id).status_of(self.address(node_id))

    async def wait_leader(self, among: list[str] | None = None,
                          timeout_s: float = 10.0) -> str:
        """The id of the leader that every running replica of ``among`` agrees on."""
        among = among or list(self.runners)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            views = []
            for node_id in among:
                service = self.runners[node_id].app[RUNTIME].service
                if service is not None and service.ready and service.driver is not None:
                    views.append(service.driver.view)
            leaders = {view.leader for view in views}
            if len(views) == len(among) and len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                assert leader is not None
                if leader in self.runners and self.service(leader).quorum_active():
                    return leader
            await asyncio.sleep(0.02)
        raise AssertionError(f"no leader among {among} within {timeout_s}s: {views}")

    async def wait_applied(self, index: int, among: list[str] | None = None,
                           timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        for node_id in among or list(self.runners):
            while True:
                driver = self.service(node_id).driver
                if driver is not None and driver.view.applied >= index:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{node_id} did not apply {index}")
                await asyncio.sleep(0.02)

    async def buckets(self, node_id: str) -> list[str]:
        """The bucket names in this replica's own state (no raft read)."""
        store = self.service(node_id).store
        assert store is not None
        return [bucket.name for bucket in await store.read(StateMachine.list_buckets)]


@asynccontextmanager
async def group(config: ClusterConfig, start: bool = True) -> AsyncIterator[Group]:
    async with new_session() as session:
        running = Group(config, session)
        try:
            if start:
                await running.start(*running.meta_ids())
            yield running
        finally:
            await running.stop_all()


def test_wire_code_is_shared() -> None:
    assert meta_client.NOT_LEADER_CODE == meta_errors.NOT_LEADER_CODE
    assert meta_client.NO_QUORUM_CODE == meta_errors.NO_QUORUM_CODE


def test_leader_elected_and_follower_redirects_a_write_applied_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with group(make_config(tmp_path)) as g:
            leader = await g.wait_leader()
            follower = next(n for n in g.meta_ids() if n != leader)
            via_follower = g.client(follower)
            bucket = await via_follower.create_bucket("photos", created_ns=7)
            assert bucket.name == "photos"
            assert via_follower.leader_address == g.address(leader)

            envelope = {"client_id": "wire", "sequence": 1,
                        "command": {"type": "create_bucket", "name": "once", "created_ns": 1}}
            async with g.session.post(
                    f"http://{g.address(follower)}/v1/command", json=envelope,
                    headers=g.rpc.headers("POST", "/v1/command")) as response:
                assert response.status == 421
                error = (await response.json())["error"]
                assert error["code"] == "NotLeader" and error["leader"] == g.address(leader)
                assert error["leader_id"] == leader
            first = await g.rpc.request("POST", g.address(leader), "/v1/command", body=envelope)
            again = await g.rpc.request("POST", g.address(leader), "/v1/command", body=envelope)
            one, two = msgspec.json.decode(first[2]), msgspec.json.decode(again[2])
            assert one["result"] == two["result"] == {"name": "once", "created_ns": 1}

            status = await g.status(leader)
            await g.wait_applied(status["commit_index"])
            for node_id in g.meta_ids():
                assert await g.buckets(node_id) == ["once", "photos"]
            assert status["role"] == "leader" and status["leader"] == leader
            assert set(status["replicas"]) == set(g.meta_ids())
            for replica in status["replicas"].values():
                assert replica["match_index"] <= status["last_index"]
                assert {"next_index", "state"} <= set(replica)
            follower_status = await g.status(follower)
            assert follower_status["role"] == "follower"
            assert follower_status["leader_address"] == g.address(leader)
            assert await g.client(follower).get_user("BOOTKEY") == "bootsecret"

    asyncio.run(main())


def test_leader_loss_elects_another_and_nothing_is_lost(tmp_path: Path) -> None:
    async def main() -> None:
        async with group(make_config(tmp_path)) as g:
            client = g.client()
            first = await g.wait_leader()
            for i in range(5):
                await client.create_bucket(f"before-{i}", created_ns=i)
            stopped_at = time.monotonic()
            await g.stop(first)
            others = [n for n in g.meta_ids() if n != first]
            second = await g.wait_leader(others)
            failover_s = time.monotonic() - stopped_at
            assert second != first and failover_s < 5.0, failover_s
            for i in range(5):
                await client.create_bucket(f"after-{i}", created_ns=i)
            await g.start(first)
            status = await g.status(second)
            await g.wait_applied(status["commit_index"])
            expected = sorted([f"before-{i}" for i in range(5)] + [f"after-{i}" for i in range(5)])
            for node_id in g.meta_ids():
                assert await g.buckets(node_id) == expected

            await g.stop_all()  # every replica at once
            await g.start(*g.meta_ids())
            await g.wait_leader()
            assert [b.name for b in await g.client().list_buckets()] == expected
            third = await g.status(await g.wait_leader())
            assert third["term"] > status["term"]

    asyncio.run(main())


@pytest.mark.parametrize("allow_stale_reads", [False, True])
def test_without_quorum_writes_fail_fast_and_reads_follow_allow_stale_reads(
        tmp_path: Path, allow_stale_reads: bool) -> None:
    async def main() -> None:
        config = make_config(tmp_path, allow_stale_reads=allow_stale_reads)
        async with group(config) as g:
            await g.wait_leader()
            await g.client().create_bucket("kept", created_ns=1)
            status = await g.status(await g.wait_leader())
            await g.wait_applied(status["commit_index"])
            survivor, *gone = g.meta_ids()
            await g.stop(*gone)
            client = g.client(survivor)

            started = time.monotonic()
            with pytest.raises(Unavailable):
                await client.create_bucket("lost", created_ns=2)
            assert time.monotonic() - started < 3.0
            # once the survivor knows it is alone, the answer is immediate
            deadline = time.monotonic() + 5
            while (await g.status(survivor))["leader"] is not None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await g.client(survivor, no_leader_wait_s=0.0).create_bucket("lost", 2)
            assert time.monotonic() - started < 0.5

            path = "/v1/buckets"
            async with g.session.get(f"http://{g.address(survivor)}{path}",
                                     headers=g.rpc.headers("GET", path)) as response:
                if allow_stale_reads:
                    assert response.status == 200 and response.headers[STALE_HEADER] == "1"
                    assert [b["name"] for b in (await response.json())["buckets"]] == ["kept"]
                else:
                    assert response.status == 503
            if allow_stale_reads:
                assert (await client.head_bucket("kept")).name == "kept"
                assert await client.get_user("BOOTKEY") == "bootsecret"
                assert (await client.cluster_map()).nodes
            else:
                with pytest.raises(Unavailable):
                    await client.head_bucket("kept")

            await g.start(*gone)  # the quorum is back: so are writes
            await g.client().create_bucket("back", created_ns=3)

    asyncio.run(main())


def test_lagging_replica_catches_up_from_a_snapshot(tmp_path: Path) -> None:
    async def main() -> None:
        config = make_config(tmp_path, raft_snapshot_entries=20, raft_keep_entries=5)
        async with group(config) as g:
            leader = await g.wait_leader()
            lagging = next(n for n in g.meta_ids() if n != leader)
            await g.stop(lagging)
            client = g.client()
            await asyncio.gather(*(client.create_bucket(f"b{i:03d}", created_ns=i)
                                   for i in range(80)))
            status = await g.status(await g.wait_leader())
            assert status["snapshot_index"] >= 20 and status["first_index"] > 1
            await g.start(lagging)
            await g.wait_applied(status["commit_index"])
            assert await g.buckets(lagging) == [f"b{i:03d}" for i in range(80)]
            lagging_status = await g.status(lagging)
            assert lagging_status["snapshot_index"] > 0
            await g.stop(lagging)  # restart from its own snapshot + log
            await g.start(lagging)
            await g.wait_applied(status["commit_index"], [lagging])
            assert len(await g.buckets(lagging)) == 80

    asyncio.run(main())


def test_membership_add_remove_and_transfer(tmp_path: Path) -> None:
    async def main() -> None:
        four = make_config(tmp_path, metas=4)
        path = tmp_path / "cluster.toml"
        three_nodes = tuple(n for n in four.nodes if n.id != "meta-4")
        three = dataclasses.replace(four, nodes=three_nodes, path=str(path))
        path.write_text(dump_config(three))
        async with group(three) as g:
            leader = await g.wait_leader()
            client = g.client()
            await client.create_bucket("b1", created_ns=1)
            with pytest.raises(Exception) as unknown:
                await client.conf_change("add", "meta-4")
            assert getattr(unknown.value, "code", "") == "Invalid"

            four_on_disk = dataclasses.replace(four, path=str(path))
            path.write_text(dump_config(four_on_disk))
            await g.start("meta-4", config=four_on_disk)
            plan = await client.conf_change("add", "meta-4", dry_run=True)
            assert plan["dry_run"] and plan["voters_after"] == [f"meta-{i}" for i in (1, 2, 3, 4)]
            added = await client.conf_change("add", "meta-4")
            assert added["voters"] == ["meta-1", "meta-2", "meta-3", "meta-4"]
            await client.create_bucket("b2", created_ns=2)
            status = await g.status(await g.wait_leader())
            await g.wait_applied(status["commit_index"])
            assert await g.buckets("meta-4") == ["b1", "b2"]
            assert set(status["replicas"]) == {"meta-1", "meta-2", "meta-3", "meta-4"}

            target = next(n for n in ("meta-2", "meta-3", "meta-4") if n != leader)
            moved = await client.transfer_leader(target)
            assert moved["leader"] == target
            assert await g.wait_leader() == target

            with pytest.raises(Conflict):
                await client.conf_change("add", "meta-4")
            removed = await client.conf_change("remove", "meta-4")
            assert removed["voters"] == ["meta-1", "meta-2", "meta-3"]
            await g.stop("meta-4")
            others = [n for n in ("meta-1", "meta-2", "meta-3") if n != target]
            await g.stop(others[0])  # 2 of 3 left: removing another would leave 1 of 2
            deadline = time.monotonic() + 5
            while (await g.status(target))["replicas"][others[0]]["reachable"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            with pytest.raises(Conflict):
                await client.conf_change("remove", others[1])
            await client.create_bucket("b3", created_ns=3)

    asyncio.run(main())


def test_status_report_lists_each_meta_replica(tmp_path: Path) -> None:
    """``blobstore status --json``'s ``meta_replicas``: every replica's own answer joined
    with the leader's view of it (pure builder of client/cluster_info.py)."""
    from blobstore.client.cluster_info import build_status

    config = make_config(tmp_path)
    leader_status = {
        "node_id": "meta-2", "role": "leader", "leader": "meta-2", "term": 4,
        "commit_index": 90, "voters": ["meta-1", "meta-2", "meta-3"],
        "repair_backlog": 0, "degraded_segments": 0,
        "replicas": {"meta-1": {"match_index": 90, "next_index": 91, "state": "replicate",
                                "reachable": True},
                     "meta-2": {"match_index": 90, "next_index": 91, "state": "replicate",
                                "reachable": True},
                     "meta-3": {"match_index": 12, "next_index": 13, "state": "probe",
                                "reachable": False}}}
    replicas = {"meta-1": {"role": "follower", "term": 4, "commit_index": 90,
                           "last_applied": 90},
                "meta-2": {**leader_status, "last_applied": 90}, "meta-3": None}
    report = build_status(config, {}, leader_status, None, {}, replicas=replicas)
    assert (report["leader"], report["term"], report["commit_index"]) == ("meta-2", 4, 90)
    rows = {row["id"]: row for row in report["meta_replicas"]}
    assert list(rows) == ["meta-1", "meta-2", "meta-3"]
    assert rows["meta-1"]["role"] == "follower" and rows["meta-1"]["match_index"] == 90
    assert rows["meta-3"]["role"] == "unreachable" and rows["meta-3"]["match_index"] == 12
    assert rows["meta-3"]["progress"] == "probe" and rows["meta-3"]["voter"] is True
    down = build_status(config, {}, None, None, {}, error="meta unreachable")
    assert {row["role"] for row in down["meta_replicas"]} == {"unknown"}


def test_a_pre_raft_state_is_adopted_by_a_lone_meta_node(tmp_path: Path) -> None:
    from blobstore.meta.commands import CommandEnvelope, CreateBucket
    from blobstore.meta.state_store import open_env

    single = make_config(tmp_path, metas=1)
    env = open_env(Path(single.node("meta-1").data_dir) / "meta.lmdb")
    state = StateMachine(env)
    for index in range(1, 4):  # what the single replica's log + apply left behind
        state.apply(index, CommandEnvelope(client_id="old", sequence=index,
                                           command=CreateBucket(name=f"old{index}",
                                                                created_ns=index)))
    env.close()

    async def main() -> None:
        async with group(single) as g:
            await g.wait_leader()
            assert [b.name for b in await g.client().list_buckets()] == ["old1", "old2", "old3"]
            status = await g.status("meta-1")
            assert status["snapshot_index"] == 3 and status["last_applied"] >= 4
        # the same state under a cluster.toml of three: refused, nothing changes
        three = make_config(tmp_path / "three", metas=3)
        node = dataclasses.replace(three.node("meta-1"), data_dir=str(tmp_path / "legacy"))
        env = open_env(tmp_path / "legacy" / "meta.lmdb")
        StateMachine(env).apply(1, CommandEnvelope(client_id="old", sequence=1,
                                                   command=CreateBucket(name="x", created_ns=1)))
        env.close()
        config = dataclasses.replace(three, nodes=(node, *three.nodes[1:]))
        async with group(config, start=False) as g:
            await g.start("meta-1")
            runtime = g.runners["meta-1"].app[RUNTIME]
            deadline = time.monotonic() + 5
            while runtime.start_error is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert "pre-Raft state" in str(runtime.start_error)

    asyncio.run(main())


def test_lease_reads_skip_rounds_and_a_cut_off_leader_never_serves_a_stale_read(
        tmp_path: Path) -> None:
    """Lease reads (raft_lease_reads, on by default): most reads of a busy leader need no
    heartbeat round; a leader cut off from the others stops serving reads before they can
    elect another leader, so no read it serves misses a write the new leader acknowledged."""
    async def main() -> None:
        async with group(make_config(tmp_path)) as g:
            leader = await g.wait_leader()
            client = g.client()
            await client.create_bucket("before", created_ns=1)
            old = g.service(leader)
            assert old.driver is not None
            for _ in range(50):
                buckets, stale = await old.read(StateMachine.list_buckets)
                assert not stale and [b.name for b in buckets] == ["before"]
            assert old.driver.lease_read_count > 0
            # Cut the leader off: it neither sends nor receives raft messages any more.
            old.driver.send = lambda _messages: None
            old.driver.deliver = lambda _messages: None  # type: ignore[method-assign]
            others = [n for n in g.meta_ids() if n != leader]
            served_after_cut: list[float] = []
            stop = asyncio.Event()

            async def keep_reading() -> None:
                while not stop.is_set():
                    try:
                        await old.read(StateMachine.list_buckets)
                        served_after_cut.append(time.monotonic())
                    except Exception:  # noqa: BLE001  (refusals are what we expect)
                        await asyncio.sleep(0.005)

            reader = asyncio.ensure_future(keep_reading())
            deadline = time.monotonic() + 10
            while True:
                views = [g.service(n).driver.view for n in others]  # type: ignore[union-attr]
                if any(v.is_leader for v in views):
                    new_leader = next(v.node_id for v in views if v.is_leader)
                    break
                assert time.monotonic() < deadline, "the others elected no leader"
                await asyncio.sleep(0.01)
            await g.client(*others).create_bucket("after", created_ns=2)
            acknowledged = time.monotonic()
            await asyncio.sleep(0.5)
            stop.set()
            await reader
            assert new_leader != leader
            assert not [t for t in served_after_cut if t >= acknowledged], (
                "the cut-off leader served a read after the new leader acknowledged a write")

    asyncio.run(main())
