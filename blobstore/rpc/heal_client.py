"""Typed clients of the self-healing API (docs/internal-api.md, "Healing").

``HealClient`` wraps a ``MetaClient``: the healing commands go through its ``command``
(apply-once envelopes, retries on Unavailable, leader preference), the ``/v1/heal/*`` reads
through its transport. ``StorageHealClient`` drives the workers of storage nodes
(``/v1/scrub``, ``/v1/repair``, ``/v1/inventory``, ``/v1/gc``).

Rules:

- Every time a command carries is the proposer's clock, read here (``time.time_ns``) at the
  moment of proposing unless the caller passes one: the state machine has no clock.
- Query strings are built by yarl, whose canonical form is both what is signed and sent.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import yarl

from blobstore.core.errors import Invalid
from blobstore.core.records import Segment
from blobstore.rpc.client import DEFAULT_TIMEOUT_S, RpcClient
from blobstore.rpc.heal_wire import (
    FsckPage,
    GcBeginResult,
    GcPage,
    HealStatus,
    LeaseResult,
    MembershipStatus,
    MoveLeaseResult,
    PlacedPage,
    WorkerStatus,
)
from blobstore.rpc.meta_client import MetaClient

MARK_DOWN_PAGE_SEGMENTS = 10_000
WORKERS = ("repair", "inventory", "gc")


class HealClient:
    """Healing commands and reads against the metadata service, through a MetaClient."""

    def __init__(self, meta: MetaClient) -> None:
        self.meta = meta

    # ---- commands ------------------------------------------------------------------------

    async def mark_node_down(self, node_id: str, now_ns: int | None = None) -> int:
        """Queue every live segment with a shard on ``node_id``; how many were changed."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        after: str | None = ""
        cleared = 0
        while after is not None:
            result = await self.meta.command({"type": "mark_node_down", "node_id": node_id,
                                              "now_ns": now_ns, "after": after,
                                              "limit": MARK_DOWN_PAGE_SEGMENTS})
            cleared += int(result["cleared"])
            after = result.get("next")
        return cleared

    async def lease_repair(self, node_id: str, lease_s: float, max_tasks: int,
                           now_ns: int | None = None) -> LeaseResult:
        result = await self.meta.command({
            "type": "lease_repair", "node_id": node_id, "lease_s": lease_s,
            "now_ns": time.time_ns() if now_ns is None else now_ns, "max_tasks": max_tasks})
        return msgspec.convert(result, LeaseResult)

    async def complete_repair(self, segment_id: str, expected: list[str | None],
                              new: list[str | None], repaired: list[int],
                              node_id: str) -> dict[str, Any]:
        """Commit a repair (compare-and-set on the placement); Conflict if it moved."""
        return await self.meta.command({
            "type": "complete_repair", "segment_id": segment_id, "expected_placement": expected,
            "new_placement": new, "repaired": repaired, "node_id": node_id})

    async def fail_repair(self, segment_id: str, node_id: str, retry_after_s: float,
                          reason: str, now_ns: int | None = None) -> None:
        await self.meta.command({
            "type": "fail_repair", "segment_id": segment_id, "node_id": node_id,
            "now_ns": time.time_ns() if now_ns is None else now_ns,
            "retry_after_s": retry_after_s, "reason": reason})

    async def gc_begin(self, segment_ids: list[str], node_id: str, grace_s: float,
                       lease_s: float, now_ns: int | None = None) -> GcBeginResult:
        result = await self.meta.command({
            "type": "gc_begin", "segment_ids": segment_ids, "node_id": node_id,
            "now_ns": time.time_ns() if now_ns is None else now_ns, "grace_s": grace_s,
            "lease_s": lease_s})
        return msgspec.convert(result, GcBeginResult)

    async def gc_finish(self, segment_ids: list[str], node_id: str) -> list[str]:
        result = await self.meta.command({"type": "gc_finish", "segment_ids": segment_ids,
                                          "node_id": node_id})
        return [str(segment_id) for segment_id in result["finished"]]

    # ---- moves (storage membership, meta/membership.py) ---------------------------------

    async def lease_moves(self, node_id: str, lease_s: float, max_tasks: int,
                          now_ns: int | None = None) -> MoveLeaseResult:
        result = await self.meta.command({
            "type": "lease_moves", "node_id": node_id, "lease_s": lease_s,
            "now_ns": time.time_ns() if now_ns is None else now_ns, "max_tasks": max_tasks})
        return msgspec.convert(result, MoveLeaseResult)

    async def complete_move(self, segment_id: str, expected: list[str | None],
                            new: list[str | None], moved: list[int],
                            node_id: str) -> dict[str, Any]:
        """Commit a move (compare-and-set on the placement); Conflict if it moved."""
        return await self.meta.command({
            "type": "complete_move", "segment_id": segment_id, "expected_placement": expected,
            "new_placement": new, "moved": moved, "node_id": node_id})

    async def fail_move(self, segment_id: str, node_id: str, retry_after_s: float,
                        reason: str, now_ns: int | None = None) -> None:
        await self.meta.command({
            "type": "fail_move", "segment_id": segment_id, "node_id": node_id,
            "now_ns": time.time_ns() if now_ns is None else now_ns,
            "retry_after_s": retry_after_s, "reason": reason})

    async def membership(self, detail: bool = True) -> MembershipStatus:
        """The node table and the move backlog (``detail``: per node, leased, stuck)."""
        payload = await self._get("/v1/membership", {"detail": "1" if detail else "0"})
        return msgspec.json.decode(payload, type=MembershipStatus)

    async def placed_counts(self) -> dict[str, int]:
        """Shards live segments place on each node (a walk over every segment)."""
        counts: dict[str, int] = {}
        after: str | None = ""
        while after is not None:
            page = msgspec.json.decode(await self._get(
                "/v1/membership/placed", {"after": after, "limit": "20000"}))
            for node, count in page["counts"].items():
                counts[node] = counts.get(node, 0) + int(count)
            after = page.get("next")
        return counts

    # ---- reads ---------------------------------------------------------------------------

    async def status(self) -> HealStatus:
        return msgspec.json.decode(await self._get("/v1/heal/status", {}), type=HealStatus)

    async def fsck_page(self, after: str = "", limit: int = 100) -> FsckPage:
        payload = await self._get("/v1/heal/fsck", {"after": after, "limit": str(limit)})
        return msgspec.json.decode(payload, type=FsckPage)

    async def gc_page(self, after: str = "", limit: int = 1000) -> GcPage:
        payload = await self._get("/v1/heal/gc", {"after": after, "limit": str(limit)})
        return msgspec.json.decode(payload, type=GcPage)

    async def placed_page(self, node_id: str, after: str = "", limit: int = 1000) -> PlacedPage:
        payload = await self._get("/v1/heal/placed",
                                  {"node": node_id, "after": after, "limit": str(limit)})
        return msgspec.json.decode(payload, type=PlacedPage)

    async def lookup_segments(self, ids: list[str]) -> dict[str, Segment]:
        return await self.meta.lookup_segments(ids)

    async def _get(self, path: str, query: dict[str, str]) -> bytes:
        path_qs = str(yarl.URL.build(path=path, query=query)) if query else path
        return await self.meta._request("GET", path_qs)


