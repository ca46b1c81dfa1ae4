"""Committed metadata commands per second, and their commit latency.

Starts a real cluster (3 meta replicas by default), then drives ``put_object`` commands
(a 0-byte object version: the smallest real command, one LMDB write per replica) from many
concurrent clients straight at the meta service, as gateways do. Every command is answered
only after a majority of replicas fsync'd it and the leader applied it.

    python bench/meta_commits.py [--meta 3] [--concurrency 64] [--duration 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time

from blobstore.core.records import NodeRole, ObjectVersion
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.meta_client import MetaClient
from blobstore.testing.processes import Cluster


async def drive(addresses: list[str], secret: str, concurrency: int,
                duration_s: float) -> dict[str, object]:
    session = new_session(limit_per_host=concurrency)
    latencies: list[float] = []
    errors = 0
    try:
        rpc = RpcClient(session, secret)
        await MetaClient(rpc, addresses).create_bucket("bench", time.time_ns())
        deadline = time.monotonic() + duration_s

        async def worker(number: int) -> None:
            nonlocal errors
            client = MetaClient(rpc, addresses, client_id=f"bench-{number}")
            count = 0
            while time.monotonic() < deadline:
                version = ObjectVersion(bucket="bench", key=f"w{number}/{count}",
                                        version_id=f"{number}-{count}", size=0,
                                        etag="d41d8cd98f00b204e9800998ecf8427e",
                                        created_ns=time.time_ns(), segments=[])
                started = time.perf_counter()
                try:
                    await client.put_object(version, [])
                    latencies.append(time.perf_counter() - started)
                except Exception:  # noqa: BLE001 - a benchmark counts every failure
                    errors += 1
                count += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.monotonic() - started
    finally:
        await session.close()
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"commands": len(latencies), "errors": errors, "duration_s": round(elapsed, 2),
            "commands_per_s": round(len(latencies) / elapsed, 1),
            "latency_ms": {"p50": round(pick(0.50), 2), "p99": round(pick(0.99), 2),
                           "max": round(latencies[-1] * 1000, 2),
                           "mean": round(statistics.fmean(latencies) * 1000, 2)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meta", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root, \
            Cluster(root, meta=args.meta, storage=6, gateway=0) as cluster:
        addresses = [n.address for n in cluster.config.by_role(NodeRole.META)]
        result = asyncio.run(drive(addresses, cluster.config.secret, args.concurrency,
                                   args.duration))
    result.update({"meta_replicas": args.meta, "concurrency": args.concurrency})
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['commands_per_s']} commands/s with {args.meta} meta replicas, "
              f"concurrency {args.concurrency}; latency ms p50 {result['latency_ms']['p50']} "
              f"p99 {result['latency_ms']['p99']} max {result['latency_ms']['max']}; "
              f"errors {result['errors']}", file=sys.stdout)


if __name__ == "__main__":
    main()
