"""The event loop every long-running process uses: uvloop.

Measured on this project's own paths (blobstore bench against `blobstore up`, CPU per
request from /proc): 4 KiB PUT at c=32 went from 775-845 to 975-990 ops/s and the meta
replicas' CPU per commit fell by a fifth; 64 MiB GET from 396 to 435 MB/s. Nothing here
depends on asyncio internals, so the stock loop still works where uvloop cannot be had.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # pragma: no cover  (a dependency; only a broken install lacks it)
    uvloop = None  # type: ignore[assignment]


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop."""
    if uvloop is None:  # pragma: no cover
        return asyncio.run(main)
    send_http_head_and_body_without_joining()
    return uvloop.run(main)


def send_http_head_and_body_without_joining() -> None:
    """Let aiohttp hand the HTTP head and a body to the transport as two buffers.

    On Python before 3.12.9 aiohttp (3.12+) avoids ``transport.writelines`` because of
    CVE-2024-12254 in asyncio's selector transport, and instead joins the buffered head
    and the first body write into one new ``bytes``: a full copy of every shard the
    gateway sends and every shard a storage node serves. uvloop's own ``writelines``
    keeps references to the buffers (no copy) and pauses the protocol over the high-water
    mark, so the CVE does not apply to it. Call only where the loop is uvloop's.
    """
    from aiohttp import http_writer

    http_writer.SKIP_WRITELINES = False
