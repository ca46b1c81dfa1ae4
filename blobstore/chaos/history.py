"""The record of every operation of a chaos run, and the checker of reads against it.

Each key has a history of writes (a PUT of generation g, or a DELETE) with the monotonic
times they were invoked and completed, and whether they were acknowledged (2xx), failed
for certain (a 4xx other than a conflict: nothing changed) or ended unknown (5xx, timeout,
connection lost: they may or may not have taken effect).

A read of a key that started at ``start`` and ended at ``end`` may legally return:
- the value of the last write acknowledged before ``start`` (or "absent" if none);
- the value of any write that overlaps the read or came later but started before ``end``;
- the value of any write with an unknown outcome that started before ``end``, even one
  that completed before the last acknowledged write, is NOT legal if an acknowledged write
  completed after it and before ``start`` (linearizability per key: the acknowledged write
  replaced it).
Anything else is a wrong read. "Lost" is the final check: after all faults are healed, a
key whose last acknowledged write is followed by no unknown write must read back exactly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

ABSENT = -1  # the "generation" of a deleted or never written key


@dataclass
class Write:
    generation: int  # ABSENT for a delete
    size: int
    invoked: float
    completed: float | None = None
    outcome: str = "pending"  # pending | ok | failed | unknown


@dataclass
class KeyHistory:
    writes: list[Write] = field(default_factory=list)


class History:
    """Thread-safe: workers record; the checker reads."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyHistory] = {}
        self._lock = threading.Lock()
        self.wrong_reads: list[str] = []
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def begin_write(self, key: str, generation: int, size: int, now: float) -> Write:
        write = Write(generation, size, now)
        with self._lock:
            self._keys.setdefault(key, KeyHistory()).writes.append(write)
        return write

    def end_write(self, write: Write, outcome: str, now: float) -> None:
        with self._lock:
            write.completed = now
            write.outcome = outcome

    def count(self, kind: str, error: str | None = None) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if error is not None:
                self.errors[error] = self.errors.get(error, 0) + 1

    def legal_generations(self, key: str, start: float, end: float) -> set[int]:
        """What a read invoked at ``start`` and answered at ``end`` may return (per-key
        linearizability; an unknown write may take effect any time after its invocation)."""
        with self._lock:
            writes = list(self._keys.get(key, KeyHistory()).writes)
        done = [w for w in writes if w.outcome == "ok" and w.completed is not None
                and w.completed < start]
        legal: set[int] = set()
        if not done:
            legal.add(ABSENT)
        for write in done:
            superseded = any(other.invoked > write.completed and other.completed < start
                             for other in done if other is not write)  # type: ignore[operator]
            if not superseded:
                legal.add(write.generation)
        for write in writes:
            if write.invoked > end or write.outcome == "failed":
                continue
            if write.outcome in ("unknown", "pending") or write.completed is None \
                    or write.completed >= start:
                legal.add(write.generation)
        return legal

    def check_read(self, key: str, start: float, end: float, candidates: set[int],
                   detail: str) -> bool:
        """Record a wrong read unless one of the generations whose exact bytes were read
        (``{ABSENT}`` for a 404; several for tiny bodies that many writes share) is legal."""
        legal = self.legal_generations(key, start, end)
        if candidates & legal:
            return True
        with self._lock:
            self.wrong_reads.append(
                f"{key}: read {sorted(candidates)[:5]} ({detail}), legal {sorted(legal)}")
        return False

    def writes_of(self, key: str) -> list[Write]:
        with self._lock:
            return list(self._keys.get(key, KeyHistory()).writes)

    def size_of(self, key: str, generation: int) -> int | None:
        for write in self.writes_of(key):
            if write.generation == generation:
                return write.size
        return None

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._keys)

    def final_expectation(self, key: str) -> tuple[set[int], bool]:
        """(legal generations once everything has settled, whether exactly one is legal:
        then any other answer means an acknowledged write was lost)."""
        legal = self.legal_generations(key, float("inf"), float("inf"))
        return legal, len(legal) == 1
