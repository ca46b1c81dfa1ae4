"""What ``blobstore status`` and ``blobstore locate`` report, from the metadata service.

Both ask meta over the signed internal RPC (``MetaClient``) with a deadline, and turn the
answers into the plain dicts of SPEC §2 (``status --json`` and ``locate --json``); the CLI
only prints them. The builders are pure functions of what was fetched, so they are tested
without a cluster.

Rules:
- ``status`` lists every node of cluster.toml, then any node the cluster map has that the
  file lacks. A storage node's state comes from the cluster map (meta judges it by its
  heartbeats); every other node (meta and gateways send no heartbeats, so the map cannot
  know) is probed on ``/_blobstore/healthz``: down if that fails, else the map's state.
  Its pid is the one ``up`` recorded in D/run/pids.json, if that process still runs.
- If meta cannot be reached (no replica, or no leader: quorum lost), ``status`` still
  reports what the file says, every state ``unknown``, with ``error`` set, and the command
  fails; ``meta_replicas`` then shows what each replica says of itself.
- Meta is a Raft group: ``leader`` is the leader's id and ``term`` its term, both from the
  leader's own status (asked through the leader, which alone knows each replica's match
  index); ``meta_replicas`` lists every meta node of the file (and any voter the file
  lacks), each with its own answer (role, term, commit index, last applied; ``unreachable``
  if it did not answer) and the leader's view of it (voter, match index, next index,
  progress state, reachable).
- ``meta add|remove ID`` (``change_membership``) asks the leader for a dry run first: it
  refuses a change after which the voters it can reach would not be a quorum (or that
  would leave no voter); then, unless ``dry_run``, makes the change.
- ``locate`` names, for each segment of the object (in object order) and each shard index,
  the node holding it and the shard file on that node:
  ``<data_dir>/shards/<id[0:2]>/<id[2:4]>/<id>.<index>``. State is ``ok``, or ``missing``
  when the placement has no node for that index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from blobstore.config import ClusterConfig
from blobstore.core.errors import BlobstoreError, Invalid, Unavailable
from blobstore.core.records import ClusterMap, Manifest, NodeRole, NodeState
from blobstore.launch.cluster_dir import pid_alive, read_pids
from blobstore.launch.health import HEALTH_PATH
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.meta_client import MetaClient

META_DEADLINE_S = 10.0
META_ATTEMPTS = 2
PROBE_DEADLINE_S = 2.0
UNKNOWN = "unknown"
_T = TypeVar("_T")


# -- status ------------------------------------------------------------------------------------


def cluster_status(config: ClusterConfig) -> dict[str, Any]:
    """SPEC §2 ``status --json``; ``error`` is set (and states unknown) if meta is unreachable."""
    pids = _live_pids(config)
    try:
        status, cluster_map, probes, replicas = asyncio.run(_fetch_status(config))
    except _NoLeaderView as failed:
        addresses = ", ".join(node.address for node in config.by_role(NodeRole.META))
        return build_status(config, pids, None, None, {}, replicas=failed.replicas,
                            error=f"metadata service unreachable ({addresses}): "
                                  f"{failed.error}")
    return build_status(config, pids, status, cluster_map, probes, replicas=replicas)


class _NoLeaderView(Exception):
    """Meta did not answer through a leader; what each replica said of itself, if any."""

    def __init__(self, error: BlobstoreError, replicas: dict[str, Any]) -> None:
        super().__init__(error.message)
        self.error = error
        self.replicas = replicas


async def _fetch_status(config: ClusterConfig) -> tuple[Any, ClusterMap, dict[str, bool],
                                                        dict[str, Any]]:
    async with new_session() as session:
        meta = _meta_client(session, config)
        metas = config.by_role(NodeRole.META)
        answers = await asyncio.gather(*(_replica_status(meta, node.address) for node in metas))
        replicas = {node.id: answer for node, answer in zip(metas, answers, strict=True)}
        try:
            status = await _deadline(meta.status(), "meta status")
            cluster_map = await _deadline(meta.cluster_map(), "meta cluster map")
        except BlobstoreError as error:
            raise _NoLeaderView(error, replicas) from error
        tracked = {view.id for view in cluster_map.nodes if view.role == NodeRole.STORAGE}
        probed = [node for node in config.nodes if node.id not in tracked]
        results = await asyncio.gather(*(_probe(session, node.address) for node in probed))
        return status, cluster_map, {node.id: ok for node, ok in zip(probed, results,
                                                                     strict=True)}, replicas


async def _replica_status(meta: MetaClient, address: str) -> dict[str, Any] | None:
    try:
        return await meta.status_of(address, timeout_s=PROBE_DEADLINE_S)
    except BlobstoreError:
        return None


async def _probe(session: aiohttp.ClientSession, address: str) -> bool:
    try:
        async with session.get(f"http://{address}{HEALTH_PATH}",
                               timeout=aiohttp.ClientTimeout(total=PROBE_DEADLINE_S)) as response:
            await response.read()
            return response.status == 200
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False


def _live_pids(config: ClusterConfig) -> dict[str, int]:
    pids = read_pids(config.base_dir / "run" / "pids.json") if config.path else None
    if pids is None:
        return {}
    return {node: pid for node, pid in pids.nodes.items() if pid and pid_alive(pid)}


def build_status(config: ClusterConfig, pids: dict[str, int], status: Any,
                 cluster_map: ClusterMap | None, probes: dict[str, bool],
                 error: str | None = None,
                 replicas: dict[str, Any] | None = None) -> dict[str, Any]:
    views = {view.id: view for view in cluster_map.nodes} if cluster_map else {}
    nodes = []
    for node in config.nodes:
        view = views.pop(node.id, None)
        nodes.append(_node_entry(node.id, str(node.role.value), node.address, node.zone,
                                 _state(view, probes.get(node.id), error is not None),
                                 pids.get(node.id), view))
    for view in views.values():  # in the map but not in this cluster.toml (added elsewhere)
        nodes.append(_node_entry(view.id, str(view.role.value), view.address, view.zone,
                                 str(view.state.value), None, view))
    result: dict[str, Any] = {
        "cluster": config.path,
        "leader": _field(status, "leader"),
        "term": _field(status, "term"),
        "nodes": nodes,
        "repair_backlog": _field(status, "repair_backlog"),
        "degraded_segments": _field(status, "degraded_segments"),
        "objects": _field(status, "objects"),
        "segments": _field(status, "segments"),
        "commit_index": _field(status, "commit_index"),
        "meta_replicas": build_meta_replicas(config, status, replicas or {}),
        "endpoint": _endpoint(config),
        "durability": _durability(config, nodes, _field(status, "degraded_segments")),
    }
    if error is not None:
        result["error"] = error
    return result


def build_meta_replicas(config: ClusterConfig, leader_status: Any,
                        replicas: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per meta node (file order, then voters the file lacks): what it says of
    itself and what the leader says of it."""
    progress = _field(leader_status, "replicas") or {}
    voters = _field(leader_status, "voters") or list(progress)
    addresses = {node.id: node.address for node in config.by_role(NodeRole.META)}
    ids = list(addresses) + [v for v in voters if v not in addresses]
    entries = []
    for node_id in ids:
        own = replicas.get(node_id)
        seen = progress.get(node_id) or {}
        entries.append({
            "id": node_id, "address": addresses.get(node_id) or seen.get("address"),
            "role": (own or {}).get("role", "unreachable" if leader_status or replicas
                                    else UNKNOWN),
            "voter": node_id in voters if voters else None,
            "term": (own or {}).get("term"), "commit_index": (own or {}).get("commit_index"),
            "last_applied": (own or {}).get("last_applied"),
            "match_index": seen.get("match_index"), "next_index": seen.get("next_index"),
            "progress": seen.get("state"), "reachable": seen.get("reachable"),
        })
    return entries


