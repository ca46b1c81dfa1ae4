"""Weighted rendezvous (highest random weight) placement with zone spreading.

For a segment, every candidate node gets a score that depends only on (segment id, node
id, weight): ``-weight / ln(u)`` with ``u`` uniform in (0, 1) from SHA-256. Higher wins.
Adding or removing a node moves only the shards that node wins or held, and any process
with the same cluster map computes the same answer, so the gateway places without asking.

Zones: nodes are taken round-robin across zones, each round taking the best remaining
node of every zone in score order. With Z zones no zone receives more than
``ceil(total / Z)`` shards of a segment while other zones still have nodes, so losing one
zone loses at most that many (<= parity_shards when Z >= total/parity).

The returned ranking is the whole ordered list: the first ``total_shards`` are the
placement, the rest are spares in the order a writer should try them when a node fails.
No node appears twice.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    node_id: str
    zone: str
    weight: float = 1.0


def score(segment_id: str, candidate: Candidate) -> float:
    digest = hashlib.sha256(f"{segment_id}/{candidate.node_id}".encode()).digest()
    # 53 random bits -> u in (0, 1), never 0 or 1.
    u = (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)
    u = min(max(u, 1e-300), 1 - 1e-16)
    return -candidate.weight / math.log(u)


def rank(segment_id: str, candidates: Iterable[Candidate]) -> list[Candidate]:
    """Every candidate, best first, zones interleaved as the module docstring says."""
    by_zone: dict[str, list[tuple[float, str, Candidate]]] = {}
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.weight <= 0 or candidate.node_id in seen:
            continue
        seen.add(candidate.node_id)
        by_zone.setdefault(candidate.zone, []).append(
            (score(segment_id, candidate), candidate.node_id, candidate))
    for entries in by_zone.values():
        entries.sort(key=lambda e: (-e[0], e[1]))
    ordered: list[Candidate] = []
    depth = 0
    while True:
        round_ = [entries[depth] for entries in by_zone.values() if depth < len(entries)]
        if not round_:
            return ordered
        round_.sort(key=lambda e: (-e[0], e[1]))
        ordered.extend(entry[2] for entry in round_)
        depth += 1


def place(segment_id: str, candidates: Iterable[Candidate], total_shards: int) -> list[str]:
    """The node ids for shards 0..total_shards-1 (fewer if there are not enough nodes)."""
    return [c.node_id for c in rank(segment_id, candidates)[:total_shards]]
