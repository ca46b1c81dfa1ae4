"""The LMDB raft log (``meta/raft_log.py``): what it keeps across a reopen, and group commit.

The Protocol's rules are checked on both storages by tests/contract/test_raft_storage.py;
these cases are about the LMDB one: every writer's effect survives closing and reopening
the environment, a Ready is one transaction and one fsync, and a failed write leaves the
log as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from blobstore.meta.raft_log import LmdbRaftStorage
from blobstore.raft.errors import Compacted, Unavailable
from blobstore.raft.messages import ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term=term, index=i, data=f"cmd-{i}".encode()) for i in range(first, last + 1)]


def reopen(storage: LmdbRaftStorage, path: Path) -> LmdbRaftStorage:
    storage.close()
    return LmdbRaftStorage.open(path)


def test_a_fresh_storage_is_empty_until_bootstrapped(tmp_path: Path) -> None:
    storage = LmdbRaftStorage.open(tmp_path / "raft")
    assert storage.is_empty()
    assert (storage.first_index(), storage.last_index(), storage.term(0)) == (1, 0, 0)
    storage.bootstrap(ConfState(voters=("a", "b", "c")))
    storage = reopen(storage, tmp_path / "raft")
    assert not storage.is_empty()
    assert storage.initial_state() == (HardState(), ConfState(voters=("a", "b", "c")))
    with pytest.raises(ValueError):
        storage.bootstrap(ConfState(voters=("a",)))
    storage.close()


def test_append_truncate_and_hard_state_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "raft"
    storage = LmdbRaftStorage.open(path)
    storage.append(entries(1, 10))
    storage.append(entries(7, 8, term=2))  # a new leader overwrote 7.. : 9 and 10 are gone
    storage.set_hard_state(HardState(term=2, vote="b", commit=6))
    storage = reopen(storage, path)
    assert storage.last_index() == 8
    assert [e.term for e in storage.entries(1, 9)] == [1] * 6 + [2, 2]
    assert storage.entries(7, 9)[0].data == b"cmd-7"
    assert storage.term(8) == 2
    assert storage.initial_state()[0] == HardState(term=2, vote="b", commit=6)
    with pytest.raises(Unavailable):
        storage.term(9)
    with pytest.raises(ValueError):
        storage.append(entries(10, 11))  # a gap after 8
    assert storage.last_index() == 8  # the refused write changed nothing
    storage.close()


def test_snapshot_and_compaction_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "raft"
    storage = LmdbRaftStorage.open(path)
    storage.bootstrap(ConfState(voters=("a",)))
    storage.append(entries(1, 30, term=3))
    storage.snapshot_and_compact(20, ConfState(voters=("a", "b")), b"state@20", compact_to=15)
    storage = reopen(storage, path)
    assert (storage.first_index(), storage.last_index()) == (16, 30)
    assert storage.term(15) == 3
    with pytest.raises(Compacted):
        storage.entries(15, 17)
    with pytest.raises(Compacted):
        storage.term(14)
    snapshot = storage.snapshot()
    assert snapshot.meta == SnapshotMeta(index=20, term=3, conf=ConfState(voters=("a", "b")))
    assert snapshot.data == b"state@20"
    assert storage.initial_state()[1] == ConfState(voters=("a", "b"))
    with pytest.raises(ValueError):
        storage.compact(21)  # never past the snapshot
    storage.close()


def test_a_received_snapshot_replaces_the_log(tmp_path: Path) -> None:
    path = tmp_path / "raft"
    storage = LmdbRaftStorage.open(path)
    storage.append(entries(1, 5))
    leader_snapshot = Snapshot(SnapshotMeta(index=40, term=4, conf=ConfState(voters=("x", "y"))),
                               b"leader state")
    storage.persist(HardState(term=4, vote=None, commit=40), entries(41, 42, term=4),
                    leader_snapshot)
    storage = reopen(storage, path)
    assert (storage.first_index(), storage.last_index(), storage.term(40)) == (41, 42, 4)
    assert storage.snapshot() == leader_snapshot
    assert storage.initial_state() == (HardState(term=4, vote=None, commit=40),
                                       ConfState(voters=("x", "y")))
    with pytest.raises(ValueError):
        storage.apply_snapshot(Snapshot(SnapshotMeta(index=30, term=3, conf=ConfState()), b""))
    storage.close()


def test_persist_is_one_transaction_and_one_fsync(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[int] = []
    real_sync = LmdbRaftStorage.sync
    monkeypatch.setattr(LmdbRaftStorage, "sync",
                        lambda self: (syncs.append(1), real_sync(self))[1])
    storage = LmdbRaftStorage.open(tmp_path / "raft")
    storage.persist(HardState(term=1, vote="a", commit=0), entries(1, 500), None)
    assert len(syncs) == 1 and storage.last_index() == 500
    storage.persist(HardState(term=1, vote="a", commit=500), [], None, sync=False)
    assert len(syncs) == 1  # a commit-only change needs no fsync
    storage.persist(None, [], None)
    assert len(syncs) == 1  # nothing to write: nothing to sync
    with pytest.raises(ValueError):  # entries that leave a gap: the whole Ready is refused
        storage.persist(HardState(term=9, vote="z", commit=500), entries(600, 601), None)
    assert storage.hard_state() == HardState(term=1, vote="a", commit=500)
    assert storage.last_index() == 500
    storage.close()


def test_entries_stop_at_max_bytes_but_return_one(tmp_path: Path) -> None:
    storage = LmdbRaftStorage.open(tmp_path / "raft")
    big = [Entry(term=1, index=i, kind=EntryKind.NORMAL, data=b"x" * 100) for i in range(1, 11)]
    storage.append(big)
    assert len(storage.entries(1, 11, max_bytes=1)) == 1
    assert len(storage.entries(1, 11, max_bytes=3 * 124)) == 3
    assert len(storage.entries(1, 11)) == 10
    storage.close()
