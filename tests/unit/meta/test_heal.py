"""The self-healing commands over a real LMDB: node loss, leases, CAS repair, GC marks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from blobstore.core.errors import Conflict, Invalid
from blobstore.core.records import ObjectVersion, Segment, SegmentRef
from blobstore.meta import heal_reads, invariants
from blobstore.meta.commands import (
    Command,
    CommandEnvelope,
    CompleteRepair,
    CreateBucket,
    DeleteObject,
    FailRepair,
    GcBegin,
    GcFinish,
    LeaseRepair,
    MarkNodeDown,
    Outcome,
    PutObject,
    ReportBadShard,
)
from blobstore.meta.schema import MAX_DBS
from blobstore.meta.state_machine import StateMachine

S = 1_000_000_000  # ns per second
NODES = ["s1", "s2", "s3", "s4", "s5", "s6"]


def sid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def segment(name: str, placement: list[str | None] | None = None) -> Segment:
    placement = placement if placement is not None else ["s1", "s2", "s3"]
    return Segment(id=sid(name), length=10, data_shards=2, parity_shards=1,
                   shard_xxh3=["0" * 16] * 3, placement=placement)


def version(key: str, names: list[str], version_id: str = "v1") -> ObjectVersion:
    refs = [SegmentRef(id=sid(name), offset=i * 10, length=10) for i, name in enumerate(names)]
    return ObjectVersion(bucket="b", key=key, version_id=version_id, size=10 * len(names),
                         etag="e", created_ns=1, segments=refs)


class Harness:
    """A state machine on a temp LMDB, applying one command per log index."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True)
        self.env = lmdb.open(str(path), map_size=64 * 1024 * 1024, max_dbs=MAX_DBS, sync=False)
        self.state = StateMachine(self.env)
        self.sequence = 0

    def run(self, command: Command) -> Outcome:
        self.sequence += 1
        envelope = CommandEnvelope(client_id="test", sequence=self.sequence, command=command)
        return self.state.apply(self.sequence, envelope)

    def ok(self, command: Command) -> dict:
        return self.run(command).unwrap()

    def put(self, key: str, *segments: Segment, names: list[str] | None = None) -> None:
        names = names if names is not None else [self._name_of(s) for s in segments]
        self.ok(PutObject(version=version(key, names), new_segments=list(segments)))

    def _name_of(self, seg: Segment) -> str:
        return next(name for name in "abcdefghijklmnop" if sid(name) == seg.id)

    def segment(self, name: str) -> Segment:
        return self.state.lookup_segments([sid(name)])[sid(name)]

    def tasks(self) -> list[tuple[str, list[int]]]:
        return [(t.segment_id, t.missing) for t in self.state.repair_tasks()]

    def check(self) -> None:
        assert invariants.check(self.state.env, self.state.dbs) == []

    def close(self) -> None:
        self.env.close()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "meta")
    harness.ok(CreateBucket(name="b", created_ns=1))
    yield harness
    harness.close()


# ---- mark_node_down ------------------------------------------------------------------------


def test_mark_node_down_clears_the_node_and_queues_every_live_segment(h):
    h.put("k1", segment("a", ["s1", "s2", "s3"]))
    h.put("k2", segment("b", ["s4", "s1", "s5"]))
    h.put("k3", segment("c", ["s4", "s5", "s6"]))
    h.put("gone", segment("d", ["s1", "s5", "s6"]))
    h.ok(DeleteObject(bucket="b", key="gone"))  # garbage: left for the collector
    result = h.ok(MarkNodeDown(node_id="s1", now_ns=5 * S))
    assert result == {"cleared": 2, "examined": 4, "next": None}
    assert h.segment("a").placement == [None, "s2", "s3"]
    assert h.segment("b").placement == ["s4", None, "s5"]
    assert h.segment("c").placement == ["s4", "s5", "s6"]
    assert h.segment("d").placement == ["s1", "s5", "s6"]
    assert sorted(h.tasks()) == sorted([(sid("a"), [0]), (sid("b"), [1])])
    assert h.state.counts().degraded_segments == 2
    h.check()
    assert h.ok(MarkNodeDown(node_id="s1", now_ns=6 * S))["cleared"] == 0  # idempotent
    h.check()


