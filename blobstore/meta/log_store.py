"""The durable command log of one meta replica, in the ``log`` sub-db.

Entry ``index`` (1, 2, 3, ... with no gaps) holds the msgpack ``CommandEnvelope`` that was
applied at that index. The log lives in the same LMDB environment as the state, so the
single replica appends an entry and applies it in one transaction (``meta/service.py``).

Rules:

1. ``append`` only extends the log: the index must be ``last_index + 1``.
2. Entries at or below ``last_applied`` are needed only to rebuild the state elsewhere (a
   replay, and later a lagging Raft follower); ``compact`` deletes the oldest ones, a bounded
   number per call, to keep at most ``retain`` entries. The last entry is never deleted, so
   ``last_index`` never goes backwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import lmdb

from blobstore.meta import schema
from blobstore.meta.schema import Dbs

MAX_COMPACT_PER_CALL = 4


class LogOrderError(RuntimeError):
    """An append would leave a gap or overwrite an entry: a bug in the caller."""


class LogStore:
    """Append, read and compact the command log inside the caller's transactions."""

    def __init__(self, dbs: Dbs) -> None:
        self._db = dbs.log

    def last_index(self, txn: lmdb.Transaction) -> int:
        cursor = txn.cursor(self._db)
        return schema.read_u64(cursor.key()) if cursor.last() else 0

    def first_index(self, txn: lmdb.Transaction) -> int:
        cursor = txn.cursor(self._db)
        return schema.read_u64(cursor.key()) if cursor.first() else 0

    def append(self, txn: lmdb.Transaction, index: int, entry: bytes) -> None:
        last = self.last_index(txn)
        if last and index != last + 1:
            raise LogOrderError(f"append of entry {index} after {last}")
        txn.put(schema.u64(index), entry, db=self._db, overwrite=False)

    def entries(self, txn: lmdb.Transaction, after: int = 0) -> Iterator[tuple[int, bytes]]:
        """(index, entry) for every stored entry with index > after, in order."""
        cursor = txn.cursor(self._db)
        positioned = cursor.set_range(schema.u64(after + 1))
        while positioned:
            yield schema.read_u64(cursor.key()), cursor.value()
            positioned = cursor.next()

    def compact(self, txn: lmdb.Transaction, retain: int) -> int:
        """Delete up to MAX_COMPACT_PER_CALL of the oldest entries beyond ``retain``."""
        last = self.last_index(txn)
        keep_from = max(last - max(retain, 1) + 1, 1)
        cursor = txn.cursor(self._db)
        deleted = 0
        positioned = cursor.first()
        while positioned and deleted < MAX_COMPACT_PER_CALL:
            if schema.read_u64(cursor.key()) >= keep_from:
                break
            positioned = cursor.delete()
            deleted += 1
        return deleted
