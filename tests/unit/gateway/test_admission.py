"""Admission control sheds a burst: the queue is bounded, so the excess is refused at once
and only the few queued requests wait (at most ``queue_wait_s``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from blobstore.core.s3.errors import SlowDown
from blobstore.gateway.admission import Admission


async def _hold(admission: Admission, release: asyncio.Event, writes_body: bool = False) -> None:
    async with admission.admit(writes_body):
        await release.wait()


async def _try(admission: Admission, writes_body: bool = False) -> tuple[str, float]:
    started = time.monotonic()
    try:
        async with admission.admit(writes_body):
            return "admitted", time.monotonic() - started
    except SlowDown:
        return "SlowDown", time.monotonic() - started


def test_full_queue_refuses_at_once_and_queued_wait_is_bounded() -> None:
    async def scenario() -> None:
        admission = Admission(max_requests=8, max_writes=4, queue_wait_s=0.3)
        release = asyncio.Event()
        holders = [asyncio.create_task(_hold(admission, release)) for _ in range(8)]
        await asyncio.sleep(0.01)
        # 8 slots busy: two may queue (a quarter of the slots), the rest are refused.
        outcomes = await asyncio.gather(*(_try(admission) for _ in range(10)))
        refused_at_once = [t for o, t in outcomes if o == "SlowDown" and t < 0.1]
        refused_after_wait = [t for o, t in outcomes if o == "SlowDown" and t >= 0.1]
        assert len(refused_at_once) == 8
        assert len(refused_after_wait) == 2
        assert all(t < 0.3 + 0.2 for t in refused_after_wait)
        assert admission.shed == 10
        release.set()
        await asyncio.gather(*holders)
        # Nothing is left queued: once the burst ends everyone is admitted again.
        assert all(o == "admitted" for o, _ in await asyncio.gather(
            *(_try(admission) for _ in range(8))))

    asyncio.run(scenario())


def test_a_queued_request_gets_the_slot_that_frees_up() -> None:
    async def scenario() -> None:
        admission = Admission(max_requests=4, max_writes=2, queue_wait_s=2.0)
        release = asyncio.Event()
        holders = [asyncio.create_task(_hold(admission, release)) for _ in range(4)]
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(_try(admission))
        await asyncio.sleep(0.05)
        release.set()
        outcome, waited = await waiter
        assert outcome == "admitted" and waited < 1.0
        await asyncio.gather(*holders)

    asyncio.run(scenario())


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_tiny_pools_still_queue_one(slots: int) -> None:
    async def scenario() -> None:
        admission = Admission(max_requests=64, max_writes=slots, queue_wait_s=0.2)
        release = asyncio.Event()
        holders = [asyncio.create_task(_hold(admission, release, True)) for _ in range(slots)]
        await asyncio.sleep(0.01)
        outcomes = await asyncio.gather(*(_try(admission, True) for _ in range(3)))
        assert sorted(o for o, _ in outcomes) == ["SlowDown"] * 3
        assert sum(1 for _, t in outcomes if t >= 0.1) == 1  # the one that queued
        # A refused write gave back its request slot.
        assert all(o == "admitted" for o, _ in await asyncio.gather(
            *(_try(admission) for _ in range(64 - slots))))
        release.set()
        await asyncio.gather(*holders)

    asyncio.run(scenario())
