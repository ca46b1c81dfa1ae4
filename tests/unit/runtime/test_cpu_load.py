"""Background work yields to a busy machine, never stops, and runs free on an idle one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from blobstore.runtime import cpu_load
from blobstore.runtime.cpu_load import FLOOR_SHARE, CpuLoad, share_for
from blobstore.runtime.workers import Pacer


@given(st.floats(0, 1), st.floats(0, 1))
def test_share_falls_as_the_machine_gets_busier_and_never_reaches_zero(a: float, b: float):
    low, high = sorted((a, b))
    assert FLOOR_SHARE <= share_for(high) <= share_for(low) <= 1.0
    assert share_for(0.1) == 1.0 and share_for(0.99) == FLOOR_SHARE


def test_the_share_comes_from_proc_stat_deltas(tmp_path: Path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    load = CpuLoad(str(stat))
    now = [1000.0]
    monkeypatch.setattr(cpu_load.time, "monotonic", lambda: now[0])
    load._last_at = now[0]
    stat.write_text("cpu  1000 0 850 900 0 0 0 0 0 0\n")  # 1650 of 1750 jiffies busy
    assert load.background_share() == 1.0  # sampled at most every SAMPLE_S
    now[0] += 1
    assert load.background_share() == FLOOR_SHARE
    stat.write_text("cpu  1010 0 860 1880 0 0 0 0 0 0\n")  # 20 of 1000 busy
    now[0] += 1
    assert load.background_share() == 1.0
    assert CpuLoad(str(tmp_path / "absent")).background_share() == 1.0


def test_a_pacer_at_a_share_runs_that_much_slower():
    slept: list[float] = []
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    async def main(share: float) -> float:
        slept.clear()
        clock[0] = 0.0
        pacer = Pacer(1000, burst_s=0, monotonic=lambda: clock[0], sleep=sleep,
                      share=lambda: share)
        for _ in range(10):
            await pacer.consume(100)
        return clock[0]

    assert abs(asyncio.run(main(1.0)) - 1.0) < 1e-9
    assert abs(asyncio.run(main(0.25)) - 4.0) < 1e-9
