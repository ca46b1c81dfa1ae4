"""Storage heartbeats -> node states, and the cluster map built from them.

Soft state, kept in memory only and never logged: every storage node sends a heartbeat
each second (capacity, use, shard count); this module remembers the last one per node and
judges liveness from its age. Time is an argument (``now_s``, monotonic seconds), so the
rules are testable without a clock.

Rules for a storage node:

1. Heard within ``suspect_after_s`` (3 s): UP.
2. Silent for ``suspect_after_s`` or more: SUSPECT; for ``down_after_s`` or more: DOWN.
3. Never heard since this meta process started: SUSPECT (still in the map), and DOWN once
   the process has been up for ``down_after_s`` without hearing from it: a restarted meta
   waits one ``down_after_s`` before declaring anyone down (DESIGN.md).

Gateway and meta nodes send no heartbeats and are shown UP.

Membership (``meta/membership.py``): the replicated node table is overlaid on the nodes of
cluster.toml (``set_members``, kept fresh by ``meta/heal_tasks.py`` from the local state):

4. A node added at run time is in the map like one of the file (liveness by rules 1-3,
   counted from when this detector first learnt of it).
5. A REMOVED node is shown REMOVED whatever it sends. A DRAINING node is shown DRAINING
   while it is up (readable, never a write candidate); once silent its liveness shows
   (SUSPECT, DOWN), so that a node lost mid-drain is healed like any other.

The map's epoch is 1 plus the sum of the node table's row generations: it grows with every
membership change.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import Invalid
from blobstore.core.records import ClusterMap, NodeRole, NodeState, NodeView
from blobstore.meta.membership import DRAINING, REMOVED, Member

SUSPECT_AFTER_S = 3.0
MAP_EPOCH = 1


class Heartbeat(msgspec.Struct, frozen=True):
    capacity_bytes: int
    used_bytes: int
    shard_count: int
    payload_bytes: int
    heard_s: float  # monotonic time of receipt
    heard_ns: int  # wall-clock time of receipt, for display


class FailureDetector:
    """Last heartbeat per node; states by age (rules in the module docstring)."""

    def __init__(self, config: ClusterConfig, started_s: float,
                 suspect_after_s: float = SUSPECT_AFTER_S) -> None:
        self.config = config
        self.started_s = started_s
        self.suspect_after_s = suspect_after_s
        self.down_after_s = config.down_after_s
        self._heartbeats: dict[str, Heartbeat] = {}
        self._members: dict[str, Member] = {}
        self._added: tuple[NodeConfig, ...] = ()
        self._known_since: dict[str, float] = {}

    def set_members(self, members: Iterable[Member], now_s: float | None = None) -> None:
        """Overlay the replicated node table (rules 4 and 5)."""
        self._members = {member.id: member for member in members}
        static = {node.id for node in self.config.nodes}
        self._added = tuple(
            NodeConfig(id=m.id, role=NodeRole(m.role), address=m.address,
                       data_dir=m.data_dir, zone=m.zone, weight=m.weight)
            for m in sorted(self._members.values(), key=lambda m: m.id)
            if m.added and m.id not in static)
        for node in self._added:
            self._known_since.setdefault(node.id, self.started_s if now_s is None else now_s)

    @property
    def members(self) -> list[Member]:
        """The node table as last set (a new leader's detector starts from it)."""
        return list(self._members.values())

    @property
    def nodes(self) -> tuple[NodeConfig, ...]:
        """The nodes of cluster.toml, then those added at run time."""
        return self.config.nodes + self._added

    @property
    def epoch(self) -> int:
        return MAP_EPOCH + sum(member.generation for member in self._members.values())

    def heartbeat(self, node_id: str, now_s: float, wall_ns: int, *, capacity_bytes: int,
                  used_bytes: int, shard_count: int, payload_bytes: int = 0) -> None:
        if not any(node.id == node_id for node in self.nodes):
            raise Invalid(f"heartbeat from unknown node {node_id!r}")
        if min(capacity_bytes, used_bytes, shard_count, payload_bytes) < 0:
            raise Invalid("heartbeat with negative counters")
        self._heartbeats[node_id] = Heartbeat(capacity_bytes=capacity_bytes,
                                              used_bytes=used_bytes, shard_count=shard_count,
                                              payload_bytes=payload_bytes,
                                              heard_s=now_s, heard_ns=wall_ns)

    def state(self, node: NodeConfig, now_s: float) -> NodeState:
        member = self._members.get(node.id)
        if member is not None and member.state == REMOVED:
            return NodeState.REMOVED
        alive = self._liveness(node, now_s)
        if member is not None and member.state == DRAINING and alive == NodeState.UP:
            return NodeState.DRAINING
        return alive

    def _liveness(self, node: NodeConfig, now_s: float) -> NodeState:
        if node.role != NodeRole.STORAGE:
            return NodeState.UP
        heartbeat = self._heartbeats.get(node.id)
        if heartbeat is None:
            silent_s = now_s - max(self.started_s, self._known_since.get(node.id, 0.0))
            return NodeState.DOWN if silent_s >= self.down_after_s else NodeState.SUSPECT
        silent_s = now_s - heartbeat.heard_s
        if silent_s >= self.down_after_s:
            return NodeState.DOWN
        if silent_s >= self.suspect_after_s:
            return NodeState.SUSPECT
        return NodeState.UP

    def view(self, node: NodeConfig, now_s: float) -> NodeView:
        heartbeat = self._heartbeats.get(node.id)
        counters = {}
        if heartbeat is not None:
            counters = {"capacity_bytes": heartbeat.capacity_bytes,
                        "used_bytes": heartbeat.used_bytes,
                        "shard_count": heartbeat.shard_count,
                        "payload_bytes": heartbeat.payload_bytes,
                        "last_heartbeat_ns": heartbeat.heard_ns}
        return NodeView(id=node.id, role=node.role, address=node.address, zone=node.zone,
                        weight=node.weight, state=self.state(node, now_s), **counters)

    def cluster_map(self, now_s: float) -> ClusterMap:
        return ClusterMap(epoch=self.epoch, data_shards=self.config.data_shards,
                          parity_shards=self.config.parity_shards,
                          nodes=[self.view(node, now_s) for node in self.nodes])