def test_mark_node_down_walks_in_pages(h):
    for name in "abcde":
        h.put(name, segment(name, ["s1", "s2", "s3"]))
    after, cleared, pages = "", 0, 0
    while after is not None:
        result = h.ok(MarkNodeDown(node_id="s2", now_ns=1, after=after, limit=2))
        cleared += result["cleared"]
        after = result["next"]
        pages += 1
    assert cleared == 5 and pages == 3
    assert all(h.segment(n).placement == ["s1", None, "s3"] for n in "abcde")
    h.check()


# ---- leases and the repair CAS ---------------------------------------------------------------


def test_lease_hands_out_the_most_endangered_first_and_never_twice(h):
    h.put("one", segment("a", ["s1", "s2", None]))  # 1 missing
    h.put("two", segment("b", [None, "s2", None]))  # 2 missing: most endangered
    h.put("three", segment("c", ["s1", None, "s3"]))
    first = h.ok(LeaseRepair(node_id="s4", now_ns=10 * S, lease_s=30, max_tasks=2))["tasks"]
    assert [t["segment"]["id"] for t in first] == [sid("b"), min(sid("a"), sid("c"))]
    assert [t["healthy"] for t in first] == [1, 2]
    second = h.ok(LeaseRepair(node_id="s5", now_ns=11 * S, lease_s=30, max_tasks=5))["tasks"]
    assert [t["segment"]["id"] for t in second] == [max(sid("a"), sid("c"))]
    assert h.ok(LeaseRepair(node_id="s5", now_ns=12 * S, lease_s=30, max_tasks=5))["tasks"] == []
    # Leases expire: a dead repairer's tasks go to someone else.
    again = h.ok(LeaseRepair(node_id="s6", now_ns=40 * S, lease_s=30, max_tasks=5))["tasks"]
    assert [t["segment"]["id"] for t in again] == [sid("b"), min(sid("a"), sid("c"))]
    status = heal_reads.heal_status(h.state, 40 * S, data_shards=2)
    assert status.repair_leased == 3 and status.repair_backlog == 3
    assert status.min_healthy == 1 and status.backlog_by_healthy == {"1": 1, "2": 2}
    assert status.lost_segments == 1
    h.check()


def test_complete_repair_is_a_compare_and_set_on_the_placement(h):
    h.put("k", segment("a", ["s1", "s2", "s3"]))
    h.ok(MarkNodeDown(node_id="s2", now_ns=1))
    h.ok(LeaseRepair(node_id="s4", now_ns=2 * S, lease_s=30, max_tasks=1))
    stale = CompleteRepair(segment_id=sid("a"), expected_placement=["s1", "s2", "s3"],
                           new_placement=["s1", "s4", "s3"], repaired=[1], node_id="s4")
    with pytest.raises(Conflict):
        h.ok(stale)
    good = CompleteRepair(segment_id=sid("a"), expected_placement=["s1", None, "s3"],
                          new_placement=["s1", "s4", "s3"], repaired=[1], node_id="s4")
    assert h.ok(good) == {"placement": ["s1", "s4", "s3"], "remaining": []}
    assert h.segment("a").placement == ["s1", "s4", "s3"]
    assert h.tasks() == [] and h.state.counts().degraded_segments == 0
    assert heal_reads.heal_status(h.state, 3 * S, 2).repair_leased == 0
    with pytest.raises(Conflict):  # a second, late completion of the same lease
        h.ok(good)
    h.check()


def test_a_report_that_arrives_during_a_repair_stays_queued(h):
    h.put("k", segment("a", ["s1", "s2", "s3"]))
    h.ok(ReportBadShard(segment_id=sid("a"), index=0, node_id="s1"))
    h.ok(LeaseRepair(node_id="s4", now_ns=1, lease_s=30, max_tasks=1))
    h.ok(ReportBadShard(segment_id=sid("a"), index=2, node_id="s3"))  # while repairing 0
    result = h.ok(CompleteRepair(segment_id=sid("a"), expected_placement=["s1", "s2", "s3"],
                                 new_placement=["s1", "s2", "s3"], repaired=[0],
                                 node_id="s4"))  # shard 0 rewritten where it was
    assert result["remaining"] == [2]
    assert h.tasks() == [(sid("a"), [2])]
    h.check()


