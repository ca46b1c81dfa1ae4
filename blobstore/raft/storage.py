"""The stable log as the core reads it (``Storage``) and an in-memory implementation.

The core only reads storage; the application writes it while handling a Ready (persist
snapshot, then entries, then hard state, then fsync) and when it compacts.

Rules of the Protocol (checked by tests/contract/test_raft_storage.py on every implementation):
- The log is a snapshot followed by entries ``first_index() .. last_index()``; the snapshot
  sits at ``first_index() - 1`` and ``term(first_index() - 1)`` is the snapshot's term.
  A fresh storage has an empty snapshot at index 0, term 0: ``first_index() == 1``,
  ``last_index() == 0``.
- ``entries(lo, hi, max_bytes)`` returns ``[lo, hi)``; with ``max_bytes`` it stops before the
  entry that would exceed it, but always returns at least one entry. ``lo < first_index()``
  raises Compacted; ``hi > last_index() + 1`` raises Unavailable.
- ``term(i)`` is valid for ``first_index() - 1 <= i <= last_index()``; below raises
  Compacted, above raises Unavailable.
- ``initial_state()`` returns the hard state and the configuration as of the snapshot (or any
  later applied index: the core replays CONF_CHANGE entries up to ``applied`` on start, and
  replaying is idempotent).

Writers (the application calls them, never the core):
- ``append(entries)``: entries are contiguous; the first may start anywhere in
  ``first_index() .. last_index() + 1``; everything from it on is replaced (a conflicting
  suffix is truncated). Entries below ``first_index()`` are ignored (already compacted).
- ``set_hard_state(hs)``.
- ``apply_snapshot(snap)``: replaces the whole log by the snapshot (refuses an older one).
- ``create_snapshot(index, conf, data)``: records the application's state at ``index``
  (``snapshot index <= index <= last_index()``); does not drop entries.
- ``compact(index)``: drops entries ``<= index``; requires ``index <= snapshot index`` so that
  a follower sent the snapshot can continue from the entries after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from blobstore.raft.errors import Compacted, Unavailable
from blobstore.raft.messages import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Snapshot,
    SnapshotMeta,
    entry_size_bytes,
)


class Storage(Protocol):
    """What the core reads of the stable log."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]: ...

    def term(self, index: int) -> int: ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """The longest prefix within ``max_bytes`` (at least one entry)."""
    if max_bytes is None or not entries:
        return entries
    total = 0
    for i, entry in enumerate(entries):
        total += entry_size_bytes(entry)
        if total > max_bytes and i > 0:
            return entries[:i]
    return entries


class MemoryStorage:
    """Storage in memory, with the application's writers.

    Invariant: ``self._entries[0]`` is a dummy entry at (snapshot index, snapshot term);
    ``self._entries[k].index == self._entries[0].index + k``.
    """

    def __init__(self, conf: ConfState | None = None) -> None:
        meta = SnapshotMeta(index=0, term=0, conf=conf or ConfState())
        self._snapshot = Snapshot(meta=meta, data=b"")
        self._hard_state = HardState()
        self._entries: list[Entry] = [Entry(term=0, index=0, kind=EntryKind.NOOP)]

    # -- reads (the Storage Protocol) --

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.meta.conf

    def first_index(self) -> int:
        return self._entries[0].index + 1

    def last_index(self) -> int:
        return self._entries[0].index + len(self._entries) - 1

    def term(self, index: int) -> int:
        offset = self._entries[0].index
        if index < offset:
            raise Compacted(f"index {index} < snapshot index {offset}")
        if index > self.last_index():
            raise Unavailable(f"index {index} > last index {self.last_index()}")
        return self._entries[index - offset].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise Compacted(f"entries from {lo}: first index is {offset + 1}")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries to {hi}: last index is {self.last_index()}")
        if lo >= hi:
            return []
        return limit_size(self._entries[lo - offset : hi - offset], max_bytes)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def hard_state(self) -> HardState:
        """The stored hard state (a convenience for tests and checkers)."""
        return self._hard_state

    # -- writers (the application) --

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = self.first_index()
        entries = [e for e in entries if e.index >= first]
        if not entries:
            return
        start = entries[0].index
        if start > self.last_index() + 1:
            raise ValueError(f"append at {start} leaves a gap after {self.last_index()}")
        for prev, cur in zip(entries, entries[1:], strict=False):
            if cur.index != prev.index + 1:
                raise ValueError("appended entries are not contiguous")
        offset = self._entries[0].index
        del self._entries[start - offset :]
        self._entries.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.meta.index < self._snapshot.meta.index:
            raise ValueError(
                f"snapshot at {snapshot.meta.index} is older than {self._snapshot.meta.index}"
            )
        self._snapshot = snapshot
        self._entries = [Entry(term=snapshot.meta.term, index=snapshot.meta.index,
                               kind=EntryKind.NOOP)]

    def create_snapshot(self, index: int, conf: ConfState, data: bytes) -> Snapshot:
        if index < self._snapshot.meta.index:
            raise ValueError(f"snapshot at {index} is older than {self._snapshot.meta.index}")
        if index > self.last_index():
            raise Unavailable(f"snapshot at {index} > last index {self.last_index()}")
        if index < self._entries[0].index:
            raise Compacted(f"snapshot at {index} is below the first index")
        meta = SnapshotMeta(index=index, term=self.term(index), conf=conf)
        self._snapshot = Snapshot(meta=meta, data=data)
        return self._snapshot

    def compact(self, index: int) -> None:
        offset = self._entries[0].index
        if index <= offset:
            raise Compacted(f"compact to {index}: already compacted to {offset}")
        if index > self._snapshot.meta.index:
            raise ValueError(f"compact to {index} beyond the snapshot at "
                             f"{self._snapshot.meta.index}")
        term = self.term(index)
        self._entries = [Entry(term=term, index=index, kind=EntryKind.NOOP),
                         *self._entries[index - offset + 1 :]]

    def clone(self) -> MemoryStorage:
        """An independent copy (entries are immutable, so a shallow list copy suffices)."""
        other = MemoryStorage()
        other._snapshot = self._snapshot
        other._hard_state = self._hard_state
        other._entries = list(self._entries)
        return other
