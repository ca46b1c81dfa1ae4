"""The leader's view of each follower: how far it matches and how to send it more.

States (etcd-io/raft's tracker), and what the leader does in each:
- PROBE: the leader does not know where the follower's log matches. It sends one APPEND at
  a time (``probe_sent`` pauses the flow until a response or a heartbeat response), moving
  ``next`` back on each rejection using the follower's hint.
- REPLICATE: the logs match up to ``match``; the leader streams APPENDs optimistically,
  advancing ``next`` as it sends (pipelining), with at most ``max_inflight_msgs`` unacked
  messages (``Inflights``).
- SNAPSHOT: the entries the follower needs are compacted; a SNAPSHOT was sent and the leader
  sends nothing else until the follower answers, or ``snapshot_elapsed_ticks`` reaches the
  retry limit (the message may have been lost) and it falls back to PROBE.

Invariants: ``0 <= match < next``; in REPLICATE every in-flight index is in
``[match + 1, next - 1]`` and the window is sorted; ``pending_snapshot`` is only set in
SNAPSHOT.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    """How the leader replicates to a follower."""

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """A bounded window of the last indexes of APPENDs sent and not yet acknowledged."""

    def __init__(self, capacity: int) -> None:
        assert capacity >= 1
        self.capacity = capacity
        self._last_indexes: deque[int] = deque()

    def add(self, last_index: int) -> None:
        assert not self.full(), "inflight window overflow"
        assert not self._last_indexes or self._last_indexes[-1] <= last_index
        self._last_indexes.append(last_index)

    def free_le(self, index: int) -> None:
        """Acknowledge every message whose last index is <= ``index``."""
        while self._last_indexes and self._last_indexes[0] <= index:
            self._last_indexes.popleft()

    def full(self) -> bool:
        return len(self._last_indexes) >= self.capacity

    def count(self) -> int:
        return len(self._last_indexes)

    def reset(self) -> None:
        self._last_indexes.clear()


class Progress:
    """Replication state of one peer, kept by the leader."""

    def __init__(self, next_index: int, max_inflight_msgs: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_elapsed_ticks = 0
        self.recent_active = False
        self.inflights = Inflights(max_inflight_msgs)

    def __repr__(self) -> str:
        return f"Progress({self.state.value} match={self.match} next={self.next})"

    def _reset_state(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_elapsed_ticks = 0
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged ``index``; returns whether ``match`` moved."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an APPEND at ``rejected``; returns False if stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def sent_entries(self, count: int, last_index: int) -> None:
        """An APPEND with ``count`` entries ending at ``last_index`` was sent."""
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True
