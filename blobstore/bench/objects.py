"""The objects a benchmark run wrote and may read or delete: key, size and expected digest.

A GET phase needs objects that exist and whose content it knows, so it can read every
byte and check it. They come either from a preceding PUT phase of the same run or from an
untimed populate step; both append :class:`ObjectRef` values here. A DELETE phase takes
them out (each object is deleted once). Single-threaded (one asyncio loop), so no locks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object as its writer knows it: ``xxh3`` is the xxh3-64 of its exact body."""

    key: str
    size_bytes: int
    xxh3: int


class ObjectSet:
    """An ordered collection of :class:`ObjectRef`; random picks come from the caller's rng."""

    def __init__(self, refs: list[ObjectRef] | None = None) -> None:
        self._refs: list[ObjectRef] = list(refs or [])

    def __len__(self) -> int:
        return len(self._refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(list(self._refs))

    def add(self, ref: ObjectRef) -> None:
        self._refs.append(ref)

    def pick(self, rng: random.Random) -> ObjectRef | None:
        """A uniformly chosen object, or None when the set is empty."""
        return self._refs[rng.randrange(len(self._refs))] if self._refs else None

    def pop(self) -> ObjectRef | None:
        """Take the most recently added object out (DELETE uses each object once)."""
        return self._refs.pop() if self._refs else None

    def remove(self, ref: ObjectRef) -> None:
        self._refs.remove(ref)

    def of_size(self, size_bytes: int) -> ObjectSet:
        """The objects of one size (a matrix reads back what its PUT cell wrote)."""
        return ObjectSet([ref for ref in self._refs if ref.size_bytes == size_bytes])
