"""Natural batching: calls that queue while a batch is out go together in the next one.

No timer, so no added latency: with nothing in flight a call leaves at once, alone. Under
load, calls pile up behind the ``max_in_flight`` batches already sent and leave together
when one returns, so the number of requests tracks the round-trip time rather than the call
rate (the group commit of databases, applied to RPCs).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class NaturalBatcher(Generic[Item, Result]):
    """``call(item)`` -> its result; ``send(items)`` returns one result or exception each."""

    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Result | BaseException]]],
                 max_items: int = 256, max_in_flight: int = 2) -> None:
        self.send = send
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        self._queue: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((item, future))
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                count = min(len(self._queue), self.max_items)
                batch = [self._queue.popleft() for _ in range(count)]
                live = [(item, future) for item, future in batch if not future.done()]
                if not live:
                    continue
                try:
                    results = await self.send([item for item, _ in live])
                except Exception as error:  # noqa: BLE001  (each caller gets the failure)
                    for _, future in live:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(live, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._in_flight -= 1
