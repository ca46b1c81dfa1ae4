"""LMDB index of the shards one storage node holds: listing, HEAD and stats without the disk walk.

The shard FILES are the truth; this index is a cache of them that can always be rebuilt
(``ShardStore.reconcile``). That is why it may lag by one transaction after a crash and why
the environment runs with ``metasync=False`` (LMDB keeps its integrity and may only lose
the last commit on power loss, which reconcile repairs), saving one fsync per write.

Sub-databases of ``data_dir/index.lmdb``:

- ``shards``: key = shard id (ASCII, so LMDB's byte order is shard-id order), value =
  ``struct "<BQQQBBq"``: row version (1), payload length, payload xxh3-64, segment length,
  data shards, parity shards, file mtime in ns.
- ``totals``: ``b"payload_bytes"`` = u64 sum of the payload lengths of all rows, updated in
  the same transaction as the rows. Invariant: it equals the sum over ``shards``.

Every method opens and closes its own short transaction, so any thread may call any
method; LMDB serialises writers and gives readers a snapshot.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import lmdb

from blobstore.core.errors import Corrupt, InsufficientStorage
from blobstore.rpc.wire import ShardInfo

_ROW = struct.Struct("<BQQQBBq")
_ROW_VERSION = 1
_U64 = struct.Struct("<Q")
_PAYLOAD_BYTES_KEY = b"payload_bytes"
GIB = 1024 * 1024 * 1024


def encode_row(info: ShardInfo) -> bytes:
    return _ROW.pack(_ROW_VERSION, info.payload_length, int(info.xxh3, 16),
                     info.segment_length, info.data_shards, info.parity_shards, info.mtime_ns)


def decode_row(shard_id: str, row: bytes) -> ShardInfo:
    if len(row) != _ROW.size or row[0] != _ROW_VERSION:
        raise Corrupt(f"index row of {shard_id} is unreadable")
    _, payload_length, xxh3, segment_length, data_shards, parity_shards, mtime_ns = (
        _ROW.unpack(row))
    return ShardInfo(shard_id=shard_id, payload_length=payload_length, xxh3=f"{xxh3:016x}",
                     segment_length=segment_length, data_shards=data_shards,
                     parity_shards=parity_shards, mtime_ns=mtime_ns)


class ShardIndex:
    """Shard id -> ShardInfo, ordered by shard id, with a running payload-bytes total."""

    def __init__(self, path: str | Path, *, map_size_bytes: int = 4 * GIB) -> None:
        self._env = lmdb.open(str(path), subdir=True, map_size=map_size_bytes, max_dbs=4,
                              metasync=False, sync=True, readahead=False, meminit=False)
        self._shards = self._env.open_db(b"shards")
        self._totals = self._env.open_db(b"totals")

    def close(self) -> None:
        self._env.close()

    def get(self, shard_id: str) -> ShardInfo | None:
        with self._env.begin(db=self._shards) as txn:
            row = txn.get(shard_id.encode())
        return None if row is None else decode_row(shard_id, row)

    def put(self, info: ShardInfo) -> None:
        self.apply(puts=[info], drops=())

    def drop(self, shard_id: str) -> bool:
        """Remove one row; True if it was there."""
        return self.apply(puts=(), drops=[shard_id]) > 0

    def apply(self, *, puts: Iterable[ShardInfo], drops: Iterable[str]) -> int:
        """Upsert ``puts`` and remove ``drops`` in one transaction; returns rows removed."""
        try:
            with self._env.begin(write=True) as txn:
                total = _read_u64(txn.get(_PAYLOAD_BYTES_KEY, db=self._totals))
                removed = 0
                changed = False
                for info in puts:
                    old = txn.get(info.shard_id.encode(), db=self._shards)
                    if old is not None:
                        total -= decode_row(info.shard_id, old).payload_length
                    txn.put(info.shard_id.encode(), encode_row(info), db=self._shards)
                    total += info.payload_length
                    changed = True
                for shard_id in drops:
                    old = txn.pop(shard_id.encode(), db=self._shards)
                    if old is not None:
                        total -= decode_row(shard_id, old).payload_length
                        removed += 1
                        changed = True
                if changed:  # an untouched write transaction commits without any I/O
                    txn.put(_PAYLOAD_BYTES_KEY, _U64.pack(max(total, 0)), db=self._totals)
                return removed
        except lmdb.MapFullError as exc:
            raise InsufficientStorage("the shard index is full (raise index_map_size_bytes)") \
                from exc

    def page(self, after: str, limit: int) -> list[ShardInfo]:
        """Up to ``limit`` rows with shard id > ``after``, in shard-id order."""
        out: list[ShardInfo] = []
        with self._env.begin(db=self._shards) as txn:
            cursor = txn.cursor()
            found = cursor.set_range(after.encode())
            while found and len(out) < limit:
                key, row = cursor.item()
                shard_id = bytes(key).decode()
                if shard_id != after:
                    out.append(decode_row(shard_id, bytes(row)))
                found = cursor.next()
        return out

    def ids_after(self, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` shard ids > ``after`` (all ids when ``after`` is None), in order."""
        out: list[str] = []
        with self._env.begin(db=self._shards) as txn:
            cursor = txn.cursor()
            found = cursor.set_range(after.encode()) if after is not None else cursor.first()
            while found and len(out) < limit:
                shard_id = bytes(cursor.key()).decode()
                if shard_id != after:
                    out.append(shard_id)
                found = cursor.next()
        return out

    def count(self) -> int:
        with self._env.begin(db=self._shards) as txn:
            return int(txn.stat(self._shards)["entries"])

    def payload_bytes(self) -> int:
        with self._env.begin(db=self._totals) as txn:
            return _read_u64(txn.get(_PAYLOAD_BYTES_KEY))


def _read_u64(value: bytes | None) -> int:
    return 0 if value is None else int(_U64.unpack(value)[0])
