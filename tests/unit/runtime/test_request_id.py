"""runtime/request_id.py and the request id in runtime/logs.py's one-line format."""

from __future__ import annotations

import asyncio
import logging

import pytest

from blobstore.runtime import request_id
from blobstore.runtime.logs import _OneLine


def test_bound_sets_and_restores() -> None:
    assert request_id.current() is None
    with request_id.bound("A1B2") as held:
        assert held == "A1B2" == request_id.current()
        assert request_id.outgoing_headers() == {"X-Request-Id": "A1B2"}
        with request_id.bound("inner"):
            assert request_id.current() == "inner"
        assert request_id.current() == "A1B2"
        request_id.set_current("later")  # an inner layer naming the request
        assert request_id.current() == "later"
    assert request_id.current() is None
    assert request_id.outgoing_headers() == {}


@pytest.mark.parametrize("value, kept", [
    ("0123456789ABCDEF", True), ("req-1.a_b", True), ("x" * 64, True), ("x" * 65, False),
    ("", False), (None, False), ("two words", False), ("a\nb", False), ("ünï", False),
])
def test_untrusted_ids_are_checked(value: str | None, kept: bool) -> None:
    assert request_id.clean(value) == (value if kept else None)


def test_tasks_inherit_the_id_of_the_request_that_spawned_them() -> None:
    async def main() -> list[str | None]:
        seen: list[str | None] = []

        async def child() -> None:
            await asyncio.sleep(0)
            seen.append(request_id.current())

        async def handle(name: str) -> None:
            with request_id.bound(name):
                task = asyncio.get_running_loop().create_task(child())
            await task  # the id was reset here, but the task copied the context

        await asyncio.gather(handle("r1"), handle("r2"))
        return sorted(seen, key=str)

    assert asyncio.run(main()) == ["r1", "r2"]


def test_log_lines_carry_the_request_id() -> None:
    formatter = _OneLine("storage-3")
    record = logging.LogRecord("blobstore.storage.app", logging.INFO, __file__, 1,
                               "put shard %s", ("abc.1",), None)
    assert formatter.format(record).endswith("info storage-3 blobstore.storage.app put shard abc.1")
    with request_id.bound("F00D"):
        line = formatter.format(record)
    assert line.endswith("put shard abc.1 request_id=F00D")
