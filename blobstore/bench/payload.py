"""Object bodies with distinct content, sent from one reused buffer per worker.

A benchmark of a content-addressed, deduplicating store is worthless if objects repeat:
the store would write each segment once and answer the rest from its index. A client
that makes fresh random bytes for every object, on the other hand, measures its own
random number generator. So:

- A run makes ``size_bytes`` of random bytes once (:class:`PayloadSource`, from a seeded
  ``random.Random``, so a seed replays the same bodies), and each worker copies it into
  the one ``bytearray`` it owns for the whole run (:class:`WorkerPayload`).
- Before each PUT the worker stamps a tag unique to that object (:func:`make_tag`: run
  nonce, worker number, sequence number; 16 bytes) at offset 0 and at every
  ``STAMP_INTERVAL_BYTES`` (64 KiB) after it. Any block of 64 KiB aligned on 64 KiB (hence
  any segment a store cuts at such boundaries: ours cut at 4 MiB) holds the tag, so no
  block of one object equals a block of another; blocks within one object differ by the
  random bytes. An object smaller than the tag holds its first bytes only.
- The expected xxh3-64 of the stamped body is computed then (about 10 GB/s, cheap next
  to any network path), so a GET can check length and digest without keeping copies.

Invariant: a worker stamps its buffer only between its own requests, never while a PUT
of it is in flight (each worker runs one request at a time).
"""

from __future__ import annotations

import random
import struct

import xxhash

from blobstore.bench.units import KIB

STAMP_INTERVAL_BYTES = 64 * KIB
TAG_BYTES = 16
_TAG = struct.Struct(">QII")  # nonce (u64), worker (u32), sequence (u32)
assert _TAG.size == TAG_BYTES


def make_tag(nonce: int, worker: int, sequence: int) -> bytes:
    """The 16-byte tag of one object: unique per (run nonce, worker, sequence)."""
    return _TAG.pack(nonce & (2**64 - 1), worker & (2**32 - 1), sequence & (2**32 - 1))


def content_digest(data: bytes | bytearray | memoryview) -> int:
    """xxh3-64 of a body, as an int: what PUT records and GET compares."""
    return xxhash.xxh3_64_intdigest(data)


class PayloadSource:
    """``size_bytes`` random bytes made once per run; every worker buffer starts as a copy."""

    def __init__(self, size_bytes: int, rng: random.Random) -> None:
        if size_bytes < 0:
            raise ValueError(f"size_bytes must be >= 0, not {size_bytes}")
        self.size_bytes = size_bytes
        self._base = rng.randbytes(size_bytes)

    def worker_payload(self, interval_bytes: int = STAMP_INTERVAL_BYTES) -> WorkerPayload:
        return WorkerPayload(bytearray(self._base), interval_bytes)


class WorkerPayload:
    """One worker's reusable body: stamp a tag, send :attr:`view`, repeat."""

    def __init__(self, buffer: bytearray, interval_bytes: int = STAMP_INTERVAL_BYTES) -> None:
        if interval_bytes < TAG_BYTES:
            raise ValueError(f"interval_bytes must be >= {TAG_BYTES}, not {interval_bytes}")
        self._buffer = buffer
        self._interval_bytes = interval_bytes
        self.view = memoryview(buffer)

    @property
    def size_bytes(self) -> int:
        return len(self._buffer)

    def stamp(self, tag: bytes) -> int:
        """Write ``tag`` at every interval of the buffer; returns the body's xxh3-64."""
        assert len(tag) == TAG_BYTES, "tags are 16 bytes"
        buffer, size = self._buffer, len(self._buffer)
        for offset in range(0, size, self._interval_bytes):
            end = min(offset + TAG_BYTES, size)
            buffer[offset:end] = tag[: end - offset]
        return content_digest(self.view)

    def blocks(self) -> list[bytes]:
        """The body cut at every interval (copies; for tests and checks, not the hot path)."""
        return [bytes(self._buffer[offset:offset + self._interval_bytes])
                for offset in range(0, len(self._buffer), self._interval_bytes)]
