"""``blobstore node add|drain|remove|rebalance|list``: storage membership, judged then proposed.

The decisions are pure (``core/membership_plan.py``); this module fetches what they need
from meta (the cluster map, the node table and move backlog, per-node placed shard counts),
refuses with the planner's reasons (``Conflict``, exit 1) or, unless ``dry_run``, proposes
the commands of ``meta/membership.py`` and optionally waits for the moves to finish.

Rules:

- Nothing is proposed by a dry run, and nothing at all when a check fails.
- ``add`` registers the node in meta FIRST (the source of truth), then appends its
  ``[[nodes]]`` entry to this machine's cluster.toml so that ``blobstore serve --config F
  --id ID`` can start it here; on other hosts the operator copies the file. Re-running an
  add whose file append was interrupted completes it.
- ``drain`` walks every segment once (paged ``drain_node`` commands); with ``wait`` it then
  polls the shards still placed on the node, and walks again when the queue for it is empty
  but shards remain (placed meanwhile by a gateway whose map was a second old).
- ``rebalance`` queues moves to the node up to its fair share by weight, counting what is
  placed on it and queued to it already: first segments whose rendezvous ranking prefers
  it, then, if that is not enough, shards of the most loaded nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blobstore.config import _ADDRESS_RE, ClusterConfig, NodeConfig, parse_config
from blobstore.core.errors import Conflict, Invalid, Unavailable
from blobstore.core.ids import validate_node_id
from blobstore.core.membership_plan import (
    check_add,
    check_drain,
    check_remove,
    donors,
    fair_share,
    storage_views,
    view_of,
)
from blobstore.core.records import ClusterMap, NodeRole, NodeState
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.heal_client import HealClient
from blobstore.rpc.meta_client import MetaClient
from blobstore.runtime.fsutil import write_atomic

Progress = Callable[[str], None]
PAGE_SEGMENTS = 10_000
POLL_S = 1.0
META_ATTEMPTS = 3
META_DEADLINE_S = 10.0


def _meta(session: Any, config: ClusterConfig) -> MetaClient:
    addresses = [node.address for node in config.by_role(NodeRole.META)]
    return MetaClient(RpcClient(session, config.secret), addresses, attempts=META_ATTEMPTS,
                      deadline_s=META_DEADLINE_S)


def _quiet(_line: str) -> None:
    return None


# ---- drain ---------------------------------------------------------------------------------


def drain(config: ClusterConfig, node_id: str, *, dry_run: bool = False, wait: bool = False,
          timeout_s: float = 600.0, progress: Progress = _quiet) -> dict[str, Any]:
    return asyncio.run(_drain(config, node_id, dry_run, wait, timeout_s, progress))


async def _drain(config: ClusterConfig, node_id: str, dry_run: bool, wait: bool,
                 timeout_s: float, progress: Progress) -> dict[str, Any]:
    async with new_session() as session:
        meta = _meta(session, config)
        heal = HealClient(meta)
        cluster_map = await meta.cluster_map()
        plan, problems = check_drain(cluster_map, node_id)
        if problems or plan is None:
            raise Conflict(f"drain of {node_id} refused: {'; '.join(problems)}")
        placed = (await heal.placed_counts()).get(node_id, 0)
        view = view_of(cluster_map, node_id)
        result: dict[str, Any] = {
            "node_id": node_id, "dry_run": dry_run, "state": view.state.value if view else None,
            "placed_shards": placed, "targets": plan.targets,
            "payload_bytes": plan.node_payload_bytes, "targets_free_bytes": plan.targets_free_bytes}
        if dry_run:
            return result
        started = time.monotonic()
        result["queued"] = await _drain_walk(meta, node_id)
        progress(f"{node_id} draining: {result['queued']} shard move(s) queued over "
                 f"{len(plan.targets)} node(s)")
        if wait:
            await _wait_drained(heal, meta, node_id, started + timeout_s, progress)
            result["placed_shards_after"] = 0
            result["drain_s"] = round(time.monotonic() - started, 2)
        return result


async def _drain_walk(meta: MetaClient, node_id: str) -> int:
    queued = 0
    after: str | None = ""
    now_ns = time.time_ns()
    while after is not None:
        page = await meta.command({"type": "drain_node", "node_id": node_id, "now_ns": now_ns,
                                   "after": after, "limit": PAGE_SEGMENTS})
        queued += int(page["queued"])
        after = page.get("next")
    return queued


async def _wait_drained(heal: HealClient, meta: MetaClient, node_id: str, deadline: float,
                        progress: Progress) -> None:
    while True:
        placed = (await heal.placed_counts()).get(node_id, 0)
        status = await heal.membership()
        queued = status.moves_from.get(node_id, 0)
        progress(f"{node_id}: {placed} placed shard(s) left, {queued} move(s) queued, "
                 f"{status.moves_stuck} backing off")
        if placed == 0:
            return
        if queued == 0:  # placed by a gateway with an old map after the walk passed by
            await _drain_walk(meta, node_id)
        if time.monotonic() > deadline:
            reasons = "; ".join(status.stuck_reasons) or "moves are slow"
            raise Unavailable(f"{node_id} still holds {placed} placed shard(s) ({reasons}); "
                              f"the drain goes on: run `blobstore node drain {node_id} --wait` "
                              "again to keep waiting")
        await asyncio.sleep(POLL_S)


# ---- remove --------------------------------------------------------------------------------


def remove(config: ClusterConfig, node_id: str, *, dry_run: bool = False) -> dict[str, Any]:
    return asyncio.run(_remove(config, node_id, dry_run))


async def _remove(config: ClusterConfig, node_id: str, dry_run: bool) -> dict[str, Any]:
    async with new_session() as session:
        meta = _meta(session, config)
        heal = HealClient(meta)
        cluster_map = await meta.cluster_map()
        members = {m["id"]: m for m in (await heal.membership(detail=False)).members}
        placed = (await heal.placed_counts()).get(node_id, 0)
        draining = members.get(node_id, {}).get("state") == "draining"
        problems = check_remove(cluster_map, node_id, placed, draining)
        if problems:
            raise Conflict(f"remove of {node_id} refused: {'; '.join(problems)}")
        result: dict[str, Any] = {"node_id": node_id, "dry_run": dry_run,
                                  "placed_shards": placed}
        if dry_run:
            return result
        await meta.command({"type": "remove_node", "node_id": node_id,
                            "now_ns": time.time_ns()})
        result["state"] = NodeState.REMOVED.value
        return result


# ---- add -----------------------------------------------------------------------------------


def add(config: ClusterConfig, node_id: str, address: str, *, zone: str | None = None,
        weight: float = 1.0, data_dir: str | None = None,
        dry_run: bool = False) -> dict[str, Any]:
    validate_node_id(node_id)
    if not _ADDRESS_RE.fullmatch(address):
        raise Invalid(f"address {address!r} is not host:port")
    if weight <= 0:
        raise Invalid("weight must be positive")
    zones = sorted({node.zone for node in config.by_role(NodeRole.STORAGE)})
    if zone is None:
        if len(zones) > 1:
            raise Invalid(f"the storage nodes are in zones {', '.join(zones)}: say which "
                          "one with --zone")
        zone = zones[0] if zones else "z1"
    node = NodeConfig(id=node_id, role=NodeRole.STORAGE, address=address,
                      data_dir=data_dir or str(config.base_dir / "data" / node_id), zone=zone,
                      weight=weight)
    return asyncio.run(_add(config, node, dry_run))


async def _add(config: ClusterConfig, node: NodeConfig, dry_run: bool) -> dict[str, Any]:
    async with new_session() as session:
        meta = _meta(session, config)
        cluster_map = await meta.cluster_map()
        in_file = next((n for n in config.nodes if n.id == node.id), None)
        resuming = in_file is not None and in_file.address == node.address \
            and view_of(cluster_map, node.id) is None
        known = [(n.id, n.address) for n in config.nodes if not (resuming and n.id == node.id)]
        in_map = view_of(cluster_map, node.id)
        already_added = in_map is not None and in_map.address == node.address \
            and in_map.state != NodeState.REMOVED and in_file is None
        problems = [] if already_added else check_add(cluster_map, node.id, node.address,
                                                      known)
        if problems:
            raise Conflict(f"add of {node.id} refused: {'; '.join(problems)}")
        result: dict[str, Any] = {
            "node_id": node.id, "address": node.address, "zone": node.zone,
            "weight": node.weight, "data_dir": node.data_dir, "dry_run": dry_run,
            "config": config.path or None,
            "start": f"blobstore serve --config {config.path or 'cluster.toml'} --id {node.id}"}
        if dry_run:
            return result
        if not already_added:
            await meta.command({"type": "add_node", "node_id": node.id,
                                "address": node.address, "zone": node.zone,
                                "weight": node.weight, "data_dir": node.data_dir,
                                "now_ns": time.time_ns()})
        result["config_appended"] = append_node(config, node) if config.path else False
        return result


def node_block(node: NodeConfig) -> str:
    """The ``[[nodes]]`` entry of cluster.toml for ``node``."""
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (f"\n[[nodes]]\nid = {quoted(node.id)}\nrole = {quoted(node.role.value)}\n"
            f"address = {quoted(node.address)}\ndata_dir = {quoted(node.data_dir)}\n"
            f"zone = {quoted(node.zone)}\nweight = {node.weight!r}\n")


def append_node(config: ClusterConfig, node: NodeConfig) -> bool:
    """Append ``node`` to cluster.toml (atomically, checked by the config parser); False if
    the file has it already."""
    path = Path(config.path)
    text = path.read_text()
    current = parse_config(text, str(path))
    if any(n.id == node.id for n in current.nodes):
        return False
    new_text = text.rstrip("\n") + "\n" + node_block(node)
    parse_config(new_text, str(path))  # refuse to write a file the nodes could not read
    write_atomic(path, [new_text.encode()], mode=path.stat().st_mode & 0o777)
    return True


# ---- rebalance -----------------------------------------------------------------------------


def rebalance(config: ClusterConfig, node_id: str, *, dry_run: bool = False,
              wait: bool = False, timeout_s: float = 600.0,
              progress: Progress = _quiet) -> dict[str, Any]:
    return asyncio.run(_rebalance(config, node_id, dry_run, wait, timeout_s, progress))


def _writable(cluster_map: ClusterMap) -> list[tuple[str, str, float]]:
    return sorted((v.id, v.zone, v.weight) for v in storage_views(cluster_map)
                  if v.state == NodeState.UP)


async def _rebalance(config: ClusterConfig, node_id: str, dry_run: bool, wait: bool,
                     timeout_s: float, progress: Progress) -> dict[str, Any]:
    async with new_session() as session:
        meta = _meta(session, config)
        heal = HealClient(meta)
        cluster_map = await meta.cluster_map()
        view = view_of(cluster_map, node_id)
        if view is None or view.role != NodeRole.STORAGE:
            raise Conflict(f"rebalance refused: {node_id} is not a storage node of the map")
        if view.state != NodeState.UP:
            raise Conflict(f"rebalance refused: {node_id} is {view.state.value}; start it "
                           "and wait until `blobstore status` shows it up")
        candidates = _writable(cluster_map)
        weights = {node: weight for node, _, weight in candidates}
        counts = await heal.placed_counts()
        queued_to = (await heal.membership()).moves_to.get(node_id, 0)
        total = sum(counts.values())
        fair = fair_share(total, weights, node_id)
        budget = max(fair - counts.get(node_id, 0) - queued_to, 0)
        result: dict[str, Any] = {"node_id": node_id, "dry_run": dry_run,
                                  "placed_shards": counts.get(node_id, 0),
                                  "fair_share": fair, "already_queued": queued_to,
                                  "to_move": budget}
        if dry_run:
            return result
        started = time.monotonic()
        queued = await _rebalance_walk(meta, node_id, candidates, "ranked", [], budget)
        if queued < budget:
            order = donors(counts, weights, node_id)
            queued += await _rebalance_walk(meta, node_id, candidates, "donors", order,
                                            budget - queued)
        result["queued"] = queued
        progress(f"rebalance onto {node_id}: {queued} shard move(s) queued "
                 f"(fair share {fair})")
        if wait:
            deadline = started + timeout_s
            while (left := (await heal.membership()).moves_to.get(node_id, 0)) > 0:
                progress(f"{node_id}: {left} move(s) to it still queued")
                if time.monotonic() > deadline:
                    raise Unavailable(f"{left} move(s) to {node_id} still queued after "
                                      f"{timeout_s:g}s; they go on in the background")
                await asyncio.sleep(POLL_S)
            result["placed_shards_after"] = (await heal.placed_counts()).get(node_id, 0)
            result["rebalance_s"] = round(time.monotonic() - started, 2)
        return result


async def _rebalance_walk(meta: MetaClient, node_id: str,
                          candidates: list[tuple[str, str, float]], mode: str,
                          donor_order: list[str], budget: int) -> int:
    queued = 0
    after: str | None = ""
    now_ns = time.time_ns()
    while after is not None and queued < budget:
        page = await meta.command({
            "type": "rebalance_node", "node_id": node_id, "now_ns": now_ns,
            "candidates": [list(c) for c in candidates], "mode": mode, "donors": donor_order,
            "budget": budget - queued, "after": after, "limit": PAGE_SEGMENTS})
        queued += int(page["queued"])
        after = page.get("next")
    return queued


# ---- list ----------------------------------------------------------------------------------


def members(config: ClusterConfig) -> dict[str, Any]:
    """The node table, the move backlog and the storage nodes' map states and shards."""

    async def fetch() -> dict[str, Any]:
        async with new_session() as session:
            meta = _meta(session, config)
            heal = HealClient(meta)
            cluster_map = await meta.cluster_map()
            status = await heal.membership()
            counts = await heal.placed_counts()
            nodes = [{"id": v.id, "state": v.state.value, "address": v.address, "zone": v.zone,
                      "weight": v.weight, "placed_shards": counts.get(v.id, 0),
                      "used_bytes": v.used_bytes, "capacity_bytes": v.capacity_bytes,
                      "moves_from": status.moves_from.get(v.id, 0),
                      "moves_to": status.moves_to.get(v.id, 0)}
                     for v in storage_views(cluster_map)]
            return {"epoch": cluster_map.epoch, "nodes": nodes, "members": status.members,
                    "move_backlog": status.move_backlog, "moves_leased": status.moves_leased,
                    "moves_stuck": status.moves_stuck, "stuck_reasons": status.stuck_reasons}

    return asyncio.run(fetch())