@pytest.mark.parametrize("new, repaired", [
    (["s1", "s3", "s3"], [1]),  # a node twice
    (["s5", "s4", "s3"], [1]),  # shard 0 moved but not repaired
    (["s1", None, "s3"], [1]),  # repaired to nowhere
    (["s1", "s4", "s3"], [7]),  # out of range
    (["s1", "s4"], [1]),  # wrong length
    (["s1", "s4", "s3"], []),  # nothing repaired
])
def test_complete_repair_refuses_a_bad_new_placement(h, new, repaired):
    h.put("k", segment("a", ["s1", "s2", "s3"]))
    h.ok(MarkNodeDown(node_id="s2", now_ns=1))
    with pytest.raises(Invalid):
        h.ok(CompleteRepair(segment_id=sid("a"), expected_placement=["s1", None, "s3"],
                            new_placement=new, repaired=repaired, node_id="s4"))
    assert h.segment("a").placement == ["s1", None, "s3"]
    h.check()


def test_a_failed_repair_backs_off_and_is_reported_stuck(h):
    h.put("k", segment("a", [None, None, "s3"]))
    h.ok(LeaseRepair(node_id="s4", now_ns=0, lease_s=30, max_tasks=1))
    assert h.ok(FailRepair(segment_id=sid("a"), node_id="s5", now_ns=S, retry_after_s=60,
                           reason="not mine"))["recorded"] is False
    h.ok(FailRepair(segment_id=sid("a"), node_id="s4", now_ns=S, retry_after_s=60,
                    reason="only 1 of 2 shards readable"))
    status = heal_reads.heal_status(h.state, 2 * S, 2)
    assert status.repair_stuck == 1 and status.stuck_reasons == ["only 1 of 2 shards readable"]
    assert h.ok(LeaseRepair(node_id="s5", now_ns=60 * S, lease_s=30, max_tasks=1))["tasks"] == []
    retried = h.ok(LeaseRepair(node_id="s5", now_ns=61 * S, lease_s=30, max_tasks=1))["tasks"]
    assert [t["segment"]["id"] for t in retried] == [sid("a")]
    h.check()


# ---- garbage collection --------------------------------------------------------------------


def gc_begin(h: Harness, now_s: float, node: str = "s1", grace_s: float = 10,
             names: str = "a") -> dict:
    return h.ok(GcBegin(segment_ids=[sid(n) for n in names], node_id=node,
                        now_ns=int(now_s * S), grace_s=grace_s, lease_s=30))


def test_gc_begin_refuses_referenced_and_young_segments(h):
    h.put("k", segment("a"))
    assert gc_begin(h, 100) == {"begun": [], "stamped": [], "waiting": []}  # referenced
    h.ok(DeleteObject(bucket="b", key="k"))
    assert gc_begin(h, 100)["stamped"] == [sid("a")]  # the clock starts now
    assert gc_begin(h, 109)["waiting"] == [sid("a")]  # younger than the grace
    begun = gc_begin(h, 110)["begun"]
    assert [(b["segment"]["id"], b["deleting_since_ns"]) for b in begun] == [(sid("a"), 110 * S)]
    assert gc_begin(h, 111, node="s2")["waiting"] == [sid("a")]  # s1 holds it
    status = heal_reads.heal_status(h.state, 111 * S, 2)
    assert status.gc_backlog == 1 and status.gc_deleting == 1
    h.check()


