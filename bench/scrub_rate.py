"""Unthrottled scrub rate of one storage node, in MB/s of shard payload verified.

Fills a shard store (the storage node's own ``ShardStore``, on this machine's disk) with
``--size-mib`` of real 4+2 shards, then times full passes of the node's ``Scrubber`` with
``rate_bytes_per_s=0``, exactly the code a node runs: list the index, read every file,
check its header and payload xxh3. Two numbers:

- ``warm``: the files are in the page cache (what a pass right after writes costs: CPU);
- ``cold``: each file is dropped from the page cache first (``posix_fadvise DONTNEED``,
  no root needed), so the pass reads the disk.

    python bench/scrub_rate.py [--size-mib 1024] [--shard-kib 1024] [--dir /var/tmp] [--json]

MB = 10^6 bytes. Target on the reference machine: >= 300 MB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from blobstore.core import ec
from blobstore.core.digests import segment_id
from blobstore.core.ids import shard_id
from blobstore.storage.scrubber import Scrubber
from blobstore.storage.shard_store import ShardStore

KIB = 1024
MIB = 1024 * 1024


def fill(store: ShardStore, total_bytes: int, shard_bytes: int) -> int:
    policy = ec.EcPolicy(4, 2)
    written = 0
    while written < total_bytes:
        data = os.urandom(4 * shard_bytes)
        seg = segment_id(data)
        for index, payload in enumerate(ec.encode(policy, data)):
            store.put(shard_id(seg, index), bytes(payload), 4, 2, len(data),
                      ec.shard_checksum(payload))
            written += len(payload)
    return written


def drop_cache(store: ShardStore) -> None:
    for path in store.shards_dir.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


async def one_pass(store: ShardStore) -> tuple[float, int]:
    async def call(function, *args):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(function, *args)

    async def report(segment: str, index: int, reason: str) -> None:
        raise AssertionError(f"corrupt shard {segment}.{index}: {reason}")

    scrubber = Scrubber(store, call, report, interval_s=3600, rate_bytes_per_s=0)
    started = time.perf_counter()
    status = await scrubber.run_once()
    return time.perf_counter() - started, status.bytes_checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--shard-kib", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where to put the store (a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="scrub-bench-") as root:
        store = ShardStore.open(Path(root))
        try:
            started = time.perf_counter()
            written = fill(store, args.size_mib * MIB, args.shard_kib * KIB)
            fill_s = time.perf_counter() - started
            os.sync()
            warm_s, warm_bytes = asyncio.run(one_pass(store))
            drop_cache(store)
            cold_s, cold_bytes = asyncio.run(one_pass(store))
            shards = store.stats().shard_count
        finally:
            store.close()
    result = {"bench": "scrub_rate", "payload_bytes": written, "shards": shards,
              "shard_bytes": args.shard_kib * KIB,
              "warm": {"seconds": round(warm_s, 3), "mb_per_s": round(warm_bytes / warm_s / 1e6, 1)},
              "cold": {"seconds": round(cold_s, 3), "mb_per_s": round(cold_bytes / cold_s / 1e6, 1)},
              "fill_mb_per_s": round(written / fill_s / 1e6, 1), "target_mb_per_s": 300}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"scrub of {written / 1e6:.0f} MB in {shards} shards: "
              f"warm {result['warm']['mb_per_s']} MB/s, cold {result['cold']['mb_per_s']} MB/s "
              f"(target >= 300 MB/s)")


if __name__ == "__main__":
    main()
