"""Admission control: under overload, shed the excess with 503 SlowDown quickly instead of
letting every request queue until it times out.

Two bounded pools of slots: every S3 request takes one of ``max_requests``; requests that
carry a body to store (PutObject, UploadPart) also take one of ``max_writes``, since each
holds up to a few segments of memory while it is encoded and written. A request waits at
most ``queue_wait_s`` for its slots; if none frees up it is answered ``SlowDown`` at once,
so a burst of ten times the usual concurrency gets its excess refused within a second and
the store recovers as soon as the burst ends (nothing is left queued).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from blobstore.core.s3.errors import SlowDown

DEFAULT_MAX_REQUESTS = 256
DEFAULT_MAX_WRITES = 48
DEFAULT_QUEUE_WAIT_S = 0.5


@dataclass
class Admission:
    max_requests: int = DEFAULT_MAX_REQUESTS
    max_writes: int = DEFAULT_MAX_WRITES
    queue_wait_s: float = DEFAULT_QUEUE_WAIT_S
    shed: int = 0  # requests refused so far

    def __post_init__(self) -> None:
        self._requests = asyncio.Semaphore(self.max_requests)
        self._writes = asyncio.Semaphore(self.max_writes)

    async def _take(self, semaphore: asyncio.Semaphore) -> None:
        try:
            await asyncio.wait_for(semaphore.acquire(), self.queue_wait_s)
        except TimeoutError:
            self.shed += 1
            raise SlowDown("Please reduce your request rate.") from None

    @contextlib.asynccontextmanager
    async def admit(self, writes_body: bool) -> AsyncIterator[None]:
        await self._take(self._requests)
        try:
            if writes_body:
                await self._take(self._writes)
            try:
                yield
            finally:
                if writes_body:
                    self._writes.release()
        finally:
            self._requests.release()
