"""An ordered, seekable scan of one bucket's objects in S3 key order.

The ``objects`` sub-db (``meta/schema.py``) stores short keys as ``bucket NUL key`` and long
ones truncated + hashed, so LMDB's order is the listing order except inside a "group" of long
keys sharing their first ``INLINE_KEY_BYTES`` bytes. This scan hides that: it reads a group
whole, sorts it by the full key (kept in the value) and yields it in order.

Rules:

1. ``next()`` yields summaries whose full key (``bucket NUL key`` in UTF-8) is >= the floor
   set by the last ``seek``, in strictly increasing key order, and None at the bucket's end.
2. ``seek(full)`` may go forwards (skipping a common prefix) or backwards; it lands on the
   stored key that starts the run of keys >= ``full`` (the truncated prefix for a long
   target, since the hash suffix says nothing about order) and filters below the floor.
"""

from __future__ import annotations

from collections import deque

import lmdb

from blobstore.core.records import ObjectSummary
from blobstore.meta import schema


class ObjectScan:
    """Summaries of one bucket's objects in key order, from any LMDB transaction."""

    def __init__(self, txn: lmdb.Transaction, db: lmdb._Database, bucket: str) -> None:
        self._cursor = txn.cursor(db)
        self._head = schema.object_head(bucket)
        self._bucket = bucket
        self._floor = self._head
        self._pending: deque[tuple[bytes, ObjectSummary]] = deque()
        self._positioned = False
        self.seek(self._head)

    def seek(self, full: bytes) -> None:
        """Continue from the first object whose full key is >= ``full``."""
        self._floor = max(full, self._head)
        self._pending.clear()
        self._positioned = self._cursor.set_range(schema.object_seek_key(self._floor))

    def seek_key(self, key: str) -> None:
        self.seek(schema.object_full_key(self._bucket, key))

    def next(self) -> ObjectSummary | None:
        while True:
            if self._pending:
                full, summary = self._pending.popleft()
                if full >= self._floor:
                    return summary
                continue
            if not self._positioned:
                return None
            stored = self._cursor.key()
            if not stored.startswith(self._head):
                self._positioned = False
                return None
            if schema.is_hashed_object_key(stored):
                self._pending.extend(self._read_group(stored[:schema.INLINE_KEY_BYTES]))
                continue
            summary = schema.decode(ObjectSummary, self._cursor.value())
            self._positioned = self._cursor.next()
            if stored >= self._floor:
                return summary

    def _read_group(self, group_prefix: bytes) -> list[tuple[bytes, ObjectSummary]]:
        """Every long key stored under ``group_prefix``, sorted by full key."""
        group: list[tuple[bytes, ObjectSummary]] = []
        while self._positioned:
            stored = self._cursor.key()
            if not (schema.is_hashed_object_key(stored) and stored.startswith(group_prefix)):
                break
            summary = schema.decode(ObjectSummary, self._cursor.value())
            group.append((self._head + summary.key.encode("utf-8"), summary))
            self._positioned = self._cursor.next()
        group.sort(key=lambda item: item[0])
        return group
