"""Raft §7: log compaction, InstallSnapshot, and restoring a node from a snapshot."""

from __future__ import annotations

import random

from blobstore.raft import (
    ConfState,
    Entry,
    EntryKind,
    MemoryStorage,
    Message,
    MessageType,
    RaftConfig,
    RaftNode,
    Snapshot,
    SnapshotMeta,
)


def _compact(cluster, node_id: str, keep: int = 0) -> int:
    node = cluster.nodes[node_id]
    applied = node.log.applied
    storage = cluster.storages[node_id]
    storage.create_snapshot(applied, ConfState(voters=node.voters), f"state@{applied}".encode())
    storage.compact(applied - keep)
    return applied


def test_a_lagging_follower_is_sent_a_snapshot_and_catches_up(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("c")
    for i in range(10):
        cluster.propose("a", bytes([i]))
    snap_index = _compact(cluster, "a")
    cluster.sent.clear()
    cluster.heal()
    cluster.tick(3)
    snapshots = [m for m in cluster.sent if m.type is MessageType.SNAPSHOT]
    assert [m.snapshot.meta.index for m in snapshots] == [snap_index]
    assert cluster.storages["c"].snapshot().data == f"state@{snap_index}".encode()
    cluster.propose("a", b"after")
    assert cluster.data_applied("c") == [b"after"]  # entries after the snapshot are applied
    assert cluster.nodes["c"].log.applied == cluster.nodes["a"].log.applied


def test_the_ready_carries_the_snapshot_and_no_committed_entries_before_it():
    storage = MemoryStorage(ConfState(voters=("a", "b")))
    node = RaftNode(RaftConfig(id="b"), storage, random.Random(0))
    snap = Snapshot(SnapshotMeta(index=5, term=2, conf=ConfState(voters=("a", "b"))), b"s")
    node.step(Message(MessageType.SNAPSHOT, "a", "b", term=2, snapshot=snap))
    rd = node.ready()
    assert rd.snapshot == snap and rd.committed_entries == []
    assert [(m.type, m.index) for m in rd.messages] == [(MessageType.APPEND_RESP, 5)]
    storage.apply_snapshot(snap)
    node.advance(rd)
    assert node.log.applied == 5 and node.log.committed == 5 and node.log.first_index() == 6


def test_a_snapshot_older_than_the_commit_index_is_ignored(make_cluster):
    cluster = make_cluster(["a", "b"])
    cluster.elect("a")
    for i in range(5):
        cluster.propose("a", bytes([i]))
    follower = cluster.nodes["b"]
    old = Snapshot(SnapshotMeta(index=2, term=1, conf=ConfState(voters=("a", "b"))), b"")
    follower.step(Message(MessageType.SNAPSHOT, "a", "b", term=follower.term, snapshot=old))
    rd = follower.ready()
    assert rd.snapshot is None
    assert rd.messages[0].index == follower.log.committed


def test_a_snapshot_matching_the_log_only_moves_the_commit_index():
    storage = MemoryStorage(ConfState(voters=("a", "b")))
    storage.append([Entry(term=1, index=i) for i in range(1, 6)])
    node = RaftNode(RaftConfig(id="b"), storage, random.Random(0))
    snap = Snapshot(SnapshotMeta(index=3, term=1, conf=ConfState(voters=("a", "b"))), b"")
    node.step(Message(MessageType.SNAPSHOT, "a", "b", term=1, snapshot=snap))
    rd = node.ready()
    assert rd.snapshot is None and node.log.committed == 3 and node.log.last_index() == 5


def test_a_lost_snapshot_is_sent_again(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("c")
    for i in range(5):
        cluster.propose("a", bytes([i]))
    _compact(cluster, "a")
    cluster.heal()
    cluster.drop = lambda m: m.type is MessageType.SNAPSHOT
    cluster.tick(3)
    cluster.drop = None
    cluster.sent.clear()
    cluster.tick(25)
    assert any(m.type is MessageType.SNAPSHOT for m in cluster.sent)
    assert cluster.nodes["c"].log.applied == cluster.nodes["a"].log.applied


def test_a_restarted_node_resumes_from_its_snapshot(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    for i in range(6):
        cluster.propose("a", bytes([i]))
    snap_index = _compact(cluster, "b", keep=2)
    cluster.propose("a", b"tail")
    node = cluster.restart("b")
    assert node.log.applied == snap_index and node.log.first_index() == snap_index - 1
    cluster.stabilize()
    assert cluster.data_applied("b")[-1] == b"tail"
    assert all(e.kind is not EntryKind.CONF_CHANGE for e in cluster.applied["b"])