def _state(view: Any, probe_ok: bool | None, meta_unreachable: bool) -> str:
    """The map's state for what meta observes (storage heartbeats); a failed probe is down."""
    if meta_unreachable:
        return UNKNOWN
    if probe_ok is False:
        return NodeState.DOWN.value
    if view is not None:
        return str(view.state.value)
    return NodeState.UP.value if probe_ok else UNKNOWN


def _node_entry(node_id: str, role: str, address: str, zone: str, state: str, pid: int | None,
                view: Any) -> dict[str, Any]:
    return {"id": node_id, "role": role, "address": address, "zone": zone, "state": state,
            "pid": pid, "capacity_bytes": view.capacity_bytes if view else None,
            "used_bytes": view.used_bytes if view else None}


def _endpoint(config: ClusterConfig) -> str | None:
    gateways = config.by_role(NodeRole.GATEWAY)
    return gateways[0].url if gateways else None


def _durability(config: ClusterConfig, nodes: list[dict[str, Any]],
                degraded: int | None) -> dict[str, Any]:
    """A rough estimate: how many more storage node losses every healthy segment survives."""
    storage = [n for n in nodes if n["role"] == NodeRole.STORAGE.value
               and n["state"] != NodeState.REMOVED.value]
    up = sum(1 for n in storage if n["state"] == "up")
    k, m = config.data_shards, config.parity_shards
    if degraded is None:
        summary = "unknown (meta unreachable)"
    elif degraded:
        summary = f"{degraded} degraded segment(s) survive fewer than {m} more losses"
    else:
        summary = f"every segment survives the loss of any {m} storage node(s)"
    return {"data_shards": k, "parity_shards": m, "storage_nodes_up": up,
            "storage_nodes": len(storage), "spare_storage_nodes": max(0, up - (k + m)),
            "summary": summary}


