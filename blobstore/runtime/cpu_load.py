"""How busy this machine's CPUs are, so background work can yield to foreground work.

Scrubbing and repair are paced per storage node (``scrub_rate_bytes_per_s``,
``repair_rate_bytes_per_s``), but several nodes may share a machine, and what they share is
its CPUs. Like Ceph's ``osd_scrub_load_threshold``, background work therefore looks at the
machine's CPU use (``/proc/stat``, all CPUs, sampled at most every ``SAMPLE_S``) and runs at
its full rate while the CPUs are less than ``IDLE_BELOW`` busy, at ``FLOOR_SHARE`` of it
when they are more than ``BUSY_ABOVE`` busy, and in between linearly. It never stops: a
repair under sustained load is slower, not starved; the repair of a segment one loss away
from unreadable and an operator's drain or rebalance do not yield at all
(``storage/repairer.py``). Where
``/proc/stat`` cannot be read the share is 1. In a container ``/proc/stat`` is the host's.
"""

from __future__ import annotations

import time

SAMPLE_S = 0.5
IDLE_BELOW = 0.5
BUSY_ABOVE = 0.85
FLOOR_SHARE = 0.1


def _read_cpu_times(path: str) -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, or None."""
    try:
        with open(path) as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return total - idle, total


def share_for(busy_fraction: float) -> float:
    """The share of its configured rate background work may use at this CPU use."""
    if busy_fraction <= IDLE_BELOW:
        return 1.0
    if busy_fraction >= BUSY_ABOVE:
        return FLOOR_SHARE
    slope = (busy_fraction - IDLE_BELOW) / (BUSY_ABOVE - IDLE_BELOW)
    return 1.0 - slope * (1.0 - FLOOR_SHARE)


class CpuLoad:
    """``background_share()``: 1.0 on an idle machine down to FLOOR_SHARE on a busy one."""

    def __init__(self, path: str = "/proc/stat") -> None:
        self.path = path
        self._last = _read_cpu_times(path)
        self._last_at = time.monotonic()
        self._share = 1.0

    def background_share(self) -> float:
        now = time.monotonic()
        if now - self._last_at < SAMPLE_S:
            return self._share
        current = _read_cpu_times(self.path)
        if current is None or self._last is None:
            self._share = 1.0
        else:
            busy = current[0] - self._last[0]
            total = current[1] - self._last[1]
            if total > 0:
                self._share = share_for(busy / total)
        self._last, self._last_at = current, now
        return self._share


MACHINE = CpuLoad()
