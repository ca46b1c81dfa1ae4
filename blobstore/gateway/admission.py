"""Admission control: under overload, shed the excess with 503 SlowDown quickly instead of
letting every request queue until it times out.

Two bounded pools of slots: every S3 request takes one of ``max_requests``; requests that
carry a body to store (PutObject, UploadPart) also take one of ``max_writes``, since each
holds up to a few segments of memory while it is encoded and written. A request waits at
most ``queue_wait_s`` for its slots, and only a quarter of a pool's slots' worth of
requests (``QUEUED_PER_SLOT``) wait at once: a request that finds the queue full is
answered ``SlowDown`` without waiting at all. So a burst of ten times the usual
concurrency gets most of its excess refused at once and the rest within
``queue_wait_s``, however slow the requests being served are, and the store recovers as
soon as the burst ends (nothing is left queued).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from blobstore.core.s3.errors import SlowDown

DEFAULT_MAX_REQUESTS = 256
DEFAULT_MAX_WRITES = 48
# How long a queued request may wait for a slot. The promise is a SlowDown within a second;
# on a loaded 2-core machine the client and the scheduler can add as much again as this
# wait (a chaos burst under a killed meta leader and throttled links saw 1.01 s at 0.5 s).
DEFAULT_QUEUE_WAIT_S = 0.25
# Waiting requests per pool, as a fraction of its slots: enough to absorb a short blip
# without refusing anyone, few enough that a burst is refused instead of queued.
QUEUED_PER_SLOT = 0.25


@dataclass
class Admission:
    max_requests: int = DEFAULT_MAX_REQUESTS
    max_writes: int = DEFAULT_MAX_WRITES
    queue_wait_s: float = DEFAULT_QUEUE_WAIT_S
    shed: int = 0  # requests refused so far

    def __post_init__(self) -> None:
        self._requests = _Pool(self.max_requests)
        self._writes = _Pool(self.max_writes)

    async def _take(self, pool: _Pool) -> None:
        if not pool.semaphore.locked():
            await pool.semaphore.acquire()  # a free slot: returns without suspending
            return
        if pool.waiting >= pool.max_waiting:
            self.shed += 1
            raise SlowDown("Please reduce your request rate.")
        pool.waiting += 1
        try:
            await asyncio.wait_for(pool.semaphore.acquire(), self.queue_wait_s)
        except TimeoutError:
            self.shed += 1
            raise SlowDown("Please reduce your request rate.") from None
        finally:
            pool.waiting -= 1

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
                    self._writes.semaphore.release()
        finally:
            self._requests.semaphore.release()


class _Pool:
    def __init__(self, slots: int) -> None:
        self.semaphore = asyncio.Semaphore(slots)
        self.max_waiting = max(1, int(slots * QUEUED_PER_SLOT))
        self.waiting = 0
