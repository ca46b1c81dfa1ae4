"""The event loop every process runs on: uvloop, and aiohttp writes without copying bodies."""

from __future__ import annotations

import asyncio

from aiohttp.http_writer import StreamWriter
from multidict import CIMultiDict

from blobstore.runtime import eventloop


class _RecordingTransport:
    def __init__(self) -> None:
        self.buffers: list[object] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: object) -> None:
        self.buffers.append(data)

    def writelines(self, buffers: list[object]) -> None:
        self.buffers.extend(buffers)


class _Protocol:
    def __init__(self, transport: _RecordingTransport) -> None:
        self.transport = transport
        self._paused = False

    async def _drain_helper(self) -> None:
        return None


def test_an_http_body_reaches_the_transport_as_the_buffer_given_not_a_copy():
    shard = memoryview(bytearray(4 * 1024 * 1024))

    async def send() -> list[object]:
        transport = _RecordingTransport()
        writer = StreamWriter(_Protocol(transport), asyncio.get_running_loop())  # type: ignore[arg-type]
        writer.length = len(shard)
        await writer.write_headers("PUT /v1/shards/x HTTP/1.1",
                                   CIMultiDict({"Content-Length": str(len(shard))}))
        await writer.write(shard, drain=False)
        return transport.buffers

    buffers = eventloop.run(send())
    # The head and the shard as two buffers, the shard's memory itself: not one joined copy.
    assert len(buffers) == 2
    assert bytes(buffers[0]).startswith(b"PUT /v1/shards/x HTTP/1.1\r\n")  # type: ignore[call-overload]
    assert memoryview(buffers[1]).obj is shard.obj  # type: ignore[arg-type]
