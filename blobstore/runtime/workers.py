"""Background workers: one loop shape for every daemon, and a byte-rate pacer.

A ``PeriodicWorker`` subclass implements ``run_once()`` (one full pass, callable directly by
tests and operators) and gets:

- ``run()``: a pass every ``interval_s`` (start to start), or at once after ``wake()``;
- errors never end the loop: a failed pass is logged with the worker's name (with the
  traceback when it is not one of our typed errors, i.e. a bug) and retried after
  ``retry_s``; only cancellation (the app's shutdown) stops it;
- ``status()``: an immutable snapshot (passes, running, last error, the subclass's counters).

``Pacer`` spreads byte counts over time so that a background job never takes more than
``rate_bytes_per_s`` of the disk or network (0 = unpaced); concurrent users of one pacer
share its rate: each reserves the next slot of a virtual clock and sleeps until it is at
most ``burst_s`` ahead of real time (a token bucket of ``burst_s`` worth of bytes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from blobstore.core.errors import BlobstoreError
from blobstore.runtime import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    name: str
    running: bool
    passes_completed: int
    last_pass_completed_s: float  # wall clock
    last_error: str
    counters: dict[str, int] = field(default_factory=dict)


class PeriodicWorker:
    """Base of the storage node's healing daemons (see the module docstring)."""

    name = "worker"

    def __init__(self, interval_s: float, retry_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self.retry_s = retry_s
        self.counters: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._running = False
        self._passes = 0
        self._last_pass_s = 0.0
        self._last_error = ""

    def wake(self) -> None:
        """Start a pass now (or right after the one running)."""
        self._wake.set()

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount
        metrics.count_worker_event(self.name, name, amount)

    def status(self) -> WorkerSnapshot:
        return WorkerSnapshot(name=self.name, running=self._running,
                              passes_completed=self._passes,
                              last_pass_completed_s=self._last_pass_s,
                              last_error=self._last_error, counters=dict(self.counters))

    async def run_once(self) -> None:
        raise NotImplementedError

    async def run(self, first_delay_s: float | None = None) -> None:
        delay = self.interval_s if first_delay_s is None else first_delay_s
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self._wake.clear()
            started = time.monotonic()
            delay = await self._one_pass()
            if delay is None:
                delay = max(0.0, self.interval_s - (time.monotonic() - started))

    async def _one_pass(self) -> float | None:
        """Run a pass; the delay before the next one after a failure, else None."""
        self._running = True
        try:
            await self.run_once()
        except BlobstoreError as exc:
            self._last_error = f"{exc.code}: {exc.message}"
            log.warning("%s pass failed: %s; retrying in %g s", self.name, self._last_error,
                        self.retry_s)
            return self.retry_s
        except Exception as exc:  # a bug: keep the traceback, keep the daemon
            self._last_error = repr(exc)
            log.exception("%s pass crashed; retrying in %g s", self.name, self.retry_s)
            return self.retry_s
        finally:
            self._running = False
        self._passes += 1
        self._last_pass_s = time.time()
        self._last_error = ""
        return None


class Pacer:
    """Limits a byte stream to ``rate_bytes_per_s`` (0 = no limit); see the docstring."""

    def __init__(self, rate_bytes_per_s: float, *, burst_s: float = 0.2,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 share: Callable[[], float] = lambda: 1.0) -> None:
        self.rate_bytes_per_s = rate_bytes_per_s
        self.share = share  # fraction of the rate allowed now (runtime/cpu_load.py)
        self.burst_s = burst_s
        self._monotonic = monotonic
        self._sleep = sleep
        self._next_free_s = 0.0

    async def consume(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more fit in the rate (returns at once when unpaced)."""
        if self.rate_bytes_per_s <= 0 or nbytes <= 0:
            return
        now = self._monotonic()
        rate = self.rate_bytes_per_s * max(self.share(), 0.01)
        self._next_free_s = max(self._next_free_s, now) + nbytes / rate
        delay = self._next_free_s - now - self.burst_s  # up to burst_s of credit runs ahead
        if delay > 0:
            await self._sleep(delay)
