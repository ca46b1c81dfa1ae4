"""Membership decisions, pure: may a storage node be drained, removed, added; which shard of
a segment a rebalance moves; what a node's fair share is.

The meta state machine applies membership commands mechanically; the judgement of whether a
change is SAFE needs the cluster map (soft state: who is up, how full) and so is made here,
from values, by the proposer (``client/membership.py``) before it proposes anything. Every
refusal is a sentence an operator can act on.

Rules:

- **Drain** ``X``: refused unless X is a storage node that is not removed, and the storage
  nodes that could take its shards (UP, not draining or removed, not X) number at least
  ``k + m`` (every segment needs k+m DISTINCT nodes: fewer, and the drain could never finish
  without putting a segment below full redundancy) and have the free space for what X holds.
- **Remove** ``X``: refused unless X is draining and no live segment places a shard on it.
- **Add** ``X``: refused if the id or the address is taken by any node (removed ones too:
  ids are never reused, so an old shard file can never be mistaken for a new node's).
- **Rebalance onto** ``T``: a node's fair share of the placed shards is proportional to its
  weight among the storage nodes that take writes. ``choose_move`` picks, for one segment,
  the shard that moves to T, or none:
  - ``ranked`` mode: only when T is among the segment's ``k+m`` best nodes in rendezvous
    order (``core/placement.py``) and not in its placement; the shard of the placed node
    that ranks worst (outside the best ``k+m``) moves: exactly the shard that placement
    would have put on T had T been there when the segment was written.
  - ``donors`` mode: T is not in the placement; the shard of the first node of ``donors``
    (the most loaded first) that the segment places moves.
  Either way a move never puts more shards of a segment in T's zone than ``ceil(total /
  zones)`` unless the shard leaves that same zone, so zone spreading is kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from blobstore.core.placement import Candidate, rank
from blobstore.core.records import ClusterMap, NodeRole, NodeState, NodeView

WRITABLE = NodeState.UP


@dataclass(frozen=True, slots=True)
class DrainPlan:
    node_id: str
    targets: list[str]  # storage nodes that may take its shards
    node_payload_bytes: int  # of the shards it holds: what the drain moves
    targets_free_bytes: int


def storage_views(cluster_map: ClusterMap) -> list[NodeView]:
    return [view for view in cluster_map.nodes if view.role == NodeRole.STORAGE]


def view_of(cluster_map: ClusterMap, node_id: str) -> NodeView | None:
    return next((view for view in cluster_map.nodes if view.id == node_id), None)


def writable_ids(cluster_map: ClusterMap, excluding: Iterable[str] = ()) -> list[str]:
    """Storage nodes that take new shards now (UP; draining and removed ones never do)."""
    skip = set(excluding)
    return sorted(view.id for view in storage_views(cluster_map)
                  if view.state == WRITABLE and view.id not in skip)


def check_drain(cluster_map: ClusterMap, node_id: str) -> tuple[DrainPlan | None, list[str]]:
    """The plan of draining ``node_id``, or the reasons it is refused."""
    view = view_of(cluster_map, node_id)
    if view is None:
        return None, [f"{node_id} is not a node of the cluster map"]
    if view.role != NodeRole.STORAGE:
        hint = " (use `blobstore meta remove`)" if view.role == NodeRole.META else ""
        return None, [f"{node_id} is a {view.role.value} node; only storage nodes hold "
                      f"shards to drain{hint}"]
    if view.state == NodeState.REMOVED:
        return None, [f"{node_id} is already removed"]
    total = cluster_map.data_shards + cluster_map.parity_shards
    targets = writable_ids(cluster_map, excluding=[node_id])
    problems = []
    if len(targets) < total:
        problems.append(
            f"draining {node_id} would leave {len(targets)} up storage node(s) to hold the "
            f"{total} shards ({cluster_map.data_shards}+{cluster_map.parity_shards}) of every "
            f"segment on distinct nodes: add a node or bring one back first")
    views = {v.id: v for v in storage_views(cluster_map)}
    # What the node holds is the payload of its shards, not its file system's use: nodes
    # that share a disk with each other or with anything else would each count it all.
    # Free space is an upper bound for the same reason, so this refuses only a drain that
    # cannot fit whatever the sharing.
    free = sum(max(views[t].capacity_bytes - views[t].used_bytes, 0) for t in targets)
    held = view.payload_bytes
    if held and free and held > free:
        problems.append(f"{node_id} holds {held} bytes of shards but the other up storage "
                        f"nodes have {free} bytes free")
    plan = DrainPlan(node_id=node_id, targets=targets, node_payload_bytes=held,
                     targets_free_bytes=free)
    return (None if problems else plan), problems


def check_remove(cluster_map: ClusterMap, node_id: str, placed_shards: int,
                 draining: bool) -> list[str]:
    """Why ``node_id`` may not be removed now (empty: it may). ``draining``: the node table
    says so (the map shows a silent draining node as suspect or down)."""
    view = view_of(cluster_map, node_id)
    if view is None:
        return [f"{node_id} is not a node of the cluster map"]
    if view.role != NodeRole.STORAGE:
        return [f"{node_id} is a {view.role.value} node; `node remove` removes storage nodes"
                + (" (use `blobstore meta remove`)" if view.role == NodeRole.META else "")]
    if view.state == NodeState.REMOVED:
        return [f"{node_id} is already removed"]
    problems = []
    if placed_shards:
        problems.append(f"{node_id} still holds {placed_shards} placed shard(s): the only copy "
                        f"of each; drain it first (`blobstore node drain {node_id} --wait`)")
    elif not draining:
        problems.append(f"{node_id} is {view.state.value}, not draining: drain it first "
                        f"(`blobstore node drain {node_id} --wait`), so that nothing new is "
                        "placed on it")
    return problems


def check_add(cluster_map: ClusterMap, node_id: str, address: str,
              known: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Why a storage node ``node_id`` at ``address`` may not be added. ``known``: further
    (id, address) pairs that are taken (cluster.toml entries, removed members)."""
    taken = [(view.id, view.address) for view in cluster_map.nodes] + list(known)
    problems = []
    if any(existing == node_id for existing, _ in taken):
        problems.append(f"node id {node_id} is taken (ids of removed nodes are not reused)")
    owner = next((existing for existing, addr in taken if addr == address), None)
    if owner is not None:
        problems.append(f"address {address} is already {owner}'s")
    return problems


