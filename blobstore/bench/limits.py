"""The machine's own limits, measured in the same run as a benchmark, to compare against.

A store's figures mean little alone: 300 MB/s is good on a disk that takes 350 MB/s with
fsync and poor on one that takes 3 GB/s. Each probe here measures one ceiling for about
``seconds`` (at least one iteration), on this machine, now:

- disk (on ``data_dir``, which should be the store's data disk):
  ``disk_fsync_1mib_writes``: sequential 1 MiB writes to one file, fsync after each;
  ``disk_durable_4mib_files``: 4 MiB files written as our shard store writes
  (``runtime.fsutil.write_atomic``: temp file, fsync, rename, fsync of the directory);
  ``disk_durable_4kib_files``: the same for 4 KiB files (files/s and p50 latency: what
  bounds small PUTs, each of which writes k+m shards).
- loopback HTTP between two processes (``loopback.py``): GET and PUT of 1 MiB bodies
  (MB/s) and empty requests per second.
- per core (one thread): MD5, SHA-256, BLAKE3, xxh3-64 over 4 MiB buffers, the encode of
  a 4 MiB segment into 4+2 shards (zfec's code; parity by ISA-L when libisal is installed,
  as the store computes it) and a zfec decode with 2 data shards missing (MB/s of segment).

Every file a probe writes is removed before it returns. Figures are single probes, so
they are ceilings for one part of the path each, not a prediction of the whole.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import xxhash

from blobstore.bench import loopback
from blobstore.bench.units import KIB, MIB, mb_per_s
from blobstore.core import ec, isal
from blobstore.runtime.fsutil import write_atomic

DISK_BYTES_MAX = 1024 * MIB  # a disk probe stops here even if time is left
HASH_BUFFER_BYTES = 4 * MIB
SEGMENT_BYTES = 4 * MIB
EC_POLICY = ec.EcPolicy(4, 2)


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    value: float
    unit: str
    what: str


@dataclass(frozen=True, slots=True)
class MachineLimits:
    cpus: int
    measurements: tuple[Measurement, ...]
    data_dir: str

    def value(self, name: str) -> float | None:
        for measurement in self.measurements:
            if measurement.name == name:
                return measurement.value
        return None

    def to_json(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "data_dir": self.data_dir,
                "limits": {m.name: {"value": round(m.value, 3), "unit": m.unit, "what": m.what}
                           for m in self.measurements}}


def _repeat(step: Callable[[], int], seconds: float, bytes_max: int | None = None
            ) -> tuple[int, int, float, list[float]]:
    """Run ``step`` (returns bytes done) until ``seconds`` pass; (calls, bytes, s, latencies)."""
    calls = done = 0
    latencies: list[float] = []
    started = time.perf_counter()
    while True:
        begun = time.perf_counter()
        done += step()
        latencies.append(time.perf_counter() - begun)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds or (bytes_max is not None and done >= bytes_max):
            return calls, done, elapsed, latencies


def disk_probes(data_dir: Path, seconds: float, rng: random.Random) -> list[Measurement]:
    chunk = rng.randbytes(MIB)
    shard = rng.randbytes(4 * MIB)
    small = rng.randbytes(4 * KIB)
    data_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".bench-limits-", dir=data_dir))
    try:
        fd = os.open(work / "sequential", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            def write_sync() -> int:
                os.write(fd, chunk)
                os.fsync(fd)
                return len(chunk)

            _, written, elapsed, _ = _repeat(write_sync, seconds, DISK_BYTES_MAX)
        finally:
            os.close(fd)
        sequential = mb_per_s(written, elapsed)
        big = _durable_files(work / "big", shard, seconds)
        tiny = _durable_files(work / "small", small, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files, done, elapsed, latencies = big
    small_files, _, small_elapsed, small_latencies = tiny
    small_latencies.sort()
    return [
        Measurement("disk_fsync_1mib_writes_mb_per_s", sequential, "MB/s",
                    "sequential 1 MiB writes, fsync after each"),
        Measurement("disk_durable_4mib_files_mb_per_s", mb_per_s(done, elapsed), "MB/s",
                    "4 MiB files: write, fsync, rename, fsync dir (as the shard store)"),
        Measurement("disk_durable_4kib_files_per_s", small_files / small_elapsed, "files/s",
                    "4 KiB files, written durably one after another"),
        Measurement("disk_durable_4kib_file_ms_p50",
                    small_latencies[len(small_latencies) // 2] * 1000, "ms",
                    "latency of one durable 4 KiB file"),
    ]


def _durable_files(directory: Path, body: bytes, seconds: float
                   ) -> tuple[int, int, float, list[float]]:
    directory.mkdir()
    counter = iter(range(1 << 62))

    def one_file() -> int:
        write_atomic(directory / f"f{next(counter)}", [body])
        return len(body)

    return _repeat(one_file, seconds, DISK_BYTES_MAX)


def cpu_probes(seconds: float, rng: random.Random) -> list[Measurement]:
    buffer = rng.randbytes(HASH_BUFFER_BYTES)
    segment = rng.randbytes(SEGMENT_BYTES)
    shards = ec.encode(EC_POLICY, segment)
    survivors = {index: bytes(shards[index]) for index in (2, 3, 4, 5)}  # data 0, 1 lost

    def rate(step: Callable[[], int]) -> float:
        _, done, elapsed, _ = _repeat(step, seconds)
        return mb_per_s(done, elapsed)

    def hashing(new: Callable[[bytes], Any]) -> Callable[[], int]:
        return lambda: (new(buffer).digest(), len(buffer))[1]

    encode = lambda: (ec.encode(EC_POLICY, segment), len(segment))[1]  # noqa: E731
    decode = lambda: len(ec.decode(EC_POLICY, survivors, len(segment)))  # noqa: E731
    return [
        Measurement("md5_mb_per_s_per_core", rate(hashing(hashlib.md5)), "MB/s",
                    "MD5 (the ETag), one thread"),
        Measurement("sha256_mb_per_s_per_core", rate(hashing(hashlib.sha256)), "MB/s",
                    "SHA-256 (signed payloads; content ids before BLAKE3), one thread"),
        Measurement("blake3_mb_per_s_per_core", rate(hashing(blake3.blake3)), "MB/s",
                    "BLAKE3 (the content id), one thread"),
        Measurement("xxh3_mb_per_s_per_core", rate(hashing(xxhash.xxh3_64)), "MB/s",
                    "xxh3-64 (shard checksums), one thread"),
        Measurement("zfec_encode_4_2_mb_per_s_per_core", rate(encode), "MB/s",
                    "4+2 encode of 4 MiB segments (" + ("ISA-L" if isal.available()
                                                        else "zfec") + "), one thread"),
        Measurement("zfec_decode_4_2_mb_per_s_per_core", rate(decode), "MB/s",
                    "zfec 4+2 decode, data shards 0 and 1 missing, one thread"),
    ]


def loopback_probes(seconds: float) -> list[Measurement]:
    figures = loopback.measure_loopback(seconds)
    return [
        Measurement("loopback_http_get_1mib_mb_per_s", figures.get_mb_per_s, "MB/s",
                    f"aiohttp GET of 1 MiB bodies, two processes, x{loopback.BULK_CONCURRENCY}"),
        Measurement("loopback_http_put_1mib_mb_per_s", figures.put_mb_per_s, "MB/s",
                    f"aiohttp PUT of 1 MiB bodies, two processes, x{loopback.BULK_CONCURRENCY}"),
        Measurement("loopback_http_tiny_requests_per_s", figures.tiny_requests_per_s, "req/s",
                    f"aiohttp empty GETs, two processes, x{loopback.TINY_CONCURRENCY}"),
    ]


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def measure_machine(data_dir: Path, seconds: float = 2.0, seed: int = 0,
                    disk: bool = True, network: bool = True, cpu: bool = True) -> MachineLimits:
    """Every probe asked for, one after another (each about ``seconds``)."""
    rng = random.Random(seed)
    measurements: list[Measurement] = []
    if disk:
        measurements += disk_probes(data_dir, seconds, rng)
    if network:
        measurements += loopback_probes(seconds)
    if cpu:
        measurements += cpu_probes(seconds, rng)
    return MachineLimits(usable_cpus(), tuple(measurements), str(data_dir))
