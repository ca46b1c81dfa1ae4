"""What ``blobstore scrub`` and ``blobstore repair`` do, and the healing part of ``status``.

- ``run_scrub``: POST ``/v1/scrub`` on each chosen storage node (every storage node of the
  config by default), which starts a pass now and answers the pass count that marks it done;
  with ``wait``, poll ``GET /v1/scrub`` until every node's ``passes_completed`` exceeds it.
  Corrupt shards a pass finds are quarantined and reported to meta by the node itself, so
  they are queued for repair by the time the scrub is done. An unreachable node is a
  warning when scrubbing the whole cluster and an error when it was named.
- ``run_repair``: POST ``/v1/repair`` on every storage node, which makes its repairer look
  at the backlog now; with ``wait``, poll meta's ``GET /v1/heal/status`` (nudging the
  repairers again every ``NUDGE_EVERY_S``) until the repair backlog is 0 and no down node
  is still waiting to be marked. It gives up, not done, when every remaining task has
  failed and stays failed for ``stuck_patience_s`` (lost segments, no spare node: the
  reasons are in the result), or at ``timeout_s``.
- ``heal_status_fields``: the fields ``blobstore status`` adds from ``GET /v1/heal/status``.

Each function returns a plain dict (printed by ``cli/heal.py`` as text or JSON) and reports
progress through an optional callback, one line at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import BlobstoreError, Invalid, Unavailable
from blobstore.core.records import NodeRole
from blobstore.core.repair_plan import durability
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.heal_client import HealClient, StorageHealClient
from blobstore.rpc.heal_wire import HealStatus
from blobstore.rpc.meta_client import MetaClient

Progress = Callable[[str], None]
RPC_TIMEOUT_S = 10.0
META_ATTEMPTS = 2
POLL_S = 0.5
NUDGE_EVERY_S = 10.0


def meta_client(session: aiohttp.ClientSession, config: ClusterConfig) -> MetaClient:
    addresses = [node.address for node in config.by_role(NodeRole.META)]
    return MetaClient(RpcClient(session, config.secret), addresses, attempts=META_ATTEMPTS,
                      timeout_s=RPC_TIMEOUT_S)


def chosen_storage_nodes(config: ClusterConfig, node_ids: tuple[str, ...]) -> list[NodeConfig]:
    storage = config.by_role(NodeRole.STORAGE)
    if not node_ids:
        return storage
    known = {node.id: node for node in storage}
    unknown = [node_id for node_id in node_ids if node_id not in known]
    if unknown:
        raise Invalid(f"not a storage node of this cluster: {', '.join(unknown)}")
    return [known[node_id] for node_id in dict.fromkeys(node_ids)]


def _quiet(_line: str) -> None:
    pass


# ---- scrub ------------------------------------------------------------------------------------


def run_scrub(config: ClusterConfig, node_ids: tuple[str, ...] = (), wait: bool = False,
              timeout_s: float | None = None, progress: Progress = _quiet) -> dict[str, Any]:
    nodes = chosen_storage_nodes(config, node_ids)
    return asyncio.run(_scrub(config, nodes, wait, timeout_s, progress, strict=bool(node_ids)))


async def _scrub(config: ClusterConfig, nodes: list[NodeConfig], wait: bool,
                 timeout_s: float | None, progress: Progress, strict: bool) -> dict[str, Any]:
    async with new_session() as session:
        client = StorageHealClient(RpcClient(session, config.secret))
        entries = {node.id: {"id": node.id, "address": node.address, "ok": False,
                             "error": None, "done": False} for node in nodes}
        for node in nodes:
            entry = entries[node.id]
            try:
                before = await client.scrub_status(node.address, timeout_s=RPC_TIMEOUT_S)
                entry["corrupt_before"] = int(before.get("corrupt_found", 0))
                entry["target"] = await client.start_scrub(node.address, timeout_s=RPC_TIMEOUT_S)
                entry["ok"] = True
            except BlobstoreError as exc:
                entry["error"] = str(exc)
                progress(f"warning: {node.id}: {exc}")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            await _poll_scrubs(client, nodes, entries, progress)
            pending = [e for e in entries.values() if e["ok"] and not e["done"]]
            if not wait or not pending or (deadline and time.monotonic() > deadline):
                break
            await asyncio.sleep(POLL_S)
    found = sum(e.get("corrupt_found", 0) - e.get("corrupt_before", 0)
                for e in entries.values() if e["ok"])
    failed = [e["id"] for e in entries.values() if not e["ok"]]
    result = {"nodes": list(entries.values()), "corrupt_found": found,
              "complete": all(e["done"] for e in entries.values() if e["ok"]),
              "unreachable": failed}
    if (strict and failed) or len(failed) == len(entries):
        result["error"] = f"could not start a scrub on {', '.join(failed)}"
    return result


async def _poll_scrubs(client: StorageHealClient, nodes: list[NodeConfig],
                       entries: dict[str, dict[str, Any]], progress: Progress) -> None:
    for node in nodes:
        entry = entries[node.id]
        if not entry["ok"] or entry["done"]:
            continue
        try:
            status = await client.scrub_status(node.address, timeout_s=RPC_TIMEOUT_S)
        except BlobstoreError as exc:
            entry["error"] = str(exc)
            continue
        entry.update(passes_completed=int(status.get("passes_completed", 0)),
                     shards_checked=int(status.get("shards_checked", 0)),
                     shards_total=int(status.get("shards_total", 0)),
                     corrupt_found=int(status.get("corrupt_found", 0)))
        if entry["passes_completed"] > entry["target"]:
            entry["done"] = True
            progress(f"{node.id}: pass done, {entry['shards_checked']} shards checked, "
                     f"{entry['corrupt_found'] - entry['corrupt_before']} corrupt")


# ---- repair -----------------------------------------------------------------------------------


def run_repair(config: ClusterConfig, wait: bool = False, timeout_s: float | None = None,
               progress: Progress = _quiet) -> dict[str, Any]:
    return asyncio.run(_repair(config, wait, timeout_s, progress))


async def _repair(config: ClusterConfig, wait: bool, timeout_s: float | None,
                  progress: Progress) -> dict[str, Any]:
    patience_s = config.repair_retry_s + 10.0
    async with new_session() as session:
        heal = HealClient(meta_client(session, config))
        workers = StorageHealClient(RpcClient(session, config.secret))
        woken, unreachable = await _nudge(workers, config)
        started = last_nudge = time.monotonic()
        stuck_since: float | None = None
        last_line = ""
        while True:
            status = await heal.status()
            done = status.repair_backlog == 0 and not status.nodes_pending_down
            all_stuck = bool(status.repair_backlog) and \
                status.repair_stuck >= status.repair_backlog and not status.repair_leased
            stuck_since = (stuck_since or time.monotonic()) if all_stuck else None
            line = (f"repair backlog {status.repair_backlog} ({status.repair_leased} in "
                    f"progress, {status.repair_stuck} failing), degraded "
                    f"{status.degraded_segments}")
            if line != last_line:
                progress(line)
                last_line = line
            now = time.monotonic()
            gave_up = stuck_since is not None and now - stuck_since >= patience_s
            timed_out = timeout_s is not None and now - started >= timeout_s
            if not wait or done or gave_up or timed_out:
                break
            if now - last_nudge >= NUDGE_EVERY_S:
                await _nudge(workers, config)
                last_nudge = now
            await asyncio.sleep(POLL_S)
    result: dict[str, Any] = {
        "done": done, "repair_backlog": status.repair_backlog,
        "degraded_segments": status.degraded_segments, "lost_segments": status.lost_segments,
        "repair_stuck": status.repair_stuck, "stuck_reasons": status.stuck_reasons,
        "nodes_pending_down": status.nodes_pending_down, "woken": woken,
        "unreachable": unreachable}
    if wait and not done:
        why = "; ".join(status.stuck_reasons) or "timed out"
        result["error"] = (f"{status.repair_backlog} segment(s) still queued for repair: {why}")
    return result


async def _nudge(workers: StorageHealClient,
                 config: ClusterConfig) -> tuple[list[str], list[str]]:
    nodes = config.by_role(NodeRole.STORAGE)
    results = await asyncio.gather(
        *(workers.wake(node.address, "repair", timeout_s=RPC_TIMEOUT_S) for node in nodes),
        return_exceptions=True)
    woken = [n.id for n, r in zip(nodes, results, strict=True) if not isinstance(r, Exception)]
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, BlobstoreError):
            raise result
    return woken, [n.id for n in nodes if n.id not in woken]


# ---- status -----------------------------------------------------------------------------------


async def fetch_heal_status(meta: MetaClient) -> HealStatus | None:
    """Meta's healing status, or None from a meta service without the heal routes."""
    try:
        return await HealClient(meta).status()
    except Unavailable:
        raise
    except BlobstoreError:
        return None


