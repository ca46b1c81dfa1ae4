"""What to rebuild, where to read it from, where to write it, and health verdicts. Pure.

A repairer (``storage/repairer.py``) holds a leased task: a segment record and the shard
indexes known missing or bad. This module decides, from values only:

- ``shards_to_rebuild``: the task's missing indexes plus every index the placement has no
  node for.
- ``source_order``: the other indexes whose node can be asked, data shards first (zfec is
  systematic: with shards 0..k-1 in hand decoding is a concatenation), then parity.
- ``plan_targets``: where each rebuilt shard goes. Rules:
  1. An index whose recorded node is UP goes back to that node: the shard was lost or
     found corrupt on a live node (the bad file is already quarantined there), and
     rewriting it in place keeps the placement and leaves no orphan behind.
  2. Every other index goes to a new node: an UP storage node that holds no shard of the
     segment (no node ever holds two), chosen by the weighted rendezvous ranking
     (``core/placement.py``), preferring the zone with the fewest shards of the segment,
     so that repair keeps placement's failure-domain spreading.
  3. What the ranking leaves over are spares, in order, for a write that fails.
  With too few eligible nodes some indexes get no target: the repair is partial and the
  rest stays queued (SPEC §4: with exactly k+m nodes a segment stays degraded).
- ``segment_health`` and ``durability``: verdicts from a count of healthy shards.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from blobstore.core.placement import Candidate, rank
from blobstore.core.records import Segment


class Health(enum.StrEnum):
    HEALTHY = "healthy"  # every shard present and good
    DEGRADED = "degraded"  # at least data_shards good, not all
    LOST = "lost"  # fewer than data_shards good: unreadable until a node returns


@dataclass(frozen=True, slots=True)
class TargetPlan:
    targets: dict[int, str]  # shard index -> node to write it to
    spares: list[str] = field(default_factory=list)  # further new nodes, best first


def shards_to_rebuild(segment: Segment, missing: Iterable[int]) -> list[int]:
    """The task's indexes and the placement's holes, ascending, within range."""
    wanted = {i for i in missing if 0 <= i < segment.total_shards}
    wanted |= {i for i, node in enumerate(segment.placement) if node is None}
    return sorted(wanted)


def source_order(segment: Segment, rebuild: Iterable[int], readable: set[str]) -> list[int]:
    """Indexes to read from, data shards first; only those whose node is ``readable``."""
    skip = set(rebuild)
    return [i for i, node in enumerate(segment.placement)
            if i not in skip and node is not None and node in readable]


def plan_targets(segment: Segment, rebuild: Iterable[int], candidates: Iterable[Candidate],
                 up: set[str]) -> TargetPlan:
    """Where each rebuilt shard goes (rules 1-3 of the module docstring)."""
    indexes = sorted(set(rebuild))
    by_id = {c.node_id: c for c in candidates}
    targets: dict[int, str] = {}
    moving = []
    for index in indexes:
        node = segment.placement[index]
        if node is not None and node in up:
            targets[index] = node
        else:
            moving.append(index)
    kept = {node for i, node in enumerate(segment.placement)
            if node is not None and (i not in moving)}
    zone_load: dict[str, int] = {}
    for node in kept:
        zone = by_id[node].zone if node in by_id else ""
        zone_load[zone] = zone_load.get(zone, 0) + 1
    ranking = [c for c in rank(segment.id, by_id.values()) if c.node_id in up
               and c.node_id not in kept]
    for index in moving:
        if not ranking:
            break
        best = min(range(len(ranking)), key=lambda n: (zone_load.get(ranking[n].zone, 0), n))
        chosen = ranking.pop(best)
        targets[index] = chosen.node_id
        zone_load[chosen.zone] = zone_load.get(chosen.zone, 0) + 1
    return TargetPlan(targets=targets, spares=[c.node_id for c in ranking])


def segment_health(healthy: int, data_shards: int, total_shards: int) -> Health:
    if healthy >= total_shards:
        return Health.HEALTHY
    return Health.DEGRADED if healthy >= data_shards else Health.LOST


def durability(min_healthy: int | None, data_shards: int, parity_shards: int,
               lost: int = 0) -> str:
    """One line: how many more shard losses the most endangered segment survives."""
    if lost:
        return f"{lost} segment(s) LOST: fewer than {data_shards} readable shards"
    if min_healthy is None:
        return f"every segment survives the loss of any {parity_shards} shard(s)"
    margin = min_healthy - data_shards
    return (f"degraded: the most endangered segment survives {margin} more shard loss(es) "
            f"of {parity_shards}")

