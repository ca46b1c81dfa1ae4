"""The scrubber: walks every shard of this node at a bounded rate and re-verifies it.

Rules:
- One pass visits every shard in the index in shard-id order, reading it through
  ``ShardStore.get``, which checks the header and the payload's xxh3. A bad shard is
  quarantined by the store (never served again) and reported to meta, which queues the
  segment for repair.
- Reads are paced to ``rate_bytes_per_s`` (0 = as fast as the disk goes) so that scrubbing
  never starves foreground traffic, and slowed further while the machine's CPUs are busy
  (``runtime/cpu_load.py``; a paced scrub never stops, it only yields).
- A pass starts every ``interval_s`` (measured from the start of the previous pass), or at
  once when asked (``request_pass``: ``blobstore scrub``). Progress is kept in ``status()``
  and sent with the heartbeats.
- A shard deleted while the pass runs is skipped; a failure to report is retried on the
  next pass (the file is already quarantined, so the next inventory finds it missing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from blobstore.core.errors import BlobstoreError, Corrupt, NoSuchShard
from blobstore.core.ids import parse_shard_id
from blobstore.runtime import cpu_load
from blobstore.runtime.workers import Pacer
from blobstore.storage.shard_store import ShardStore

log = logging.getLogger(__name__)
PAGE_SIZE = 256
Report = Callable[[str, int, str], Awaitable[object]]  # (segment id, index, reason)
Call = Callable[..., Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ScrubStatus:
    passes_completed: int = 0
    pass_running: bool = False
    pass_started_s: float = 0.0  # wall clock
    last_pass_completed_s: float = 0.0
    shards_checked: int = 0  # in the current (or last) pass
    bytes_checked: int = 0
    corrupt_found: int = 0  # over the process lifetime
    shards_total: int = 0


class Scrubber:
    def __init__(self, store: ShardStore, call: Call, report: Report, *, interval_s: float,
                 rate_bytes_per_s: int) -> None:
        self.store = store
        self.call = call  # runs a blocking store call in the node's I/O pool
        self.report = report
        self.interval_s = interval_s
        self.rate_bytes_per_s = rate_bytes_per_s
        self._status = ScrubStatus()
        self._wake = asyncio.Event()

    def status(self) -> ScrubStatus:
        return self._status

    def request_pass(self) -> int:
        """Ask for a pass now; returns the pass count a waiter should see exceeded."""
        self._wake.set()
        return self._status.passes_completed + (1 if self._status.pass_running else 0)

    async def run(self) -> None:
        next_pass = time.monotonic() + self.interval_s
        while True:
            timeout = max(0.0, next_pass - time.monotonic())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._wake.clear()
            next_pass = time.monotonic() + self.interval_s
            try:
                await self.run_once()
            except BlobstoreError as exc:
                log.warning("scrub pass failed: %s; retrying in 10 s", exc)
                self._status = replace(self._status, pass_running=False)
                next_pass = time.monotonic() + 10

    async def run_once(self) -> ScrubStatus:
        """One full pass over every shard; returns the status at its end."""
        stats = await self.call(self.store.stats)
        self._status = replace(self._status, pass_running=True, pass_started_s=time.time(),
                               shards_checked=0, bytes_checked=0,
                               shards_total=stats.shard_count)
        pacer = Pacer(self.rate_bytes_per_s, share=cpu_load.MACHINE.background_share)
        after = ""
        while True:
            page, after_next = await self.call(self.store.list, after, PAGE_SIZE)
            for info in page:
                checked = self._status.bytes_checked
                await self._check(info.shard_id)
                await pacer.consume(self._status.bytes_checked - checked)
            if after_next is None:
                break
            after = after_next
        self._status = replace(self._status, pass_running=False,
                               passes_completed=self._status.passes_completed + 1,
                               last_pass_completed_s=time.time())
        log.info("scrub pass done: %d shards, %d bytes, %d corrupt so far",
                 self._status.shards_checked, self._status.bytes_checked,
                 self._status.corrupt_found)
        return self._status

    async def _check(self, shard_id: str) -> None:
        try:
            header, _payload = await self.call(self.store.get, shard_id)
            size = header.payload_length
        except NoSuchShard:
            return
        except Corrupt as exc:
            size = 0
            self._status = replace(self._status, corrupt_found=self._status.corrupt_found + 1)
            log.warning("scrub: shard %s is corrupt (%s); quarantined", shard_id, exc.message)
            segment_id, index = parse_shard_id(shard_id)
            try:
                await self.report(segment_id, index, f"scrub: {exc.message}")
            except BlobstoreError as report_error:
                log.warning("scrub: could not report %s: %s", shard_id, report_error)
        self._status = replace(self._status, shards_checked=self._status.shards_checked + 1,
                               bytes_checked=self._status.bytes_checked + size)