def heal_status_fields(config: ClusterConfig, heal: HealStatus | None) -> dict[str, Any]:
    """What ``status`` shows from the heal status (merged into its ``--json`` object)."""
    if heal is None:
        return {}
    summary = durability(heal.min_healthy, config.data_shards, config.parity_shards,
                         heal.lost_segments)
    if heal.nodes_pending_down:
        summary += f"; {', '.join(heal.nodes_pending_down)} down, repair about to start"
    return {
        "repair_in_progress": heal.repair_leased, "repair_stuck": heal.repair_stuck,
        "stuck_reasons": heal.stuck_reasons, "lost_segments": heal.lost_segments,
        "gc_backlog": heal.gc_backlog, "durability_summary": summary,
        "scrub": [{"node": s.node_id, "passes_completed": s.passes_completed,
                   "shards_checked": s.shards_checked, "shards_total": s.shards_total,
                   "corrupt_found": s.corrupt_found,
                   "last_pass_completed_s": s.last_pass_completed_s} for s in heal.scrub],
    }


def add_heal_status(config: ClusterConfig, result: dict[str, Any]) -> None:
    """Merge the heal status into ``blobstore status``'s result (nothing if meta is down)."""
    if "error" in result:
        return

    async def fetch() -> HealStatus | None:
        async with new_session() as session:
            return await asyncio.wait_for(fetch_heal_status(meta_client(session, config)),
                                          RPC_TIMEOUT_S)

    try:
        heal = asyncio.run(fetch())
    except (BlobstoreError, TimeoutError):
        return
    fields = heal_status_fields(config, heal)
    if not fields:
        return
    result.update(fields)
    if isinstance(result.get("durability"), dict):
        result["durability"]["summary"] = fields["durability_summary"]


def heal_status_lines(result: dict[str, Any]) -> list[str]:
    """The text lines ``blobstore status`` prints for the fields ``add_heal_status`` added."""
    if "repair_stuck" not in result:
        return []
    lines = [f"repairing now      {result['repair_in_progress']} segment(s)",
             f"repair failing     {result['repair_stuck']} segment(s)"
             + (f" ({result['stuck_reasons'][0]})" if result["stuck_reasons"] else ""),
             f"lost segments      {result['lost_segments']}",
             f"gc backlog         {result['gc_backlog']} segment(s)"]
    for scrub in result["scrub"]:
        lines.append(f"scrub  {scrub['node']:<12} {scrub['passes_completed']} pass(es), "
                     f"{scrub['shards_checked']}/{scrub['shards_total']} shards this pass, "
                     f"{scrub['corrupt_found']} corrupt found")
    return lines
