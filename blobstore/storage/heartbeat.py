"""Storage node -> meta heartbeat: capacity, use and shard count, once per interval.

Meta's failure detector marks a node suspect, then down, when its heartbeats stop, and the
placement of new shards weighs nodes by their free space; both read these beats. The body
is ``rpc.wire.StorageStatus``: ``{"node_id", "capacity_bytes", "used_bytes", "shard_count", "payload_bytes"}``
POSTed to ``/v1/heartbeat`` (docs/internal-api.md).

Rules:

- Each beat tries the meta nodes of the config in turn, starting with the one that
  answered last, until one accepts; any node may take it (heartbeats are soft state).
- Meta may not be up yet, or may be electing a leader: a failed beat is normal. It is
  logged at most once per ``warn_every_s`` (a flood of identical warnings hides the
  one that matters), and recovery is logged once.
- The loop never dies of an error: only cancellation (the app's shutdown) stops it.
- Bounded: one beat in flight, each attempt with a deadline of ``timeout_s``, beats
  ``interval_s`` apart start to start (a slow beat is followed at once by the next).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from blobstore.core.errors import BlobstoreError
from blobstore.rpc.client import RpcClient
from blobstore.rpc.wire import StorageStatus
from blobstore.runtime import metrics

log = logging.getLogger(__name__)
HEARTBEAT_PATH = "/v1/heartbeat"


@dataclass(frozen=True, slots=True)
class HeartbeatStatus:
    beats_sent: int
    beats_failed: int
    last_meta_address: str | None


class Heartbeat:
    """Sends ``collect()``'s status to the first meta node that takes it, every interval."""

    name = "heartbeat"

    def __init__(self, rpc: RpcClient, meta_addresses: Sequence[str],
                 collect: Callable[[], Awaitable[StorageStatus]], *, interval_s: float = 1.0,
                 timeout_s: float = 1.0, warn_every_s: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._rpc = rpc
        self._addresses = list(meta_addresses)
        self._collect = collect
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.warn_every_s = warn_every_s
        self._monotonic = monotonic
        self._preferred = 0
        self._sent = 0
        self._failed = 0
        self._last_warning_s: float | None = None
        self._failing = False

    def status(self) -> HeartbeatStatus:
        last = self._addresses[self._preferred] if self._sent and self._addresses else None
        return HeartbeatStatus(beats_sent=self._sent, beats_failed=self._failed,
                               last_meta_address=last)

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            started_s = self._monotonic()
            try:
                await self.run_once()
            except Exception as exc:  # never die: a broken beat must not stop the next one
                self._failed += 1
                self._maybe_warn("heartbeat failed: %r", exc, exc_info=True)
            elapsed_s = self._monotonic() - started_s
            await asyncio.sleep(max(0.0, self.interval_s - elapsed_s))

    async def run_once(self) -> bool:
        """One beat to every meta replica at once; True if at least one accepted it.

        Every replica keeps heartbeats as soft state, so that a newly elected leader
        already knows which nodes are up (else every node looks silent to it at first).
        """
        status = await self._collect()
        metrics.set_storage_usage(status.capacity_bytes, status.used_bytes, status.shard_count)
        metrics.set_scrub_progress(status.scrub_shards_checked, status.scrub_shards_total,
                                   status.scrub_passes_completed, status.scrub_corrupt_found,
                                   status.scrub_last_pass_completed_s)

        async def send(address: str) -> str | None:
            try:
                await self._rpc.request("POST", address, HEARTBEAT_PATH, body=status,
                                        timeout_s=self.timeout_s)
                return None
            except BlobstoreError as exc:
                return f"{address}: {exc.code} {exc.message}"

        answers = await asyncio.gather(*(send(address) for address in self._addresses))
        errors = [answer for answer in answers if answer is not None]
        accepted = [i for i, answer in enumerate(answers) if answer is None]
        if accepted:
            self._preferred = accepted[0]
            self._sent += 1
            if self._failing:
                log.info("heartbeat reaches meta again (%s)", self._addresses[accepted[0]])
                self._failing = False
            return True
        self._failed += 1
        self._failing = True
        self._maybe_warn("no meta node took the heartbeat: %s",
                         "; ".join(errors) or "no meta node configured")
        return False

    def _maybe_warn(self, message: str, *args: object, exc_info: bool = False) -> None:
        now_s = self._monotonic()
        if self._last_warning_s is None or now_s - self._last_warning_s >= self.warn_every_s:
            self._last_warning_s = now_s
            log.warning(message, *args, exc_info=exc_info)
