"""NaturalBatcher: batches form only under concurrency, and each caller gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from blobstore.rpc.batching import NaturalBatcher


def test_a_lone_call_goes_out_alone_and_concurrent_ones_share_batches() -> None:
    sent: list[list[int]] = []

    async def send(items: list[int]) -> list[int | BaseException]:
        sent.append(items)
        await asyncio.sleep(0.01)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    async def main() -> None:
        batcher: NaturalBatcher[int, int] = NaturalBatcher(send, max_items=8, max_in_flight=2)
        assert await batcher.call(0) == 0
        assert sent == [[0]]
        results = await asyncio.gather(*(batcher.call(i) for i in range(40)),
                                       return_exceptions=True)
        for i, result in enumerate(results):
            if i % 2:
                assert isinstance(result, ValueError) and str(result) == f"odd {i}"
            else:
                assert result == i * 10
        batches = sent[1:]
        assert sorted(i for batch in batches for i in batch) == list(range(40))
        assert all(len(batch) <= 8 for batch in batches)
        assert len(batches) < 40 / 2  # they did go together

    asyncio.run(main())


def test_a_failed_send_fails_every_caller_of_that_batch_and_the_next_batch_still_goes() -> None:
    calls = 0

    async def send(items: list[str]) -> list[str | BaseException]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.005)
        if calls == 1:
            raise ConnectionError("leader gone")
        return [item.upper() for item in items]

    async def main() -> None:
        batcher: NaturalBatcher[str, str] = NaturalBatcher(send, max_in_flight=1)
        first = asyncio.ensure_future(batcher.call("a"))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(batcher.call(x)) for x in "bcd"]
        with pytest.raises(ConnectionError):
            await first
        assert [await r for r in rest] == ["B", "C", "D"]

    asyncio.run(main())


def test_a_caller_that_gave_up_is_skipped() -> None:
    seen: list[list[int]] = []

    async def send(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        await asyncio.sleep(0.01)
        return items

    async def main() -> None:
        batcher: NaturalBatcher[int, int] = NaturalBatcher(send, max_in_flight=1)
        first = asyncio.ensure_future(batcher.call(1))
        await asyncio.sleep(0)
        gone = asyncio.ensure_future(batcher.call(2))
        kept = asyncio.ensure_future(batcher.call(3))
        await asyncio.sleep(0)
        gone.cancel()
        assert await first == 1 and await kept == 3
        assert seen == [[1], [3]]

    asyncio.run(main())
