"""The durable Raft log of one meta replica: LMDB storage for ``blobstore/raft``.

``LmdbRaftStorage`` implements the raft ``Storage`` Protocol and the application's writers
(``docs/raft.md``, rules in ``blobstore/raft/storage.py``; the same contract suite,
``tests/contract/test_raft_storage.py``, runs on it and on ``MemoryStorage``). It lives in its
own LMDB environment, ``data_dir/raft.lmdb``, apart from the state machine's ``meta.lmdb``.

Layout (three sub-dbs):

| sub-db      | key                       | value                                           |
|-------------|---------------------------|-------------------------------------------------|
| ``entries`` | index (u64 BE)            | term (u64 BE) + msgpack ``Entry``               |
| ``state``   | ``b"hard_state"``         | msgpack ``HardState``                           |
|             | ``b"snapshot_meta"``      | msgpack ``SnapshotMeta`` (the latest snapshot)  |
|             | ``b"offset"``             | u64 index + u64 term: the dummy entry (below)   |
| ``snapshot``| ``b"data"``               | the latest snapshot's bytes                     |

Rules:

1. The log is a snapshot followed by entries ``first_index() .. last_index()``. The *offset*
   ``(index, term)`` is the entry just below ``first_index()``: the snapshot's position after
   ``apply_snapshot``, the compaction point after ``compact``. ``term(offset)`` is known, so
   the core can check a follower's log right after the snapshot. Invariant:
   ``offset.index <= snapshot.index <= last_index()`` (compaction never passes the snapshot,
   so a follower sent the snapshot finds the entries after it).
2. Durability (group commit): the environment is opened with ``sync=False, metasync=False``,
   and ``persist(hard_state, entries, snapshot)`` writes a Ready's snapshot, entries and
   hard state in ONE write transaction and then calls ``env.sync(True)`` ONCE: one fsync per
   Ready, however many entries it holds. The single writers (``append``, ``set_hard_state``,
   ...) commit without fsync; callers that need durability call ``sync()``. Killing the
   process never loses a committed transaction (the page cache survives); a power loss
   between a commit and its ``sync()`` may lose or, as LMDB documents for MDB_NOSYNC,
   damage the last transactions, and the driver never sends a message depending on them
   before ``sync()`` returned.
3. Reads run on the caller's thread with short read transactions; the indexes, hard state
   and snapshot metadata are cached in memory and replaced only after a write transaction
   commits, so a failed write leaves the cache and the file as they were. One writer at a
   time (the raft driver); reads never happen during a write (the driver owns both).
4. Snapshot data is held in memory whole (one LMDB value, one message on the wire): fine
   for metadata of up to a few hundred MiB (see ``meta/snapshots.py``).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import lmdb
import msgspec

from blobstore.raft.errors import Compacted, Unavailable
from blobstore.raft.messages import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from blobstore.raft.storage import limit_size
from blobstore.runtime import metrics

MAP_SIZE_BYTES = 64 * 1024**3  # address space; the file grows with the data
MAX_DBS = 4
_U64 = struct.Struct(">Q")
_OFFSET = struct.Struct(">QQ")
_HARD_STATE_KEY = b"hard_state"
_SNAPSHOT_META_KEY = b"snapshot_meta"
_OFFSET_KEY = b"offset"
_SNAPSHOT_DATA_KEY = b"data"
_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(Entry)
_hard_state_decoder = msgspec.msgpack.Decoder(HardState)
_snapshot_meta_decoder = msgspec.msgpack.Decoder(SnapshotMeta)


@dataclass(frozen=True, slots=True)
class _Cache:
    """What reads need without touching the file; replaced whole after each commit."""

    hard_state: HardState
    snapshot_meta: SnapshotMeta
    offset_index: int
    offset_term: int
    last_index: int


class LmdbRaftStorage:
    """The raft Storage Protocol and its writers over one LMDB environment."""

    def __init__(self, env: lmdb.Environment) -> None:
        self.env = env
        self._entries = env.open_db(b"entries")
        self._state = env.open_db(b"state")
        self._snapshot = env.open_db(b"snapshot")
        self._cache = self._load()

    @classmethod
    def open(cls, path: str | Path, map_size_bytes: int = MAP_SIZE_BYTES) -> LmdbRaftStorage:
        """Open (creating) the environment at directory ``path``."""
        Path(path).mkdir(parents=True, exist_ok=True)
        env = lmdb.open(str(path), map_size=map_size_bytes, max_dbs=MAX_DBS, subdir=True,
                        sync=False, metasync=False, readahead=False, max_readers=64)
        return cls(env)

    def close(self) -> None:
        started = time.perf_counter()
        self.env.sync(True)
        metrics.observe_fsync(time.perf_counter() - started, "raft_log")
        self.env.close()

    # ---- reads: the Storage Protocol ---------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._cache.hard_state, self._cache.snapshot_meta.conf

    def hard_state(self) -> HardState:
        return self._cache.hard_state

    def first_index(self) -> int:
        return self._cache.offset_index + 1

    def last_index(self) -> int:
        return self._cache.last_index

    def snapshot_meta(self) -> SnapshotMeta:
        """The latest snapshot's metadata, without reading its data."""
        return self._cache.snapshot_meta

    def is_empty(self) -> bool:
        """True for a storage nothing was ever written to (a replica's first start)."""
        cache = self._cache
        return (cache.hard_state == HardState() and cache.last_index == 0
                and cache.snapshot_meta.index == 0 and not cache.snapshot_meta.conf.voters)

    def term(self, index: int) -> int:
        cache = self._cache
        if index < cache.offset_index:
            raise Compacted(f"index {index} < first index {cache.offset_index + 1}")
        if index > cache.last_index:
            raise Unavailable(f"index {index} > last index {cache.last_index}")
        if index == cache.offset_index:
            return cache.offset_term
        with self.env.begin(db=self._entries) as txn:
            value = txn.get(_U64.pack(index))
        assert value is not None, f"entry {index} missing inside the log"
        return int(_U64.unpack_from(value)[0])

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        cache = self._cache
        if lo <= cache.offset_index:
            raise Compacted(f"entries from {lo}: first index is {cache.offset_index + 1}")
        if hi > cache.last_index + 1:
            raise Unavailable(f"entries to {hi}: last index is {cache.last_index}")
        if lo >= hi:
            return []
        found: list[Entry] = []
        size = 0
        with self.env.begin(db=self._entries) as txn:
            cursor = txn.cursor()
            positioned = cursor.set_key(_U64.pack(lo))
            while positioned and len(found) < hi - lo:
                value = cursor.value()
                entry = _entry_decoder.decode(memoryview(value)[8:])
                found.append(entry)
                size += len(entry.data) + 24
                if max_bytes is not None and size > max_bytes:
                    break  # limit_size below trims the entry that crossed the limit
                positioned = cursor.next()
        assert len(found) == hi - lo or max_bytes is not None, "gap inside the log"
        return limit_size(found, max_bytes)

    def snapshot(self) -> Snapshot:
        meta = self._cache.snapshot_meta
        with self.env.begin(db=self._snapshot) as txn:
            data = txn.get(_SNAPSHOT_DATA_KEY, default=b"")
        return Snapshot(meta=meta, data=bytes(data))

    # ---- writers -----------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        self._write(lambda txn, cache: self._append_in(txn, cache, entries))

    def set_hard_state(self, hard_state: HardState) -> None:
        self._write(lambda txn, cache: self._set_hard_state_in(txn, cache, hard_state))

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self._write(lambda txn, cache: self._apply_snapshot_in(txn, cache, snapshot))

    def create_snapshot(self, index: int, conf: ConfState, data: bytes) -> Snapshot:
        self._write(lambda txn, cache: self._create_snapshot_in(txn, cache, index, conf, data))
        return Snapshot(meta=self._cache.snapshot_meta, data=data)

    def compact(self, index: int) -> None:
        self._write(lambda txn, cache: self._compact_in(txn, cache, index))

    def persist(self, hard_state: HardState | None, entries: Sequence[Entry],
                snapshot: Snapshot | None, *, sync: bool = True) -> None:
        """One Ready's snapshot, entries and hard state: one transaction, one fsync."""
        if hard_state is None and not entries and snapshot is None:
            return

        def write(txn: lmdb.Transaction, cache: _Cache) -> _Cache:
            if snapshot is not None:
                cache = self._apply_snapshot_in(txn, cache, snapshot)
            if entries:
                cache = self._append_in(txn, cache, entries)
            if hard_state is not None:
                cache = self._set_hard_state_in(txn, cache, hard_state)
            return cache

        self._write(write)
        if sync:
            self.sync()

    def snapshot_and_compact(self, index: int, conf: ConfState, data: bytes,
                             compact_to: int) -> None:
        """Record a snapshot at ``index`` and drop entries ``<= compact_to``; then fsync."""

        def write(txn: lmdb.Transaction, cache: _Cache) -> _Cache:
            cache = self._create_snapshot_in(txn, cache, index, conf, data)
            if compact_to > cache.offset_index:
                cache = self._compact_in(txn, cache, compact_to)
            return cache

        self._write(write)
        self.sync()

    def sync(self) -> None:
        """fsync everything committed so far (the group commit of rule 2)."""
        started = time.perf_counter()
        self.env.sync(True)
        metrics.observe_fsync(time.perf_counter() - started, "raft_log")

    # ---- inside a write transaction: each returns the cache as it will be -------------

    def _write(self, change) -> None:  # type: ignore[no-untyped-def]
        with self.env.begin(write=True) as txn:
            cache = change(txn, self._cache)
        self._cache = cache  # only after the commit (rule 3)

    def _append_in(self, txn: lmdb.Transaction, cache: _Cache,
                   entries: Sequence[Entry]) -> _Cache:
        first = cache.offset_index + 1
        kept = [entry for entry in entries if entry.index >= first]
        if not kept:
            return cache
        start = kept[0].index
        if start > cache.last_index + 1:
            raise ValueError(f"append at {start} leaves a gap after {cache.last_index}")
        for previous, current in zip(kept, kept[1:], strict=False):
            if current.index != previous.index + 1:
                raise ValueError("appended entries are not contiguous")
        cursor = txn.cursor(db=self._entries)
        if start <= cache.last_index:  # truncate the conflicting suffix
            positioned = cursor.set_range(_U64.pack(start))
            while positioned:
                positioned = cursor.delete()
        for entry in kept:
            txn.put(_U64.pack(entry.index), _U64.pack(entry.term) + _encoder.encode(entry),
                    db=self._entries, append=True)
        return replace(cache, last_index=kept[-1].index)

    def _set_hard_state_in(self, txn: lmdb.Transaction, cache: _Cache,
                           hard_state: HardState) -> _Cache:
        txn.put(_HARD_STATE_KEY, _encoder.encode(hard_state), db=self._state)
        return replace(cache, hard_state=hard_state)

    def _apply_snapshot_in(self, txn: lmdb.Transaction, cache: _Cache,
                           snapshot: Snapshot) -> _Cache:
        meta = snapshot.meta
        if meta.index < cache.snapshot_meta.index:
            raise ValueError(f"snapshot at {meta.index} is older than "
                             f"{cache.snapshot_meta.index}")
        txn.drop(self._entries, delete=False)
        txn.put(_SNAPSHOT_META_KEY, _encoder.encode(meta), db=self._state)
        txn.put(_OFFSET_KEY, _OFFSET.pack(meta.index, meta.term), db=self._state)
        txn.put(_SNAPSHOT_DATA_KEY, snapshot.data, db=self._snapshot)
        return replace(cache, snapshot_meta=meta, offset_index=meta.index,
                       offset_term=meta.term, last_index=meta.index)

    def _create_snapshot_in(self, txn: lmdb.Transaction, cache: _Cache, index: int,
                            conf: ConfState, data: bytes) -> _Cache:
        if index < cache.snapshot_meta.index:
            raise ValueError(f"snapshot at {index} is older than {cache.snapshot_meta.index}")
        if index > cache.last_index:
            raise Unavailable(f"snapshot at {index} > last index {cache.last_index}")
        if index < cache.offset_index:
            raise Compacted(f"snapshot at {index} is below the first index")
        meta = SnapshotMeta(index=index, term=self._term_in(txn, cache, index), conf=conf)
        txn.put(_SNAPSHOT_META_KEY, _encoder.encode(meta), db=self._state)
        txn.put(_SNAPSHOT_DATA_KEY, data, db=self._snapshot)
        return replace(cache, snapshot_meta=meta)

    def _compact_in(self, txn: lmdb.Transaction, cache: _Cache, index: int) -> _Cache:
        if index <= cache.offset_index:
            raise Compacted(f"compact to {index}: already compacted to {cache.offset_index}")
        if index > cache.snapshot_meta.index:
            raise ValueError(f"compact to {index} beyond the snapshot at "
                             f"{cache.snapshot_meta.index}")
        term = self._term_in(txn, cache, index)
        cursor = txn.cursor(db=self._entries)
        positioned = cursor.first()
        while positioned and _U64.unpack(cursor.key())[0] <= index:
            positioned = cursor.delete()
        txn.put(_OFFSET_KEY, _OFFSET.pack(index, term), db=self._state)
        return replace(cache, offset_index=index, offset_term=term)

    def _term_in(self, txn: lmdb.Transaction, cache: _Cache, index: int) -> int:
        if index == cache.offset_index:
            return cache.offset_term
        value = txn.get(_U64.pack(index), db=self._entries)
        if value is None:
            raise Unavailable(f"no entry {index}")
        return int(_U64.unpack_from(value)[0])

    # ---- startup -----------------------------------------------------------------------

    def _load(self) -> _Cache:
        with self.env.begin() as txn:
            hard = txn.get(_HARD_STATE_KEY, db=self._state)
            meta = txn.get(_SNAPSHOT_META_KEY, db=self._state)
            offset = txn.get(_OFFSET_KEY, db=self._state)
            cursor = txn.cursor(db=self._entries)
            last_key = cursor.key() if cursor.last() else None
        snapshot_meta = (_snapshot_meta_decoder.decode(meta) if meta is not None
                         else SnapshotMeta(index=0, term=0, conf=ConfState()))
        offset_index, offset_term = _OFFSET.unpack(offset) if offset is not None else (0, 0)
        last_index = _U64.unpack(last_key)[0] if last_key is not None else offset_index
        return _Cache(hard_state=_hard_state_decoder.decode(hard) if hard else HardState(),
                      snapshot_meta=snapshot_meta, offset_index=int(offset_index),
                      offset_term=int(offset_term), last_index=int(last_index))

    def bootstrap(self, conf: ConfState) -> None:
        """A fresh storage's configuration: an empty snapshot at index 0 with ``conf``."""
        if not self.is_empty():
            raise ValueError("bootstrap of a storage that already holds state")
        meta = SnapshotMeta(index=0, term=0, conf=conf)

        def write(txn: lmdb.Transaction, cache: _Cache) -> _Cache:
            txn.put(_SNAPSHOT_META_KEY, _encoder.encode(meta), db=self._state)
            return replace(cache, snapshot_meta=meta)

        self._write(write)
        self.sync()