def test_a_deleting_segment_cannot_be_referenced_until_it_is_gone(h):
    h.put("k", segment("a"))
    h.ok(DeleteObject(bucket="b", key="k"))
    gc_begin(h, 0)
    gc_begin(h, 20)
    with pytest.raises(Conflict):  # dedup against a half-deleted segment
        h.ok(PutObject(version=version("k2", ["a"]), new_segments=[]))
    with pytest.raises(Conflict):  # or re-upload while the old shards are being deleted
        h.ok(PutObject(version=version("k2", ["a"]), new_segments=[segment("a")]))
    taken = gc_begin(h, 51, node="s2")["begun"]  # s1's lease ran out: s2 takes over
    assert taken[0]["deleting_since_ns"] == 20 * S  # deletes keep the first cut-off
    assert h.ok(GcFinish(segment_ids=[sid("a")], node_id="s2")) == {"finished": [sid("a")]}
    assert h.state.lookup_segments([sid("a")]) == {}
    assert h.state.counts().gc_backlog == 0
    h.check()
    h.ok(PutObject(version=version("k2", ["a"]), new_segments=[segment("a", ["s4", "s5", "s6"])]))
    assert h.segment("a").refcount == 1 and h.segment("a").placement == ["s4", "s5", "s6"]
    h.check()


def test_gc_finish_drops_the_repair_state_of_a_collected_segment(h):
    h.put("k", segment("a", ["s1", None, "s3"]))  # degraded and queued
    h.ok(DeleteObject(bucket="b", key="k"))
    gc_begin(h, 0)
    gc_begin(h, 10)
    assert h.ok(LeaseRepair(node_id="s4", now_ns=11 * S, lease_s=30, max_tasks=5))["tasks"] == []
    assert h.ok(GcFinish(segment_ids=[sid("a"), sid("b")], node_id="s1"))["finished"] == [sid("a")]
    assert h.tasks() == [] and h.state.counts().degraded_segments == 0
    h.check()


def test_complete_repair_of_a_deleting_segment_conflicts(h):
    h.put("k", segment("a", ["s1", None, "s3"]))
    h.ok(LeaseRepair(node_id="s4", now_ns=0, lease_s=300, max_tasks=1))
    h.ok(DeleteObject(bucket="b", key="k"))
    gc_begin(h, 0)
    gc_begin(h, 10)
    with pytest.raises(Conflict):
        h.ok(CompleteRepair(segment_id=sid("a"), expected_placement=["s1", None, "s3"],
                            new_placement=["s1", "s4", "s3"], repaired=[1], node_id="s4"))


def test_an_overwrite_restarts_the_grace_of_a_revived_segment(h):
    h.put("k", segment("a"))
    h.ok(DeleteObject(bucket="b", key="k"))
    gc_begin(h, 0)  # stamped at 0
    h.put("k", names=["a"])  # referenced again (dedup): leaves the gc list
    h.ok(DeleteObject(bucket="b", key="k"))  # and back, unstamped
    assert gc_begin(h, 50)["stamped"] == [sid("a")]
    assert gc_begin(h, 59)["waiting"] == [sid("a")]
    h.check()


# ---- reads ---------------------------------------------------------------------------------


def test_reads_page_through_objects_gc_and_placement(h):
    for number, name in enumerate("abcde"):
        h.put(f"key{number}", segment(name, ["s1", "s2", "s3"] if number % 2 else
                                      ["s4", "s5", "s6"]))
    h.ok(DeleteObject(bucket="b", key="key4"))
    seen, after = [], ""
    while True:
        page = heal_reads.fsck_page(h.state, after, 2)
        seen += [(o.key, o.segment_ids) for o in page.objects]
        assert all(i in page.segments for o in page.objects for i in o.segment_ids)
        if page.next is None:
            break
        after = page.next
    assert seen == [(f"key{n}", [sid(name)]) for n, name in enumerate("abcd")]
    gc = heal_reads.gc_page(h.state, "", 10)
    assert [c.segment_id for c in gc.candidates] == [sid("e")] and gc.next is None
    placed = heal_reads.placed_page(h.state, "s2", "", 1000)
    assert sorted(placed.shard_ids) == sorted([f"{sid('b')}.1", f"{sid('d')}.1"])
    with pytest.raises(Invalid):
        heal_reads.fsck_page(h.state, "zz", 10)