class StorageHealClient:
    """The background workers of storage nodes: start, wake, and read their progress."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def start_scrub(self, address: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
        """Start a pass now; the pass count that, once exceeded, means it is done."""
        _, _, body = await self.rpc.request("POST", address, "/v1/scrub", timeout_s=timeout_s)
        return int(msgspec.json.decode(body)["done_when_passes_completed_exceeds"])

    async def scrub_status(self, address: str, *,
                           timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        _, _, body = await self.rpc.request("GET", address, "/v1/scrub", timeout_s=timeout_s)
        return dict(msgspec.json.decode(body))

    async def wake(self, address: str, worker: str, *,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> WorkerStatus:
        """Ask a worker (repair, inventory, gc) to run a pass now."""
        _, _, body = await self.rpc.request("POST", address, _worker_path(worker),
                                            timeout_s=timeout_s)
        return msgspec.json.decode(body, type=WorkerStatus)

    async def worker_status(self, address: str, worker: str, *,
                            timeout_s: float = DEFAULT_TIMEOUT_S) -> WorkerStatus:
        _, _, body = await self.rpc.request("GET", address, _worker_path(worker),
                                            timeout_s=timeout_s)
        return msgspec.json.decode(body, type=WorkerStatus)


def _worker_path(worker: str) -> str:
    if worker not in WORKERS:
        raise Invalid(f"unknown worker {worker!r}: one of {', '.join(WORKERS)}")
    return f"/v1/{worker}"
