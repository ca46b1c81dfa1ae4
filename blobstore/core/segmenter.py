"""Incremental cutter: feed body chunks, get whole segments of ``segment_size_bytes``.

The buffer never holds more than one segment plus one incoming chunk, which is what
bounds the gateway's memory per request (DESIGN.md principle 3).
"""

from __future__ import annotations

from blobstore.core.errors import Invalid

Buffer = bytes | bytearray | memoryview


class Segmenter:
    def __init__(self, segment_size_bytes: int) -> None:
        if segment_size_bytes <= 0:
            raise Invalid("segment size must be positive")
        self.segment_size_bytes = segment_size_bytes
        self._buffer = bytearray()
        self.offset = 0  # offset in the object of the first byte in the buffer

    def feed(self, chunk: Buffer) -> list[tuple[int, bytes]]:
        """Add a chunk; return the (offset, segment) pairs it completed."""
        self._buffer += chunk
        out: list[tuple[int, bytes]] = []
        size = self.segment_size_bytes
        while len(self._buffer) >= size:
            out.append((self.offset, bytes(self._buffer[:size])))
            del self._buffer[:size]
            self.offset += size
        return out

    def finish(self) -> list[tuple[int, bytes]]:
        """The last, short segment if any bytes remain."""
        if not self._buffer:
            return []
        out = [(self.offset, bytes(self._buffer))]
        self.offset += len(self._buffer)
        self._buffer = bytearray()
        return out
