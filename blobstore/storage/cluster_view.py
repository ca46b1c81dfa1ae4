"""A storage node's cached copy of the cluster map, for its healing workers.

The workers need to know which storage nodes are up (where to write a rebuilt shard),
which can still be read from (up or suspect), their addresses and zones. The map comes
from meta (``GET /v1/cluster_map``) and is refreshed when older than ``max_age_s``, so a
burst of repairs costs one map read, and a node's death is noticed within seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from blobstore.core.errors import Unavailable
from blobstore.core.placement import Candidate
from blobstore.core.records import ClusterMap, NodeRole, NodeState, NodeView
from blobstore.rpc.meta_client import MetaClient

MAX_AGE_S = 2.0


class ClusterView:
    def __init__(self, meta: MetaClient, *, max_age_s: float = MAX_AGE_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.meta = meta
        self.max_age_s = max_age_s
        self._monotonic = monotonic
        self._map: ClusterMap | None = None
        self._fetched_s = 0.0

    async def current(self) -> ClusterMap:
        if self._map is None or self._monotonic() - self._fetched_s > self.max_age_s:
            self._map = await self.meta.cluster_map()
            self._fetched_s = self._monotonic()
        return self._map


def storage_nodes(cluster_map: ClusterMap) -> list[NodeView]:
    return [view for view in cluster_map.nodes if view.role == NodeRole.STORAGE]


def up_ids(cluster_map: ClusterMap) -> set[str]:
    """Storage nodes that may be written to now (not draining, not removed)."""
    return {view.id for view in storage_nodes(cluster_map) if view.state == NodeState.UP}


def readable_ids(cluster_map: ClusterMap) -> set[str]:
    """Storage nodes worth asking for a shard (up, draining, or merely late with a
    heartbeat). A draining node serves reads until its shards have moved; it takes no
    new ones (``up_ids`` leaves it out, so repairs and moves never write to it)."""
    return {view.id for view in storage_nodes(cluster_map)
            if view.state in (NodeState.UP, NodeState.SUSPECT, NodeState.DRAINING)}


def candidates(cluster_map: ClusterMap) -> list[Candidate]:
    return [Candidate(view.id, view.zone, view.weight) for view in storage_nodes(cluster_map)]


def address_of(cluster_map: ClusterMap, node_id: str) -> str:
    for view in cluster_map.nodes:
        if view.id == node_id:
            return view.address
    raise Unavailable(f"node {node_id} is not in the cluster map")
