"""Unthrottled scrub rate of one storage node, in MB/s of shard payload verified.

Fills a shard store (the storage node's own ``ShardStore``, on this machine's disk) with
real 4+2 shards, then times full passes of the node's ``Scrubber`` with
``rate_bytes_per_s=0``, exactly the code a node runs: list the index, read every file,
check its header and payload xxh3. Two passes:

- ``warm``: the files are in the page cache (what a pass right after writes costs: CPU);
- ``cold``: each file is dropped from the page cache first (``posix_fadvise DONTNEED``,
  no root needed), so the pass reads the disk.

Next to each pass, the same files are read raw (whole files, no checks, one thread),
warm and cold: the disk's (or page cache's) read rate for exactly this data, which with
the xxh3 rate per core is the pass's machine limit (``matrix_report.scrub_bound``).

Used by ``bench/scrub_rate.py`` (alone) and ``bench/run_matrix.py`` (a row of the matrix).
MB = 10^6 bytes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

from blobstore.core import ec
from blobstore.core.digests import segment_id
from blobstore.core.ids import shard_id
from blobstore.storage.scrubber import Scrubber
from blobstore.storage.shard_store import ShardStore

KIB = 1024
MIB = 1024 * KIB
TARGET_MB_PER_S = 300
READ_CHUNK_BYTES = 4 * MIB


def fill(store: ShardStore, total_bytes: int, shard_bytes: int) -> int:
    """Write 4+2 shards of random segments until ``total_bytes`` of payload; bytes written."""
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


def shard_files(store: ShardStore) -> list[Path]:
    return sorted(path for path in store.shards_dir.rglob("*") if path.is_file())


def drop_cache(store: ShardStore) -> None:
    """Evict every shard file from the page cache (no root needed)."""
    for path in shard_files(store):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def raw_read(store: ShardStore) -> tuple[float, int]:
    """Read every shard file whole, unchecked, one after another: (seconds, bytes)."""
    done = 0
    buffer = bytearray(READ_CHUNK_BYTES)
    view = memoryview(buffer)
    started = time.perf_counter()
    for path in shard_files(store):
        with open(path, "rb", buffering=0) as file:
            while count := file.readinto(view):
                done += count
    return time.perf_counter() - started, done


async def one_pass(store: ShardStore) -> tuple[float, int]:
    """One unthrottled scrubber pass over ``store``: (seconds, payload bytes checked)."""
    async def call(function: Any, *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    async def report(segment: str, index: int, reason: str) -> None:
        raise AssertionError(f"corrupt shard {segment}.{index}: {reason}")

    scrubber = Scrubber(store, call, report, interval_s=3600, rate_bytes_per_s=0)
    started = time.perf_counter()
    status = await scrubber.run_once()
    return time.perf_counter() - started, status.bytes_checked


def _rate(seconds: float, nbytes: int) -> dict[str, float]:
    return {"seconds": round(seconds, 3), "mb_per_s": round(nbytes / seconds / 1e6, 1)
            if seconds > 0 else 0.0}


def measure_scrub(directory: Path, payload_bytes: int, shard_bytes: int = MIB
                  ) -> dict[str, Any]:
    """Fill a store in ``directory`` (removed after), time a warm and a cold pass."""
    directory.mkdir(parents=True, exist_ok=True)
    store = ShardStore.open(directory)
    try:
        started = time.perf_counter()
        written = fill(store, payload_bytes, shard_bytes)
        fill_s = time.perf_counter() - started
        os.sync()
        read_warm = raw_read(store)
        warm = asyncio.run(one_pass(store))
        drop_cache(store)
        read_cold = raw_read(store)
        drop_cache(store)
        cold = asyncio.run(one_pass(store))
        shards = store.stats().shard_count
    finally:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)
    return {"bench": "scrub_rate", "payload_bytes": written, "shards": shards,
            "shard_bytes": shard_bytes, "warm": _rate(*warm), "cold": _rate(*cold),
            "raw_read_warm": _rate(*read_warm), "raw_read_cold": _rate(*read_cold),
            "fill_mb_per_s": round(written / fill_s / 1e6, 1),
            "target_mb_per_s": TARGET_MB_PER_S}
