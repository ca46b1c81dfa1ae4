"""Committed metadata commands per second, and their commit latency.

Drives ``put_object`` commands (a 0-byte object version: the smallest real command, one
LMDB write per replica) from many concurrent clients straight at the meta service, as
gateways do. Every command is answered only after a majority of replicas fsync'd it and
the leader applied it. Used by ``bench/meta_commits.py`` (a cluster of its own) and
``bench/run_matrix.py`` (against the matrix's cluster, in a bucket of its own).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from blobstore.core.records import ObjectVersion
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.meta_client import MetaClient

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
DEFAULT_BUCKET = "bench-meta-commits"


async def drive(addresses: list[str], secret: str, concurrency: int, duration_s: float,
                bucket: str = DEFAULT_BUCKET) -> dict[str, Any]:
    """``concurrency`` clients committing for ``duration_s``; commands/s and latency."""
    session = new_session(limit_per_host=concurrency)
    latencies: list[float] = []
    errors = 0
    try:
        rpc = RpcClient(session, secret)
        await MetaClient(rpc, addresses).create_bucket(bucket, time.time_ns())
        deadline = time.monotonic() + duration_s

        async def worker(number: int) -> None:
            nonlocal errors
            client = MetaClient(rpc, addresses, client_id=f"bench-{number}")
            count = 0
            while time.monotonic() < deadline:
                version = ObjectVersion(bucket=bucket, key=f"w{number}/{count}",
                                        version_id=f"{number}-{count}", size=0,
                                        etag=EMPTY_MD5, created_ns=time.time_ns(), segments=[])
                started = time.perf_counter()
                try:
                    await client.put_object(version, [])
                    latencies.append(time.perf_counter() - started)
                except Exception:  # noqa: BLE001 - a benchmark counts every failure
                    errors += 1
                count += 1

        cpu_before = time.process_time()
        started = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.monotonic() - started
        cpu_s = time.process_time() - cpu_before
    finally:
        await session.close()
    return summarize(latencies, errors, elapsed, cpu_s)


def summarize(latencies_s: list[float], errors: int, elapsed_s: float,
              client_cpu_s: float = 0.0) -> dict[str, Any]:
    """The JSON of a run: commands/s and latency in ms (nearest rank; 0 with no command)."""
    ordered = sorted(latencies_s)

    def pick(fraction: float) -> float:
        if not ordered:
            return 0.0
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2)

    return {"commands": len(ordered), "errors": errors, "duration_s": round(elapsed_s, 2),
            "commands_per_s": round(len(ordered) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            "client_cpu_s": round(client_cpu_s, 3),
            "latency_ms": {"p50": pick(0.50), "p99": pick(0.99),
                           "max": round(ordered[-1] * 1000, 2) if ordered else 0.0,
                           "mean": round(statistics.fmean(ordered) * 1000, 2)
                           if ordered else 0.0}}


def run_drive(addresses: list[str], secret: str, concurrency: int, duration_s: float,
              bucket: str = DEFAULT_BUCKET) -> dict[str, Any]:
    return asyncio.run(drive(addresses, secret, concurrency, duration_s, bucket))
