"""Storage membership commands over a real LMDB (meta/membership.py): the node table, the
paged drain that queues moves and never clears a placement, the move lease and its
compare-and-set, rebalance budgets; and the failure detector's overlay of the table."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import Conflict, Invalid
from blobstore.core.records import NodeRole, NodeState, ObjectVersion, Segment, SegmentRef
from blobstore.meta import invariants, membership
from blobstore.meta.commands import (
    AddNode,
    Command,
    CommandEnvelope,
    CompleteMove,
    CreateBucket,
    DeleteObject,
    DrainNode,
    FailMove,
    GcBegin,
    GcFinish,
    LeaseMoves,
    MarkNodeDown,
    Outcome,
    PutObject,
    RebalanceNode,
    RemoveNode,
)
from blobstore.meta.failure_detector import FailureDetector
from blobstore.meta.schema import MAX_DBS
from blobstore.meta.state_machine import StateMachine

S = 1_000_000_000
NODES = ["s1", "s2", "s3", "s4", "s5", "s6"]


def sid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def segment(name: str, placement: list[str | None]) -> Segment:
    return Segment(id=sid(name), length=10, data_shards=2, parity_shards=1,
                   shard_xxh3=["0" * 16] * 3, placement=placement)


class Harness:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True)
        self.env = lmdb.open(str(path), map_size=64 * 1024 * 1024, max_dbs=MAX_DBS, sync=False)
        self.state = StateMachine(self.env)
        self.sequence = 0

    def run(self, command: Command) -> Outcome:
        self.sequence += 1
        return self.state.apply(self.sequence, CommandEnvelope(
            client_id="test", sequence=self.sequence, command=command))

    def ok(self, command: Command) -> dict:
        return self.run(command).unwrap()

    def put(self, key: str, seg: Segment) -> None:
        version = ObjectVersion(bucket="b", key=key, version_id="v", size=10, etag="e",
                                created_ns=1, segments=[SegmentRef(id=seg.id, offset=0,
                                                                   length=10)])
        self.ok(PutObject(version=version, new_segments=[seg]))

    def placement(self, name: str) -> list[str | None]:
        return self.state.lookup_segments([sid(name)])[sid(name)].placement

    def members(self) -> dict[str, membership.Member]:
        return {m.id: m for m in membership.list_members(self.env, self.state.dbs)}

    def status(self, now_ns: int = 0) -> dict:
        return membership.membership_status(self.env, self.state.dbs, now_ns)

    def check(self) -> None:
        assert invariants.check(self.env, self.state.dbs) == []


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "meta")
    harness.ok(CreateBucket(name="b", created_ns=1))
    yield harness
    harness.env.close()


def drain(h: Harness, node: str, limit: int = 10_000, now_ns: int = 5 * S) -> int:
    queued, after = 0, ""
    while after is not None:
        page = h.ok(DrainNode(node_id=node, now_ns=now_ns, after=after, limit=limit))
        queued += page["queued"]
        after = page["next"]
    return queued


# ---- the node table --------------------------------------------------------------------------


def test_add_node_records_a_new_active_node_once(h):
    h.ok(AddNode(node_id="s7", address="127.0.0.1:9307", zone="z1", now_ns=S, weight=2.0))
    member = h.members()["s7"]
    assert (member.state, member.address, member.weight, member.added) == \
        ("active", "127.0.0.1:9307", 2.0, True)
    with pytest.raises(Conflict):
        h.ok(AddNode(node_id="s7", address="127.0.0.1:9308", zone="z1", now_ns=S))
    with pytest.raises(Conflict):
        h.ok(AddNode(node_id="s8", address="127.0.0.1:9307", zone="z1", now_ns=S))
    with pytest.raises(Invalid):
        h.ok(AddNode(node_id="s8", address="nowhere", zone="z1", now_ns=S))


def test_remove_needs_a_drained_node_and_a_removed_node_is_never_drained_again(h):
    with pytest.raises(Conflict):
        h.ok(RemoveNode(node_id="s1", now_ns=S))
    drain(h, "s1")
    h.ok(RemoveNode(node_id="s1", now_ns=2 * S))
    assert h.members()["s1"].state == "removed"
    with pytest.raises(Conflict):
        h.ok(DrainNode(node_id="s1", now_ns=3 * S))
    with pytest.raises(Conflict):
        h.ok(RemoveNode(node_id="s1", now_ns=3 * S))


# ---- drain ------------------------------------------------------------------------------------


def test_drain_queues_a_move_per_live_segment_and_leaves_every_placement_whole(h):
    h.put("k1", segment("a", ["s1", "s2", "s3"]))
    h.put("k2", segment("b", ["s4", "s1", "s5"]))
    h.put("k3", segment("c", ["s4", "s5", "s6"]))
    h.put("gone", segment("d", ["s1", "s5", "s6"]))
    h.ok(DeleteObject(bucket="b", key="gone"))  # garbage is not moved
    assert drain(h, "s1", limit=1) == 2  # one segment per page: the walk is paged
    assert h.members()["s1"].state == "draining"
    assert h.placement("a") == ["s1", "s2", "s3"] and h.placement("b") == ["s4", "s1", "s5"]
    status = h.status()
    assert status["move_backlog"] == 2 and status["moves_from"] == {"s1": 2}
    assert h.state.counts().degraded_segments == 0 and h.state.counts().repair_backlog == 0
    assert drain(h, "s1") == 0  # walking again queues nothing twice
    h.check()


def test_a_move_is_leased_copied_and_committed_by_compare_and_set(h):
    h.put("k1", segment("a", ["s1", "s2", "s3"]))
    drain(h, "s1")
    leased = h.ok(LeaseMoves(node_id="s4", now_ns=10 * S, lease_s=60, max_tasks=8))["tasks"]
    assert [t["task"]["moves"] for t in leased] == [[{"index": 0, "source": "s1",
                                                      "target": ""}]]
    assert h.ok(LeaseMoves(node_id="s5", now_ns=11 * S, lease_s=60, max_tasks=8))["tasks"] == []
    expected = ["s1", "s2", "s3"]
    for bad in (["s2", "s2", "s3"], [None, "s2", "s3"], ["s4", "s5", "s3"]):
        with pytest.raises(Invalid):
            h.ok(CompleteMove(segment_id=sid("a"), expected_placement=expected,
                              new_placement=bad, moved=[0], node_id="s4"))
    with pytest.raises(Conflict):
        h.ok(CompleteMove(segment_id=sid("a"), expected_placement=["s6", "s2", "s3"],
                          new_placement=["s4", "s2", "s3"], moved=[0], node_id="s4"))
    result = h.ok(CompleteMove(segment_id=sid("a"), expected_placement=expected,
                               new_placement=["s4", "s2", "s3"], moved=[0], node_id="s4"))
    assert result == {"placement": ["s4", "s2", "s3"], "remaining": []}
    assert h.status()["move_backlog"] == 0
    h.check()


def test_repairs_go_before_moves_and_moot_moves_are_dropped(h):
    h.put("k1", segment("a", ["s1", "s2", "s3"]))
    h.put("k2", segment("b", ["s2", "s1", "s4"]))
    drain(h, "s1")
    h.ok(MarkNodeDown(node_id="s2", now_ns=6 * S))  # both degraded now: repair first
    assert h.ok(LeaseMoves(node_id="s5", now_ns=7 * S, lease_s=60, max_tasks=8))["tasks"] == []
    h.ok(MarkNodeDown(node_id="s1", now_ns=8 * S))  # s1 lost mid-drain: its moves are moot
    leased = h.ok(LeaseMoves(node_id="s5", now_ns=9 * S, lease_s=60, max_tasks=8))
    assert leased["tasks"] == [] and h.status()["move_backlog"] == 2  # still queued behind
    h.check()


def test_a_failed_move_backs_off_and_a_collected_segment_takes_its_move_along(h):
    h.put("k1", segment("a", ["s1", "s2", "s3"]))
    drain(h, "s1")
    h.ok(LeaseMoves(node_id="s4", now_ns=10 * S, lease_s=60, max_tasks=8))
    assert h.ok(FailMove(segment_id=sid("a"), node_id="s9", now_ns=11 * S,
                         retry_after_s=30, reason="x")) == {"recorded": False}
    assert h.ok(FailMove(segment_id=sid("a"), node_id="s4", now_ns=11 * S, retry_after_s=30,
                         reason="no node to write to"))["recorded"]
    assert h.status(now_ns=12 * S)["moves_stuck"] == 1
    assert h.ok(LeaseMoves(node_id="s4", now_ns=20 * S, lease_s=60, max_tasks=8))["tasks"] == []
    assert len(h.ok(LeaseMoves(node_id="s4", now_ns=42 * S, lease_s=60,
                               max_tasks=8))["tasks"]) == 1
    h.ok(DeleteObject(bucket="b", key="k1"))
    h.ok(GcBegin(segment_ids=[sid("a")], node_id="s2", now_ns=50 * S, grace_s=0, lease_s=60))
    h.ok(GcBegin(segment_ids=[sid("a")], node_id="s2", now_ns=51 * S, grace_s=0, lease_s=60))
    h.ok(GcFinish(segment_ids=[sid("a")], node_id="s2"))
    assert h.status()["move_backlog"] == 0
    h.check()


# ---- rebalance --------------------------------------------------------------------------------


def test_rebalance_queues_moves_to_the_node_within_its_budget(h):
    for number in range(30):
        h.put(f"k{number}", segment(f"seg{number}", ["s1", "s2", "s3"]))
    candidates = [("s1", "z1", 1.0), ("s2", "z1", 1.0), ("s3", "z1", 1.0), ("s4", "z1", 1.0)]
    page = h.ok(RebalanceNode(node_id="s4", candidates=candidates, now_ns=S, mode="donors",
                              donors=["s2"], budget=7, limit=10))
    assert page["queued"] == 7 and page["examined"] <= 10 and page["next"]
    status = h.status()
    assert status["moves_to"] == {"s4": 7} and status["moves_from"] == {"s2": 7}
    with pytest.raises(Invalid):  # the target must be a candidate
        h.ok(RebalanceNode(node_id="s5", candidates=candidates, now_ns=S, budget=1))
    drain(h, "s3")
    with pytest.raises(Conflict):  # nothing moves to a draining node
        h.ok(RebalanceNode(node_id="s3", candidates=candidates, now_ns=S, budget=1))
    h.check()


def test_replaying_membership_commands_gives_the_same_bytes(tmp_path):
    def replay(path: Path) -> dict[str, list[tuple[bytes, bytes]]]:
        h = Harness(path)
        h.ok(CreateBucket(name="b", created_ns=1))
        for number in range(6):
            h.put(f"k{number}", segment(f"r{number}", ["s1", "s2", "s3"]))
        h.ok(AddNode(node_id="s4", address="127.0.0.1:9004", zone="z1", now_ns=S))
        drain(h, "s1", limit=2)
        h.ok(LeaseMoves(node_id="s4", now_ns=2 * S, lease_s=5, max_tasks=3))
        dbs = h.state.dbs
        with h.env.begin() as txn:
            dump = {name: list(txn.cursor(getattr(dbs, name)).iternext())
                    for name in ("members", "moves", "segments")}
        h.env.close()
        return dump

    assert replay(tmp_path / "one") == replay(tmp_path / "two")


# ---- the failure detector's overlay -----------------------------------------------------------


def _config() -> ClusterConfig:
    nodes = (NodeConfig("meta-1", NodeRole.META, "127.0.0.1:9000", "/m"),
             *(NodeConfig(f"s{n}", NodeRole.STORAGE, f"127.0.0.1:91{n:02d}", f"/s{n}")
               for n in range(1, 4)))
    return ClusterConfig(secret="x", nodes=nodes, down_after_s=30.0)


def test_the_map_shows_added_draining_and_removed_nodes():
    detector = FailureDetector(_config(), started_s=0.0)
    with pytest.raises(Invalid):  # unknown until the table names it
        detector.heartbeat("s4", 1.0, 1, capacity_bytes=1, used_bytes=0, shard_count=0)
    detector.set_members([
        membership.Member(id="s4", state="active", address="127.0.0.1:9104", zone="z2",
                          added=True),
        membership.Member(id="s1", state="draining", generation=1),
        membership.Member(id="s2", state="removed", generation=2)], now_s=1.0)
    for node in ("s1", "s2", "s3", "s4"):
        detector.heartbeat(node, 2.0, 1, capacity_bytes=1, used_bytes=0, shard_count=0)
    cluster_map = detector.cluster_map(3.0)
    states = {view.id: view.state for view in cluster_map.nodes}
    assert states == {"meta-1": NodeState.UP, "s1": NodeState.DRAINING,
                      "s2": NodeState.REMOVED, "s3": NodeState.UP, "s4": NodeState.UP}
    assert next(v for v in cluster_map.nodes if v.id == "s4").address == "127.0.0.1:9104"
    assert cluster_map.epoch == 1 + 1 + 1 + 2
    later = {view.id: view.state for view in detector.cluster_map(40.0).nodes}
    assert later["s1"] == NodeState.DOWN and later["s2"] == NodeState.REMOVED  # liveness first
