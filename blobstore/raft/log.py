"""RaftLog: the stable storage plus the unstable tail the application has not persisted yet.

Layout of the log as the core sees it::

    storage:   [snapshot] first_index ............ last_index
    unstable:            [snapshot?]     offset ............ offset+len-1

Entries at ``offset`` and above come from ``unstable`` and override storage (storage still
holds a suffix that the next ``append`` will truncate). A pending unstable snapshot replaces
everything: the log is then that snapshot plus the unstable entries after it.

Invariants (``check_invariants`` asserts them; the simulator calls it):
- ``applied <= committed <= last_index()``; ``committed`` never decreases.
- ``first_index() - 1 <= applied`` (the application restores a snapshot before applying on).
- An entry at or below ``committed`` is never truncated (``append`` asserts it).
- ``unstable.offset <= storage.last_index() + 1``, ``unstable.offset >= storage.first_index()``
  unless an unstable snapshot is pending.
"""

from __future__ import annotations

from blobstore.raft.errors import Compacted, Unavailable
from blobstore.raft.messages import Entry, Snapshot
from blobstore.raft.storage import Storage, limit_size


class Unstable:
    """Entries and a snapshot that the application has not yet persisted."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.entries: list[Entry] = []
        self.snapshot: Snapshot | None = None

    def maybe_term(self, index: int) -> int | None:
        if self.entries and self.offset <= index < self.offset + len(self.entries):
            return self.entries[index - self.offset].term
        if self.snapshot is not None and index == self.snapshot.meta.index:
            return self.snapshot.meta.term
        return None

    def last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.meta.index
        return None

    def truncate_and_append(self, entries: list[Entry]) -> None:
        after = entries[0].index - 1
        if after == self.offset + len(self.entries) - 1:
            self.entries.extend(entries)
        elif after < self.offset:
            self.offset = after + 1
            self.entries = list(entries)
        else:
            self.entries = self.entries[: after + 1 - self.offset] + list(entries)

    def stable_to(self, index: int, term: int) -> None:
        if self.maybe_term(index) != term or index < self.offset:
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.meta.index + 1
        self.entries = []
        self.snapshot = snapshot


class RaftLog:
    """The log the core reasons about: storage + unstable, with commit and apply points."""

    def __init__(self, storage: Storage, max_applying_bytes: int) -> None:
        self.storage = storage
        self.unstable = Unstable(storage.last_index() + 1)
        first = storage.first_index()
        self.committed = first - 1
        self.applied = first - 1
        self.max_applying_bytes = max_applying_bytes

    # -- positions --

    def first_index(self) -> int:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot.meta.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        last = self.unstable.last_index()
        return last if last is not None else self.storage.last_index()

    def term(self, index: int) -> int:
        """Term of ``index``; raises Compacted / Unavailable outside ``first-1 .. last``."""
        term = self.unstable.maybe_term(index)
        if term is not None:
            return term
        if index < self.first_index() - 1:
            raise Compacted(f"index {index} is compacted")
        if index > self.last_index():
            raise Unavailable(f"index {index} > last index {self.last_index()}")
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        """Term of ``index``, or 0 when it is compacted or not there."""
        try:
            return self.term(index)
        except (Compacted, Unavailable):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (Compacted, Unavailable):
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up to date as ours."""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    # -- reading entries --

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)`` from storage and unstable; Compacted below first_index."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise Compacted(f"entries from {lo}: first index is {self.first_index()}")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries to {hi}: last index is {self.last_index()}")
        result: list[Entry] = []
        offset = self.unstable.offset
        if lo < offset:
            result = self.storage.entries(lo, min(hi, offset), max_bytes)
            if len(result) < min(hi, offset) - lo:
                return result
        if hi > offset:
            start = max(lo, offset)
            result = result + self.unstable.entries[start - offset : hi - offset]
        return limit_size(result, max_bytes)

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry that is not in the log (0 if all are)."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= ``index`` whose term is <= ``term``, and that term.

        Used for fast backtracking: no index between the answer and ``index`` can match an
        entry of ``term`` or earlier. Returns (index, 0) if terms are unknown below.
        """
        while index > 0:
            try:
                ours = self.term(index)
            except (Compacted, Unavailable):
                return index, 0
            if ours <= term:
                return index, ours
            index -= 1
        return 0, 0

    # -- changing the log --

    def append(self, entries: list[Entry]) -> int:
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        assert after >= self.committed, f"truncating committed entry {after + 1}"
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """Append a leader's entries after (index, log_term) if that entry matches.

        Returns the last index known to match the leader, or None on mismatch.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            assert conflict > self.committed, f"conflict at committed index {conflict}"
            self.append(list(entries[conflict - index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        assert index <= self.last_index(), f"commit {index} > last index {self.last_index()}"
        self.committed = index
        return True

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit ``index`` if it is of ``term`` (only current-term entries are counted)."""
        if index > self.committed and self.term_or_zero(index) == term:
            return self.commit_to(index)
        return False

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.meta.index
        self.unstable.restore(snapshot)

    # -- the application's progress --

    def has_next_committed_entries(self) -> bool:
        if self.unstable.snapshot is not None:
            return False
        return self.committed > self.applied

    def next_committed_entries(self) -> list[Entry]:
        if not self.has_next_committed_entries():
            return []
        lo = max(self.applied + 1, self.first_index())
        return self.entries(lo, self.committed + 1, self.max_applying_bytes)

    def applied_to(self, index: int) -> None:
        assert self.applied <= index <= self.committed, (self.applied, index, self.committed)
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snapshot_to(self, index: int) -> None:
        snap = self.unstable.snapshot
        if snap is not None and snap.meta.index == index:
            self.unstable.snapshot = None

    def check_invariants(self) -> None:
        assert self.applied <= self.committed <= self.last_index(), (
            self.applied, self.committed, self.last_index())
        assert self.first_index() - 1 <= self.applied or self.unstable.snapshot is not None
