"""The meta state machine over a real LMDB: semantics, apply-once, replay, refcounts, repair."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blobstore.core.errors import Corrupt, NoSuchBucket, NoSuchKey, UnknownAccessKey
from blobstore.core.listing import list_page
from blobstore.core.records import ObjectSummary, ObjectVersion, Segment, SegmentRef
from blobstore.meta import invariants, schema, sessions
from blobstore.meta.commands import (
    Command,
    CommandEnvelope,
    CreateBucket,
    DeleteBucket,
    DeleteObject,
    Outcome,
    PutObject,
    PutUser,
    ReportBadShard,
    encode_envelope,
)
from blobstore.meta.state_machine import ApplyOrderError, StateMachine
from blobstore.meta.state_store import StateStore, open_env
from blobstore.raft.messages import Entry, EntryKind

SMALL_MAP_BYTES = 64 * 1024 * 1024


def sid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def segment(name: str, length: int = 10, placement: list[str | None] | None = None) -> Segment:
    placement = placement if placement is not None else ["s1", "s2", "s3"]
    return Segment(id=sid(name), length=length, data_shards=2, parity_shards=1,
                   shard_xxh3=["0" * 16] * 3, placement=placement)


def version(key: str, names: list[str], bucket: str = "b", version_id: str = "v1",
            length: int = 10) -> ObjectVersion:
    refs = [SegmentRef(id=sid(name), offset=i * length, length=length)
            for i, name in enumerate(names)]
    return ObjectVersion(bucket=bucket, key=key, version_id=version_id,
                         size=length * len(names), etag="e", created_ns=1, segments=refs)


class LocalLog:
    """What the Raft log gives the state machine, minus the replication: each envelope is
    appended to a list at the next index and applied at once."""

    def __init__(self, env: lmdb.Environment) -> None:
        self.env = env
        self.state = StateMachine(env)
        self.entries: list[tuple[int, CommandEnvelope]] = []

    def propose_sync(self, envelope: CommandEnvelope) -> tuple[int, Outcome]:
        index = self.state.last_applied() + 1
        self.entries.append((index, envelope))
        return index, self.state.apply(index, envelope)

    def close(self) -> None:
        self.env.close()


class Harness:
    """A state machine on a temp dir, fed through a LocalLog."""

    def __init__(self, path: Path) -> None:
        self.service = LocalLog(open_env(path, SMALL_MAP_BYTES))
        self.state = self.service.state
        self.sequence = 0

    def run(self, command: Command, client_id: str = "test") -> Outcome:
        self.sequence += 1
        envelope = CommandEnvelope(client_id=client_id, sequence=self.sequence, command=command)
        return self.service.propose_sync(envelope)[1]

    def ok(self, command: Command) -> dict:
        return self.run(command).unwrap()

    def refcounts(self) -> dict[str, int]:
        found = self.state.lookup_segments([sid(n) for n in "abcdefgh"])
        return {name: found[sid(name)].refcount for name in "abcdefgh" if sid(name) in found}

    def check(self) -> None:
        assert invariants.check(self.state.env, self.state.dbs) == []


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "meta.lmdb")
    yield harness
    harness.check()
    harness.service.close()


def test_bucket_lifecycle(h: Harness) -> None:
    assert h.ok(CreateBucket(name="b", created_ns=7)) == {"name": "b", "created_ns": 7}
    assert h.run(CreateBucket(name="b", created_ns=8)).error_code == "BucketAlreadyOwnedByYou"
    assert h.state.get_bucket("b").created_ns == 7
    h.ok(PutObject(version=version("k", []), new_segments=[]))
    assert h.run(DeleteBucket(name="b")).error_code == "BucketNotEmpty"
    h.ok(DeleteObject(bucket="b", key="k"))
    h.ok(DeleteBucket(name="b"))
    assert h.state.list_buckets() == []
    assert h.run(DeleteBucket(name="b")).error_code == "NoSuchBucket"
    assert h.run(CreateBucket(name="../x", created_ns=1)).error_code == "Invalid"


def test_failed_command_advances_last_applied_and_is_remembered(h: Harness) -> None:
    envelope = CommandEnvelope(client_id="c", sequence=1,
                               command=PutObject(version=version("k", ["a"]),
                                                 new_segments=[segment("a")]))
    index, outcome = h.service.propose_sync(envelope)
    assert outcome.error_code == "NoSuchBucket"
    assert h.state.last_applied() == index == 1
    h.ok(CreateBucket(name="b", created_ns=1))
    # the retry is answered from the session: the first decision stands
    assert h.service.propose_sync(envelope)[1].error_code == "NoSuchBucket"
    with pytest.raises(NoSuchKey):
        h.state.get_manifest("b", "k")
    assert h.state.lookup_segments([sid("a")]) == {}


def test_repeated_envelope_applies_once(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    put = CommandEnvelope(client_id="c", sequence=1,
                          command=PutObject(version=version("k", ["a"]),
                                            new_segments=[segment("a")]))
    first = h.service.propose_sync(put)
    second = h.service.propose_sync(put)
    assert first[1] == second[1] and second[0] == first[0] + 1
    assert h.refcounts() == {"a": 1}
    # the same (client, sequence) with another command still returns the first outcome
    other = CommandEnvelope(client_id="c", sequence=1, command=DeleteObject(bucket="b", key="k"))
    assert h.service.propose_sync(other)[1] == first[1]
    assert h.state.get_manifest("b", "k").version.key == "k"


def test_stale_sequence_below_the_acknowledged_floor_is_refused(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    for sequence in (1, 2, 3):
        h.service.propose_sync(CommandEnvelope(
            client_id="c", sequence=sequence, ack_below=sequence,
            command=PutObject(version=version(f"k{sequence}", []), new_segments=[])))
    stale = CommandEnvelope(client_id="c", sequence=1,
                            command=PutObject(version=version("k1", []), new_segments=[]))
    assert h.service.propose_sync(stale)[1].error_code == "Conflict"
    with h.state.env.begin() as txn:
        assert sessions.last_sequence(txn, h.state.dbs, "c") == 3


def test_sessions_are_bounded_per_client(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_OUTCOMES_PER_CLIENT", 3)
    for sequence in range(1, 7):
        h.service.propose_sync(CommandEnvelope(client_id="c", sequence=sequence,
                                               command=DeleteBucket(name="x")))
    stale = CommandEnvelope(client_id="c", sequence=2, command=CreateBucket(name="x",
                                                                            created_ns=1))
    assert h.service.propose_sync(stale)[1].error_code == "Conflict"
    assert h.state.list_buckets() == []


def test_idle_sessions_expire_by_log_index(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "SESSION_IDLE_ENTRIES", 2)
    h.run(DeleteBucket(name="x"), client_id="old")
    for _ in range(4):
        h.run(DeleteBucket(name="x"), client_id="busy")
    with h.state.env.begin() as txn:
        assert sessions.last_sequence(txn, h.state.dbs, "old") == 0
        assert sessions.last_sequence(txn, h.state.dbs, "busy") == 5


def test_apply_out_of_order_is_a_bug(h: Harness) -> None:
    envelope = CommandEnvelope(client_id="c", sequence=1, command=DeleteBucket(name="x"))
    with pytest.raises(ApplyOrderError):
        h.state.apply(5, envelope)


def test_refcounts_with_dedup_overwrite_and_delete(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    # a segment named twice by one object counts twice
    h.ok(PutObject(version=version("x", ["a", "a", "b"]),
                   new_segments=[segment("a"), segment("b")]))
    assert h.refcounts() == {"a": 2, "b": 1}
    h.check()
    # overwrite: the new refs count, the replaced version's refs are released
    result = h.ok(PutObject(version=version("x", ["b", "c"], version_id="v2"),
                            new_segments=[segment("c")]))
    assert result == {"version_id": "v2", "replaced_version_id": "v1"}
    assert h.refcounts() == {"a": 0, "b": 1, "c": 1}
    assert h.state.gc_segments() == [sid("a")]
    # dedup: a known segment is referenced without being sent again
    h.ok(PutObject(version=version("y", ["c"]), new_segments=[]))
    assert h.refcounts()["c"] == 2
    h.check()
    assert h.ok(DeleteObject(bucket="b", key="x")) == {"deleted": True, "version_id": "v2"}
    assert h.refcounts() == {"a": 0, "b": 0, "c": 1}
    assert sorted(h.state.gc_segments()) == sorted([sid("a"), sid("b")])
    # a zero-ref segment referenced again leaves the gc list
    h.ok(PutObject(version=version("z", ["a"]), new_segments=[]))
    assert h.refcounts()["a"] == 1 and sid("a") not in h.state.gc_segments()
    assert h.ok(DeleteObject(bucket="b", key="missing")) == {"deleted": False,
                                                             "version_id": None}
    assert h.run(DeleteObject(bucket="nope", key="k")).error_code == "NoSuchBucket"


def test_dedup_keeps_a_live_segment_record(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    h.ok(PutObject(version=version("x", ["a"]), new_segments=[segment("a")]))
    moved = segment("a", placement=["s4", "s5", "s6"])
    h.ok(PutObject(version=version("y", ["a"]), new_segments=[moved]))
    assert h.state.lookup_segments([sid("a")])[sid("a")].placement == ["s1", "s2", "s3"]
    assert h.refcounts() == {"a": 2}


def test_unknown_segment_fails_the_whole_command(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    outcome = h.run(PutObject(version=version("x", ["a", "b"]), new_segments=[segment("a")]))
    assert outcome.error_code == "Invalid"
    assert h.state.lookup_segments([sid("a")]) == {}
    assert h.state.counts().objects == 0


def test_layout_and_segment_records_are_validated(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    gap = version("x", ["a"])
    gap = ObjectVersion(**{**{f: getattr(gap, f) for f in gap.__struct_fields__}, "size": 99})
    assert h.run(PutObject(version=gap, new_segments=[segment("a")])).error_code == "Invalid"
    twice = segment("a", placement=["s1", "s1", "s2"])
    assert h.run(PutObject(version=version("x", ["a"]),
                           new_segments=[twice])).error_code == "Invalid"
    long_key = "k" * 1025
    assert h.run(PutObject(version=version(long_key, []),
                           new_segments=[])).error_code == "Invalid"


def test_manifest_holds_each_segment_once(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    key = "a b/%?#ü"
    h.ok(PutObject(version=version(key, ["a", "b", "a"]),
                   new_segments=[segment("a"), segment("b")]))
    manifest = h.state.get_manifest("b", key)
    assert manifest.version.key == key
    assert sorted(manifest.segments) == sorted([sid("a"), sid("b")])
    with pytest.raises(NoSuchBucket):
        h.state.get_manifest("nope", key)
    with pytest.raises(NoSuchKey):
        h.state.get_manifest("b", "other")


def test_repair_queue_is_fewest_healthy_first(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    h.ok(PutObject(version=version("x", ["a", "b", "c", "d"]), new_segments=[
        segment("a", placement=["s1", None, "s3"]),
        segment("b", placement=[None, None, "s3"]),
        segment("c"),
        segment("d", placement=["s1", "s2", None]),
    ]))
    assert h.state.counts().degraded_segments == 3
    order = [(task.segment_id, task.missing) for task in h.state.repair_tasks()]
    two_healthy = sorted([(sid("a"), [1]), (sid("d"), [2])])
    assert order == [(sid("b"), [0, 1])] + two_healthy
    # a bad shard report queues a healthy segment; a second one re-prioritises it
    assert h.ok(ReportBadShard(segment_id=sid("c"), index=0, node_id="s1", reason="xxh3"))
    assert h.ok(ReportBadShard(segment_id=sid("c"), index=2, node_id="s3",
                               reason="xxh3")) == {"queued": True}
    tasks = h.state.repair_tasks()
    assert [t.segment_id for t in tasks[:2]] == sorted([sid("b"), sid("c")])
    assert next(t for t in tasks if t.segment_id == sid("c")).missing == [0, 2]
    # stale or unknown reports change nothing
    assert h.ok(ReportBadShard(segment_id=sid("c"), index=1, node_id="s9",
                               reason="")) == {"queued": False}
    assert h.ok(ReportBadShard(segment_id=sid("zz"), index=0, node_id="s1",
                               reason="")) == {"queued": False}
    assert h.run(ReportBadShard(segment_id=sid("c"), index=7, node_id="s1",
                                reason="")).error_code == "Invalid"
    assert h.state.counts().repair_backlog == 4


def test_users(h: Harness) -> None:
    with pytest.raises(UnknownAccessKey):
        h.state.get_user("AK1")
    h.ok(PutUser(access_key="AK1", secret_key="s3cr3t", name="me"))
    assert h.state.get_user("AK1").secret_key == "s3cr3t"
    assert h.run(PutUser(access_key="../x", secret_key="s", name="")).error_code == "Invalid"
    with pytest.raises(UnknownAccessKey):
        h.state.get_user("../x")


def test_corrupt_refcount_is_reported_not_applied(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    h.ok(PutObject(version=version("x", ["a"]), new_segments=[segment("a")]))
    with h.state.env.begin(write=True) as txn:  # damage the record behind the state's back
        txn.delete(schema.segment_key(sid("a")), db=h.state.dbs.segments)
    outcome = h.run(DeleteObject(bucket="b", key="x"))
    assert outcome.error_code == Corrupt.code
    assert h.state.counts().objects == 1
    with h.state.env.begin(write=True) as txn:  # undo, so the fixture's check passes
        txn.put(schema.segment_key(sid("a")), schema.encode(
            Segment(**{**{f: getattr(segment("a"), f) for f in Segment.__struct_fields__},
                       "refcount": 1})), db=h.state.dbs.segments)
        txn.delete(schema.segment_key(sid("a")), db=h.state.dbs.gc)


# ---- replay ----------------------------------------------------------------------------


def dump(env: lmdb.Environment) -> dict[str, list[tuple[bytes, bytes]]]:
    dbs = schema.open_dbs(env)
    with env.begin() as txn:
        return {name: list(txn.cursor(getattr(dbs, name)).iternext())
                for name in schema.DB_NAMES if name != "log"}


def workload() -> list[CommandEnvelope]:
    commands: list[Command] = [
        CreateBucket(name="b", created_ns=1), CreateBucket(name="c", created_ns=2),
        PutObject(version=version("x", ["a", "b"]), new_segments=[segment("a"), segment("b")]),
        PutObject(version=version("y", ["b", "c"]),
                  new_segments=[segment("c", placement=["s1", None, "s3"])]),
        PutObject(version=version("x", ["d"], version_id="v2"), new_segments=[segment("d")]),
        ReportBadShard(segment_id=sid("d"), index=1, node_id="s2", reason="bad"),
        DeleteObject(bucket="b", key="y"), DeleteBucket(name="b"), DeleteBucket(name="c"),
        PutUser(access_key="AK", secret_key="SK", name="n"),
        PutObject(version=version("q", ["zz"]), new_segments=[]),
    ]
    envelopes = [CommandEnvelope(client_id=f"c{i % 3}", sequence=i // 3 + 1, command=command)
                 for i, command in enumerate(commands)]
    return envelopes + envelopes[2:4]  # retried duplicates are in the log too


def test_replaying_the_log_into_a_fresh_env_reproduces_the_state(tmp_path: Path) -> None:
    original = Harness(tmp_path / "one")
    for envelope in workload():
        original.service.propose_sync(envelope)
    original.check()
    fresh = StateMachine(open_env(tmp_path / "two", SMALL_MAP_BYTES))
    entries = original.service.entries
    assert [index for index, _ in entries] == list(range(1, len(workload()) + 1))
    for index, envelope in entries:
        fresh.apply(index, envelope)
    assert dump(fresh.env) == dump(original.service.env)
    fresh.env.close()
    original.service.close()


def raft_entries(envelopes: list[CommandEnvelope]) -> list[Entry]:
    """The raft log of a new leader (its NOOP first) holding these commands."""
    entries = [Entry(term=1, index=1, kind=EntryKind.NOOP)]
    for envelope in envelopes:
        entries.append(Entry(term=1, index=len(entries) + 1, data=encode_envelope(envelope)))
    return entries


def test_raft_entries_apply_once_when_replayed_after_a_crash(tmp_path: Path) -> None:
    """The driver may hand entries that were applied before a crash again: skipped."""
    entries = raft_entries(workload())
    store = StateStore(tmp_path / "one", map_size_bytes=SMALL_MAP_BYTES)
    first = store.apply_entries(entries[:5])
    assert [entry.index for entry, _ in first] == [1, 2, 3, 4, 5]
    assert first[0][1] is None and all(outcome is not None for _, outcome in first[1:])
    again = store.apply_entries(entries)  # 1..5 again, then the rest
    assert [entry.index for entry, _ in again] == list(range(6, len(entries) + 1))
    assert store.last_applied() == len(entries)
    reference = StateStore(tmp_path / "two", map_size_bytes=SMALL_MAP_BYTES)
    reference.apply_entries(entries)
    assert dump(store.env) == dump(reference.env)
    assert invariants.check(store.env, store.state.dbs) == []
    store.close()
    reference.close()


def test_snapshot_restores_the_exact_state_and_survives_an_interrupted_swap(
        tmp_path: Path) -> None:
    entries = raft_entries(workload())
    source = StateStore(tmp_path / "source", map_size_bytes=SMALL_MAP_BYTES)
    source.apply_entries(entries[:7])
    index, data = source.snapshot_sync()
    assert index == 7
    source.apply_entries(entries[7:])  # the copy was taken at 7, whatever happens after

    target = StateStore(tmp_path / "target", map_size_bytes=SMALL_MAP_BYTES)
    target.apply_entries(raft_entries([])[:1])
    assert target.restore_sync(data) == 7
    target.apply_entries(entries[7:])
    assert dump(target.env) == dump(source.env)
    target.close()

    # a crash between the two renames of a restore: the fsync'd restore directory wins
    path = tmp_path / "target"
    path.rename(tmp_path / "target.old")
    (tmp_path / "target.restore").mkdir()
    (tmp_path / "target.restore" / "data.mdb").write_bytes(data)
    reopened = StateStore(path, map_size_bytes=SMALL_MAP_BYTES)
    assert reopened.last_applied() == 7
    assert not (tmp_path / "target.old").exists()
    assert not (tmp_path / "target.restore").exists()
    reopened.close()
    source.close()


# ---- listing through LMDB, long keys included ------------------------------------------

LONG = "p" * 470
key_strategy = st.one_of(
    st.text(alphabet="ab/é", min_size=1, max_size=5),
    st.builds(lambda tail: LONG + tail, st.text(alphabet="ab/é", min_size=0, max_size=30)),
)


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(key_strategy, min_size=0, max_size=25, unique=True),
       prefix=st.sampled_from(["", "a", LONG, LONG + "a"]),
       delimiter=st.sampled_from(["", "/", "a"]),
       max_keys=st.integers(min_value=1, max_value=4))
def test_listing_from_lmdb_matches_the_pure_listing(keys: list[str], prefix: str,
                                                    delimiter: str, max_keys: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        h = Harness(Path(directory) / "m")
        h.ok(CreateBucket(name="b", created_ns=1))
        h.ok(CreateBucket(name="a", created_ns=1))  # a neighbouring bucket must not leak in
        h.ok(PutObject(version=version("zz", [], bucket="a"), new_segments=[]))
        for key in keys:
            h.ok(PutObject(version=version(key, []), new_segments=[]))
        every = [ObjectSummary(key=k, size=0, etag="e", created_ns=1)
                 for k in sorted(keys, key=lambda k: k.encode())]
        marker = ""
        for _ in range(len(keys) + 2):
            expected = list_page(every, prefix=prefix, delimiter=delimiter,
                                 start_after=marker, max_keys=max_keys)
            page = h.state.list_objects("b", prefix, delimiter, marker, max_keys)
            assert page == expected
            if not page.is_truncated:
                break
            marker = page.next_marker or ""
        h.service.close()


def test_long_keys_sharing_a_stored_prefix_list_in_key_order(h: Harness) -> None:
    h.ok(CreateBucket(name="b", created_ns=1))
    base = "x" * 600
    exactly_inline = "x" * (schema.INLINE_KEY_BYTES - len("b\x00"))
    keys = [base + tail for tail in ("c", "a", "b/1", "b/2", "")] + [exactly_inline, "y"]
    for key in keys:
        h.ok(PutObject(version=version(key, ["a"]), new_segments=[segment("a")]))
    with h.state.env.begin() as txn:
        stored = list(txn.cursor(h.state.dbs.objects).iternext(values=False))
    assert sum(schema.is_hashed_object_key(k) for k in stored) == 5
    ordered = sorted(keys)
    page = h.state.list_objects("b", max_keys=1000)
    assert [e.key for e in page.entries] == ordered
    after = h.state.list_objects("b", start_after=base + "a", max_keys=2)
    assert [e.key for e in after.entries] == [base + "b/1", base + "b/2"]
    rolled = h.state.list_objects("b", prefix=base, delimiter="/")
    assert [e.key for e in rolled.entries] == [base, base + "a", base + "c"]
    assert rolled.common_prefixes == [base + "b/"]
    assert h.state.get_manifest("b", base + "b/2").version.key == base + "b/2"
    assert h.ok(DeleteObject(bucket="b", key=base + "b/2"))["deleted"]
    assert h.refcounts() == {"a": len(keys) - 1}
