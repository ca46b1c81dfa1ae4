"""Repair throughput after a storage node is lost: MB/s rebuilt by the whole cluster.

Starts a real cluster (1 meta, 8 storage, 1 gateway, EC 4+2, repair unthrottled), uploads
``--size-mib`` of distinct data, then loses one storage node for good (SIGKILL, data dir
deleted). Once meta sees it silent (suspect, so no repairer picks it as a target), the
node is declared down (``mark_node_down``, what the leader's failure detector proposes
after ``down_after_s``; done here at once so the wait is not measured), every repairer is
woken, and the clock runs until the repair backlog is 0. Reported:

- ``user_data_mb_per_s``: bytes of user data (segment lengths) of the segments that lost a
  shard, restored to full k+m redundancy, per second: the issue's "MB/s of user data
  rebuilt after a node is lost";
- ``shard_mb_per_s``: bytes of shards re-created (the lost node's payload) per second; the
  cluster read ``data_shards`` times as much to rebuild them.

    python bench/repair_rate.py [--size-mib 1024] [--concurrency 4] [--segment-mib 4] [--json]

MB = 10^6 bytes. Target on the reference machine: >= 100 MB/s of user data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time

from blobstore.client.s3 import S3Client
from blobstore.core.records import NodeRole, NodeState
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.heal_client import HealClient, StorageHealClient
from blobstore.rpc.meta_client import MetaClient
from blobstore.rpc.storage_client import StorageClient
from blobstore.testing.processes import Cluster

MIB = 1024 * 1024
VICTIM = "storage-4"


def configure(cluster: Cluster, concurrency: int) -> None:
    """Unthrottled repair (the knob's default paces it for foreground traffic)."""
    path = cluster.config_path
    text = path.read_text()
    text = text.replace(f"repair_rate_bytes_per_s = {cluster.config.repair_rate_bytes_per_s}",
                        "repair_rate_bytes_per_s = 0")
    text = text.replace(f"repair_concurrency = {cluster.config.repair_concurrency}",
                        f"repair_concurrency = {concurrency}")
    path.write_text(text)


def upload(cluster: Cluster, size_mib: int) -> float:
    client = S3Client(cluster.endpoint, *cluster.credentials)
    try:
        client.create_bucket("bench")
        started = time.perf_counter()
        for number in range(0, size_mib, 64):
            mib = min(64, size_mib - number)
            client.put_stream("bench", f"obj-{number}", (os.urandom(MIB) for _ in range(mib)))
        return size_mib * MIB / (time.perf_counter() - started)
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


async def lose_and_repair(cluster: Cluster) -> dict[str, object]:
    config = cluster.config
    async with new_session(limit_per_host=16) as session:
        rpc = RpcClient(session, config.secret)
        meta = MetaClient(rpc, [n.address for n in config.by_role(NodeRole.META)])
        storage = StorageClient(rpc)
        shards, payload, user = await held_by(storage, cluster.node(VICTIM).address)
        segments = shards  # a node holds at most one shard of a segment
        cluster.kill(VICTIM)
        shutil.rmtree(cluster.node(VICTIM).data_dir)
        while True:  # wait for meta to notice: no repair may pick the dead node as a target
            states = {v.id: v.state for v in (await meta.cluster_map()).nodes}
            if states[VICTIM] != NodeState.UP:
                break
            await asyncio.sleep(0.2)
        started = time.perf_counter()
        queued = await HealClient(meta).mark_node_down(VICTIM)
        workers = StorageHealClient(rpc)
        live = [n for n in config.by_role(NodeRole.STORAGE) if n.id != VICTIM]
        await asyncio.gather(*(workers.wake(n.address, "repair") for n in live))
        while (await meta.status())["repair_backlog"]:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    return {"segments_repaired": queued, "lost_shards": segments,
            "lost_shard_bytes": payload, "user_bytes_restored": user,
            "seconds": round(elapsed, 2),
            "user_data_mb_per_s": round(user / elapsed / 1e6, 1),
            "shard_mb_per_s": round(payload / elapsed / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--segment-mib", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="repair_concurrency")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="repair-bench-") as root, \
            Cluster(root, storage=8, segment_size_bytes=args.segment_mib * MIB,
                    down_after_s=3600, start=False) as cluster:
        configure(cluster, args.concurrency)
        cluster.start_all()
        upload_rate = upload(cluster, args.size_mib)
        result = asyncio.run(lose_and_repair(cluster))
    result.update({"bench": "repair_rate", "data_mib": args.size_mib,
                   "segment_mib": args.segment_mib, "repair_concurrency": args.concurrency,
                   "upload_mb_per_s": round(upload_rate / 1e6, 1), "target_mb_per_s": 100})
    if args.json:
        print(json.dumps(result))
    else:
        print(f"lost {VICTIM}: {result['lost_shards']} shards, "
              f"{result['lost_shard_bytes'] / 1e6:.0f} MB; rebuilt in {result['seconds']} s: "
              f"{result['user_data_mb_per_s']} MB/s of user data made whole "
              f"({result['shard_mb_per_s']} MB/s of shards re-created; target >= 100 MB/s)")


if __name__ == "__main__":
    main()
