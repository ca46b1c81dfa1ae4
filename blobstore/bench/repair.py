"""Repair throughput after a storage node is lost, and losing a node on purpose.

``measure_repair`` starts a real cluster (1 meta, 8 storage, 1 gateway, EC 4+2, repair
unthrottled), uploads ``data_bytes`` of distinct data, then loses one storage node for
good (``lose_node``: SIGKILL, data dir deleted; once meta sees it silent, so that no
repairer picks it as a target, it is declared down with ``mark_node_down``, what the
leader's failure detector proposes after ``down_after_s``, done at once here so the wait
is not measured; every repairer is woken). The clock runs until the repair backlog is 0:

- ``user_data_mb_per_s``: bytes of user data (segment lengths) of the segments that lost a
  shard, restored to full k+m redundancy, per second: "MB/s of user data rebuilt after a
  node is lost";
- ``shard_mb_per_s``: bytes of shards re-created (the lost node's payload) per second; the
  cluster read ``data_shards`` times as much to rebuild them.

``lose_node`` is also what ``background.py`` uses to make the cluster repair (at its
default rate) while foreground traffic runs. MB = 10^6 bytes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blobstore.client.s3 import S3Client
from blobstore.config import DEFAULT_SEGMENT_SIZE_BYTES
from blobstore.core.records import NodeRole, NodeState
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.heal_client import HealClient, StorageHealClient
from blobstore.rpc.meta_client import MetaClient
from blobstore.rpc.storage_client import StorageClient

# blobstore.testing.processes.Cluster: the bench scripts pass the harness in (the package
# itself never imports blobstore.testing, tests/unit/test_architecture.py).
ClusterHandle = Any
MIB = 1024 * 1024
VICTIM = "storage-4"
TARGET_MB_PER_S = 100
NOTICE_TIMEOUT_S = 120.0
UPLOAD_OBJECT_MIB = 64


def unthrottled(concurrency: int) -> dict[str, object]:
    """Cluster settings for a repair at full speed (the default paces it for foreground)."""
    return {"repair_rate_bytes_per_s": 0, "repair_concurrency": concurrency}


def upload(cluster: ClusterHandle, data_bytes: int, bucket: str = "bench") -> float:
    """Write ``data_bytes`` of random data as 64 MiB objects; the upload rate in bytes/s."""
    client = S3Client(cluster.endpoint, *cluster.credentials)
    total_mib = max(1, data_bytes // MIB)
    try:
        client.create_bucket(bucket)
        started = time.perf_counter()
        for number in range(0, total_mib, UPLOAD_OBJECT_MIB):
            mib = min(UPLOAD_OBJECT_MIB, total_mib - number)
            client.put_stream(bucket, f"obj-{number}", (os.urandom(MIB) for _ in range(mib)))
        return total_mib * MIB / (time.perf_counter() - started)
    finally:
        client.close()


async def held_by(storage: StorageClient, address: str) -> tuple[int, int, int]:
    """(shards, shard payload bytes, user bytes of their segments) a node holds."""
    shards = payload = user = 0
    after: str | None = ""
    while after is not None:
        rows, after = await storage.list_shards(address, after or "", 1000)
        shards += len(rows)
        payload += sum(row.payload_length for row in rows)
        user += sum(row.segment_length for row in rows)
    return shards, payload, user


def meta_client(cluster: ClusterHandle, rpc: RpcClient) -> MetaClient:
    return MetaClient(rpc, [n.address for n in cluster.config.by_role(NodeRole.META)])


async def kill_for_good(cluster: ClusterHandle, rpc: RpcClient, victim: str,
                        notice_timeout_s: float = NOTICE_TIMEOUT_S) -> None:
    """SIGKILL ``victim``, delete its data, wait until meta no longer sees it up."""
    meta = meta_client(cluster, rpc)
    await asyncio.to_thread(cluster.kill, victim)
    await asyncio.to_thread(shutil.rmtree, Path(cluster.node(victim).data_dir), True)
    deadline = time.monotonic() + notice_timeout_s
    while True:  # wait for meta to notice: no repair may pick the dead node as a target
        states = {v.id: v.state for v in (await meta.cluster_map()).nodes}
        if states[victim] != NodeState.UP:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"meta still sees {victim} up {notice_timeout_s:.0f} s after "
                               "it was killed")
        await asyncio.sleep(0.2)


async def queue_repair(cluster: ClusterHandle, rpc: RpcClient, victim: str) -> int:
    """Declare ``victim`` down and wake every live repairer; segments queued."""
    queued = await HealClient(meta_client(cluster, rpc)).mark_node_down(victim)
    workers = StorageHealClient(rpc)
    live = [n for n in cluster.config.by_role(NodeRole.STORAGE) if cluster.is_running(n.id)]
    await asyncio.gather(*(workers.wake(n.address, "repair") for n in live))
    return queued


async def lose_node(cluster: ClusterHandle, rpc: RpcClient, victim: str) -> int:
    """Lose ``victim`` for good and start the repair of what it held; segments queued."""
    await kill_for_good(cluster, rpc, victim)
    return await queue_repair(cluster, rpc, victim)


async def lose_and_repair(cluster: ClusterHandle, victim: str = VICTIM) -> dict[str, Any]:
    """Lose ``victim``, time the repair until the backlog is 0."""
    config = cluster.config
    async with new_session(limit_per_host=16) as session:
        rpc = RpcClient(session, config.secret)
        meta = meta_client(cluster, rpc)
        shards, payload, user = await held_by(StorageClient(rpc), cluster.node(victim).address)
        noticed = time.perf_counter()
        await kill_for_good(cluster, rpc, victim)
        started = time.perf_counter()  # the wait for meta to notice is not repair time
        notice_s = started - noticed
        queued = await queue_repair(cluster, rpc, victim)
        while (await meta.status())["repair_backlog"]:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    return {"victim": victim, "segments_repaired": queued, "lost_shards": shards,
            "lost_shard_bytes": payload, "user_bytes_restored": user,
            "seconds": round(elapsed, 2), "notice_seconds": round(notice_s, 2),
            "user_data_mb_per_s": round(user / elapsed / 1e6, 1),
            "shard_mb_per_s": round(payload / elapsed / 1e6, 1)}


def measure_repair(make_cluster: Callable[..., Any], root: Path, data_bytes: int,
                   segment_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES, concurrency: int = 4,
                   victim: str = VICTIM) -> dict[str, Any]:
    """A cluster of its own in ``root`` (``make_cluster``: the harness's ``Cluster``, which
    kills every process by pid at the end), unthrottled repair."""
    with make_cluster(root, storage=8, segment_size_bytes=segment_bytes, down_after_s=3600,
                 settings=unthrottled(concurrency)) as cluster:
        upload_rate = upload(cluster, data_bytes)
        result = asyncio.run(lose_and_repair(cluster, victim))
    result.update({"bench": "repair_rate", "data_bytes": data_bytes,
                   "segment_bytes": segment_bytes, "repair_concurrency": concurrency,
                   "repair_rate_bytes_per_s": 0, "meta": 1, "storage": 8,
                   "upload_mb_per_s": round(upload_rate / 1e6, 1),
                   "target_mb_per_s": TARGET_MB_PER_S})
    return result
