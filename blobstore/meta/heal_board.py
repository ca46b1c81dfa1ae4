"""Soft healing state of one meta process: scrub progress from heartbeats, down marking.

Like the failure detector's heartbeats, this lives in memory only and is never logged: a
restarted or newly elected meta process starts empty and learns it again within a
heartbeat (scrub progress) or one ``down_after_s`` (down marking, ``meta/heal_tasks.py``).

- ``scrub``: the scrub fields of each storage node's last heartbeat (``rpc.wire.StorageStatus``).
- ``marked_down``: storage nodes whose shards have been queued for repair by a completed
  ``mark_node_down`` walk, with the wall time it completed; a node leaves it when it is seen
  up again, so that a second outage is marked again.
- ``pending_down``: nodes the detector says are down that are not (yet) marked: the
  repair backlog is about to grow, so ``blobstore repair --wait`` keeps waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from blobstore.rpc.heal_wire import ScrubProgress
from blobstore.rpc.wire import StorageStatus


@dataclass
class HealBoard:
    scrub: dict[str, ScrubProgress] = field(default_factory=dict)
    marked_down: dict[str, int] = field(default_factory=dict)  # node id -> wall ns
    pending_down: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)

    def note_heartbeat(self, status: StorageStatus, heard_ns: int) -> None:
        self.scrub[status.node_id] = ScrubProgress(
            node_id=status.node_id, passes_completed=status.scrub_passes_completed,
            shards_checked=status.scrub_shards_checked, shards_total=status.scrub_shards_total,
            corrupt_found=status.scrub_corrupt_found,
            last_pass_completed_s=status.scrub_last_pass_completed_s, heard_ns=heard_ns)

    def scrub_list(self) -> list[ScrubProgress]:
        return [self.scrub[node_id] for node_id in sorted(self.scrub)]


HEAL_BOARD: web.AppKey[HealBoard] = web.AppKey("heal_board", HealBoard)