# -- locate ------------------------------------------------------------------------------------


def locate_object(config: ClusterConfig, bucket: str, key: str) -> dict[str, Any]:
    """SPEC §2 ``locate --json`` for s3://bucket/key."""
    manifest, cluster_map = asyncio.run(_fetch_manifest(config, bucket, key))
    return build_locate(config, manifest, cluster_map)


async def _fetch_manifest(config: ClusterConfig, bucket: str,
                          key: str) -> tuple[Manifest, ClusterMap]:
    async with new_session() as session:
        meta = _meta_client(session, config)
        manifest = await _deadline(meta.get_manifest(bucket, key), "meta get_manifest")
        cluster_map = await _deadline(meta.cluster_map(), "meta cluster map")
        return manifest, cluster_map


def shard_path(data_dir: str, segment_id: str, index: int) -> str:
    """The file of shard ``<segment id>.<index>`` on a storage node (its on-disk layout)."""
    return str(Path(data_dir) / "shards" / segment_id[0:2] / segment_id[2:4]
               / f"{segment_id}.{index}")


def build_locate(config: ClusterConfig, manifest: Manifest,
                 cluster_map: ClusterMap | None) -> dict[str, Any]:
    version = manifest.version
    data_dirs = {node.id: node.data_dir for node in config.nodes}
    addresses = {node.id: node.address for node in config.nodes}
    if cluster_map is not None:
        addresses.update({view.id: view.address for view in cluster_map.nodes})
    segments = []
    for ref in version.segments:
        segment = manifest.segments.get(ref.id)
        shards = []
        for index, node_id in enumerate(segment.placement if segment else []):
            shards.append({
                "index": index, "node": node_id,
                "address": addresses.get(node_id) if node_id else None,
                "path": (shard_path(data_dirs[node_id], ref.id, index)
                         if node_id and node_id in data_dirs else None),
                "state": "ok" if node_id else "missing"})
        segments.append({
            "id": ref.id, "offset": ref.offset, "length": ref.length,
            "k": segment.data_shards if segment else config.data_shards,
            "m": segment.parity_shards if segment else config.parity_shards,
            "shards": shards})
    return {"bucket": version.bucket, "key": version.key, "size": version.size,
            "etag": version.etag, "version_id": version.version_id, "segments": segments,
            "inline": version.inline is not None}


# -- shared ------------------------------------------------------------------------------------


def _meta_client(session: aiohttp.ClientSession, config: ClusterConfig) -> MetaClient:
    addresses = [node.address for node in config.by_role(NodeRole.META)]
    return MetaClient(RpcClient(session, config.secret), addresses, attempts=META_ATTEMPTS,
                      deadline_s=META_DEADLINE_S)


# -- membership --------------------------------------------------------------------------------


def change_membership(config: ClusterConfig, kind: str, node_id: str,
                      dry_run: bool = False) -> dict[str, Any]:
    """``blobstore meta add|remove ID``: the leader's plan (and, unless ``dry_run``, the
    change made: ``voters``). Refused (Conflict) if it would leave the group without a
    quorum of reachable voters; Invalid if ``add`` names no meta node of cluster.toml."""
    if kind == "add" and node_id not in {n.id for n in config.by_role(NodeRole.META)}:
        raise Invalid(f"{node_id} is not a meta node of {config.path or 'cluster.toml'}: "
                      "add it there (role = \"meta\") and start it first")
    return asyncio.run(_change_membership(config, kind, node_id, dry_run))


async def _change_membership(config: ClusterConfig, kind: str, node_id: str,
                             dry_run: bool) -> dict[str, Any]:
    async with new_session() as session:
        meta = _meta_client(session, config)
        plan = await _deadline(meta.conf_change(kind, node_id, dry_run=True), "meta dry run")
        if dry_run:
            return plan
        return await _deadline(meta.conf_change(kind, node_id), f"meta {kind}")


def transfer_leadership(config: ClusterConfig, node_id: str) -> dict[str, Any]:
    """``blobstore meta transfer ID``: ``{"leader", "term"}`` once ``node_id`` leads."""

    async def transfer() -> dict[str, Any]:
        async with new_session() as session:
            meta = _meta_client(session, config)
            return await _deadline(meta.transfer_leader(node_id), "meta transfer")

    return asyncio.run(transfer())


async def _deadline(call: Awaitable[_T], what: str) -> _T:
    try:
        return await asyncio.wait_for(call, META_DEADLINE_S)
    except TimeoutError as exc:
        raise Unavailable(f"{what}: no answer within {META_DEADLINE_S:g}s") from exc


def _field(value: Any, name: str) -> Any:
    """A field of a meta answer, whether it is a dict or a struct (None if absent)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)
