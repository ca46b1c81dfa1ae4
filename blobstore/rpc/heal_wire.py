"""Wire types of the self-healing API: meta's ``/v1/heal/*`` reads, the results of the
healing commands, and the storage nodes' worker routes (docs/internal-api.md, "Healing").

Both ends import these (``meta/heal_routes.py`` and ``storage/app.py`` encode,
``rpc/heal_client.py`` decodes), so a field changes on both sides at once. Versioning rule
as in ``rpc/wire.py``: fields are added with a default, never removed or re-purposed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from blobstore.core.records import RepairTask, Segment


class ScrubProgress(msgspec.Struct, frozen=True):
    """A storage node's scrubber as its last heartbeat described it."""

    node_id: str
    passes_completed: int = 0
    shards_checked: int = 0
    shards_total: int = 0
    corrupt_found: int = 0
    last_pass_completed_s: float = 0.0
    heard_ns: int = 0


class HealStatus(msgspec.Struct, frozen=True):
    """``GET /v1/heal/status``: the repair and GC backlogs and who is down."""

    repair_backlog: int = 0  # segments queued for repair
    degraded_segments: int = 0  # segments with a shard that has no node
    lost_segments: int = 0  # queued with fewer healthy shards than data_shards
    repair_leased: int = 0  # tasks under a live lease (being repaired now)
    repair_stuck: int = 0  # tasks waiting out a back-off after a failed attempt
    stuck_reasons: list[str] = []  # a few of their last errors
    min_healthy: int | None = None  # healthy shards of the most endangered segment
    backlog_by_healthy: dict[str, int] = {}  # healthy shard count -> queued segments
    gc_backlog: int = 0  # segments at refcount 0
    gc_deleting: int = 0  # ... of which being deleted now
    objects: int = 0
    segments: int = 0
    nodes_down: list[str] = []  # storage nodes the failure detector says are down
    nodes_marked_down: list[str] = []  # ... whose shards have been queued for repair
    nodes_pending_down: list[str] = []  # down but not (yet) marked: repair will grow
    scrub: list[ScrubProgress] = []


class FsckObject(msgspec.Struct, frozen=True):
    bucket: str
    key: str
    size: int
    segment_ids: list[str]


class FsckPage(msgspec.Struct, frozen=True):
    """``GET /v1/heal/fsck?after=&limit=``: objects and the records of their segments."""

    objects: list[FsckObject]
    segments: dict[str, Segment]
    next: str | None = None


class GcCandidate(msgspec.Struct, frozen=True):
    segment_id: str
    zero_since_ns: int = 0  # 0: not stamped yet
    deleting_since_ns: int = 0  # 0: not being deleted
    lease_until_ns: int = 0


class GcPage(msgspec.Struct, frozen=True):
    """``GET /v1/heal/gc?after=&limit=``: segments at refcount 0, in segment-id order."""

    candidates: list[GcCandidate]
    next: str | None = None


class PlacedPage(msgspec.Struct, frozen=True):
    """``GET /v1/heal/placed?node=&after=&limit=``: shards meta says the node holds."""

    shard_ids: list[str]
    next: str | None = None  # segment id to continue after; None when the walk is done


class LeasedTask(msgspec.Struct, frozen=True):
    task: RepairTask
    healthy: int
    segment: Segment


class LeaseResult(msgspec.Struct, frozen=True):
    tasks: list[LeasedTask]
    lease_until_ns: int = 0


class GcBegun(msgspec.Struct, frozen=True):
    segment: Segment
    deleting_since_ns: int


class GcBeginResult(msgspec.Struct, frozen=True):
    begun: list[GcBegun] = []
    stamped: list[str] = []
    waiting: list[str] = []


class WorkerStatus(msgspec.Struct, frozen=True):
    """``GET /v1/repair|inventory|gc`` on a storage node: one background worker."""

    name: str
    running: bool = False
    passes_completed: int = 0
    last_pass_completed_s: float = 0.0
    last_error: str = ""
    counters: dict[str, int] = {}


# ---- storage membership: move tasks (meta/membership.py) ---------------------------------------


class ShardMove(msgspec.Struct, frozen=True):
    index: int
    source: str  # the node the shard leaves
    target: str = ""  # where it goes; "" = the mover chooses


class MoveTask(msgspec.Struct, frozen=True):
    segment_id: str
    moves: list[ShardMove]
    reason: str = ""


class LeasedMove(msgspec.Struct, frozen=True):
    task: MoveTask
    segment: Segment


class MoveLeaseResult(msgspec.Struct, frozen=True):
    tasks: list[LeasedMove]
    lease_until_ns: int = 0


class MembershipStatus(msgspec.Struct, frozen=True):
    """``GET /v1/membership``: the node table and the move backlog."""

    members: list[dict[str, Any]] = []
    move_backlog: int = 0  # segments with a queued move
    moves_leased: int = 0
    moves_stuck: int = 0
    stuck_reasons: list[str] = []
    moves_from: dict[str, int] = {}  # node -> shards queued to leave it
    moves_to: dict[str, int] = {}  # node -> shards queued to come to it (rebalance)
