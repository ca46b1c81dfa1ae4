"""The raft ``Storage`` Protocol and its writers, run on every implementation.

Each case is a factory ``tmp_path -> storage``. MemoryStorage always runs; the LMDB storage
(``blobstore.meta.raft_log.LmdbRaftStorage``) joins automatically once it can be imported.
A case whose storage can be reopened from disk also runs the durability tests.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from blobstore.raft import (
    Compacted,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    Snapshot,
    SnapshotMeta,
    Unavailable,
)


@dataclass(frozen=True)
class StorageCase:
    name: str
    open: Callable[[pathlib.Path], Any]
    persistent: bool = False


storage_factory: list[StorageCase] = [StorageCase("memory", lambda tmp_path: MemoryStorage())]
try:
    from blobstore.meta.raft_log import LmdbRaftStorage  # type: ignore[import-not-found]
except ImportError:
    pass
else:
    storage_factory.append(StorageCase(
        "lmdb", lambda tmp_path: LmdbRaftStorage.open(tmp_path / "raft"), persistent=True))


@pytest.fixture(params=storage_factory, ids=lambda case: case.name)
def case(request) -> StorageCase:
    return request.param


@pytest.fixture
def storage(case, tmp_path):
    store = case.open(tmp_path)
    yield store
    close = getattr(store, "close", None)
    if close is not None:
        close()


def _entries(lo: int, hi: int, term: int = 1, size: int = 10) -> list[Entry]:
    return [Entry(term=term, index=i, kind=EntryKind.NORMAL, data=bytes([i % 256]) * size)
            for i in range(lo, hi)]


def test_a_fresh_storage_is_empty(storage):
    hard_state, conf = storage.initial_state()
    assert hard_state == HardState(term=0, vote=None, commit=0)
    assert conf == ConfState(voters=()) or isinstance(conf, ConfState)
    assert storage.first_index() == 1
    assert storage.last_index() == 0
    assert storage.term(0) == 0
    assert storage.entries(1, 1) == []


def test_appended_entries_read_back(storage):
    storage.append(_entries(1, 6))
    assert storage.first_index() == 1 and storage.last_index() == 5
    assert storage.entries(2, 5) == _entries(2, 5)
    assert [storage.term(i) for i in range(0, 6)] == [0, 1, 1, 1, 1, 1]


def test_reads_outside_the_log_raise(storage):
    storage.append(_entries(1, 4))
    with pytest.raises(Unavailable):
        storage.entries(2, 6)
    with pytest.raises(Unavailable):
        storage.term(4)


def test_entries_are_limited_by_size_but_never_empty(storage):
    storage.append(_entries(1, 11, size=100))
    assert len(storage.entries(1, 11, max_bytes=0)) == 1
    assert len(storage.entries(1, 11, max_bytes=3 * 124)) == 3
    assert len(storage.entries(1, 11, max_bytes=None)) == 10


def test_append_truncates_a_conflicting_suffix(storage):
    storage.append(_entries(1, 6, term=1))
    storage.append(_entries(3, 5, term=2))
    assert storage.last_index() == 4
    assert [storage.term(i) for i in range(1, 5)] == [1, 1, 2, 2]


def test_append_continues_the_log(storage):
    storage.append(_entries(1, 3))
    storage.append(_entries(3, 5))
    assert storage.entries(1, 5) == _entries(1, 5)


def test_hard_state_round_trips(storage):
    storage.set_hard_state(HardState(term=7, vote="n2", commit=0))
    assert storage.initial_state()[0] == HardState(term=7, vote="n2", commit=0)


def test_create_snapshot_and_compact(storage):
    storage.append(_entries(1, 11))
    conf = ConfState(voters=("n1", "n2", "n3"))
    snap = storage.create_snapshot(6, conf, b"state")
    assert snap.meta == SnapshotMeta(index=6, term=1, conf=conf) and snap.data == b"state"
    assert storage.snapshot() == snap
    storage.compact(6)
    assert storage.first_index() == 7 and storage.last_index() == 10
    assert storage.term(6) == 1
    assert storage.initial_state()[1] == conf
    with pytest.raises(Compacted):
        storage.entries(5, 8)
    with pytest.raises(Compacted):
        storage.term(5)
    assert storage.entries(7, 11) == _entries(7, 11)


def test_compact_below_the_first_index_raises(storage):
    storage.append(_entries(1, 6))
    storage.create_snapshot(4, ConfState(voters=("n1",)), b"")
    storage.compact(4)
    with pytest.raises(Compacted):
        storage.compact(3)


def test_append_below_the_first_index_keeps_only_new_entries(storage):
    storage.append(_entries(1, 6))
    storage.create_snapshot(3, ConfState(voters=("n1",)), b"")
    storage.compact(3)
    storage.append(_entries(2, 8, term=1))
    assert storage.first_index() == 4 and storage.last_index() == 7


def test_apply_snapshot_replaces_the_log(storage):
    storage.append(_entries(1, 4))
    conf = ConfState(voters=("n1", "n2"))
    snap = Snapshot(meta=SnapshotMeta(index=10, term=3, conf=conf), data=b"s")
    storage.apply_snapshot(snap)
    assert storage.snapshot() == snap
    assert storage.first_index() == 11 and storage.last_index() == 10
    assert storage.term(10) == 3
    assert storage.initial_state()[1] == conf
    storage.append(_entries(11, 13, term=3))
    assert storage.last_index() == 12


def test_reopening_keeps_everything(case, tmp_path):
    if not case.persistent:
        pytest.skip(f"{case.name} storage does not survive a reopen")
    store = case.open(tmp_path)
    store.append(_entries(1, 8, term=2))
    store.set_hard_state(HardState(term=2, vote="n1", commit=5))
    store.create_snapshot(4, ConfState(voters=("n1", "n2", "n3")), b"four")
    store.compact(3)
    store.close()
    again = case.open(tmp_path)
    try:
        assert again.initial_state()[0] == HardState(term=2, vote="n1", commit=5)
        assert again.first_index() == 4 and again.last_index() == 7
        assert again.entries(4, 8) == _entries(4, 8, term=2)
        assert again.snapshot().data == b"four"
    finally:
        again.close()