def fair_share(placed_total: int, weights: dict[str, float], node_id: str) -> int:
    """``node_id``'s share of ``placed_total`` shards, by weight among ``weights``' nodes."""
    total_weight = sum(w for w in weights.values() if w > 0)
    if placed_total <= 0 or total_weight <= 0 or weights.get(node_id, 0) <= 0:
        return 0
    return round(placed_total * weights[node_id] / total_weight)


def donors(counts: dict[str, int], weights: dict[str, float], target: str) -> list[str]:
    """Nodes holding more than their fair share, the most over it first (ties: by id)."""
    total = sum(counts.get(node, 0) for node in weights)
    over = []
    for node in weights:
        if node == target:
            continue
        excess = counts.get(node, 0) - fair_share(total, weights, node)
        if excess > 0:
            over.append((-excess, node))
    return [node for _, node in sorted(over)]


def _zone_allows(placement: Sequence[str | None], zones: dict[str, str], source: str,
                 target: str, total: int) -> bool:
    source_zone, target_zone = zones.get(source, ""), zones.get(target, "")
    if source_zone == target_zone:
        return True
    zone_count = len(set(zones.values())) or 1
    in_target_zone = sum(1 for node in placement if node is not None
                         and zones.get(node, "") == target_zone)
    return in_target_zone + 1 <= math.ceil(total / zone_count)


def choose_move(segment_id: str, placement: Sequence[str | None],
                candidates: Sequence[Candidate], target: str, mode: str,
                donor_order: Sequence[str] = ()) -> int | None:
    """The index of the shard that moves to ``target`` (module rules), or None."""
    if target in placement or None in placement:
        return None  # already there, or degraded: repair comes first
    total = len(placement)
    zones = {c.node_id: c.zone for c in candidates}
    if mode == "ranked":
        ranking = [c.node_id for c in rank(segment_id, candidates)]
        if target not in ranking[:total]:
            return None
        position = {node: n for n, node in enumerate(ranking)}
        outside = [(position.get(node, len(ranking)), index)
                   for index, node in enumerate(placement)
                   if node is not None and node not in ranking[:total]]
        for _, index in sorted(outside, reverse=True):
            if _zone_allows(placement, zones, str(placement[index]), target, total):
                return index
        return None
    if mode == "donors":
        for donor in donor_order:
            if donor in placement:
                index = placement.index(donor)
                if _zone_allows(placement, zones, donor, target, total):
                    return index
        return None
    raise ValueError(f"unknown rebalance mode {mode!r}")


def spread(counts: dict[str, int]) -> float:
    """(max - min) / mean of the counts: 0 when perfectly balanced."""
    values = list(counts.values())
    if not values or not sum(values):
        return 0.0
    mean = sum(values) / len(values)
    return (max(values) - min(values)) / mean
