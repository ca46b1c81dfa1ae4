"""What a benchmark phase measured: counts, bytes, latency percentiles, errors by kind.

Definitions (the ``blobstore bench --json`` contract, SPEC §2):
- ``ops``: requests that succeeded (status as S3 specifies, and for GET every byte read and
  its length and xxh3 checked). ``errors``: requests that did not, counted by kind in
  ``errors_by_kind`` (``http_503``, ``timeout``, ``connection``, ``checksum_mismatch``,
  ``short_body``, ...). A failed request is never retried and never counts as an op.
- ``bytes``: object bytes moved by successful ops (sent by PUT, received by GET; 0 for
  DELETE). ``mb_per_s`` = bytes / duration / 10**6; ``ops_per_s`` = ops / duration.
- ``duration_s``: from the first request started to the last one finished; requests in
  flight when the time is up are finished and counted.
- ``latency_ms``: of successful ops, from just before the request is sent to its last
  body byte; nearest-rank percentiles (:func:`percentile`), so p99 of 10 samples is the
  largest one, and every reported value is one that was measured.
- ``client_cpu_s``: CPU time (user + system) of the benchmark process during the phase,
  so a reader can see whether the client was the bottleneck.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from blobstore.bench.units import mb_per_s

ERROR_SAMPLES_MAX = 5
JSON_FIELDS = ("op", "size_bytes", "concurrency", "duration_s", "ops", "errors", "bytes",
               "ops_per_s", "mb_per_s", "latency_ms", "client_cpu_s")
LATENCY_FIELDS = ("p50", "p90", "p99", "max")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest rank: the smallest sample with at least ``fraction`` of samples <= it.

    ``sorted_values`` must be ascending; an empty sequence gives 0.0.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], not {fraction}")
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class Latency:
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0

    @classmethod
    def of_seconds(cls, samples_s: Sequence[float]) -> Latency:
        ordered = sorted(samples_s)
        if not ordered:
            return cls()
        return cls(p50_ms=percentile(ordered, 0.50) * 1000, p90_ms=percentile(ordered, 0.90) * 1000,
                   p99_ms=percentile(ordered, 0.99) * 1000, max_ms=ordered[-1] * 1000,
                   mean_ms=math.fsum(ordered) / len(ordered) * 1000)

    def to_json(self) -> dict[str, float]:
        return {"p50": round(self.p50_ms, 3), "p90": round(self.p90_ms, 3),
                "p99": round(self.p99_ms, 3), "max": round(self.max_ms, 3),
                "mean": round(self.mean_ms, 3)}


@dataclass(slots=True)
class _OpCounts:
    latencies_s: array[float] = field(default_factory=lambda: array("d"))
    bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Totals so far, for a progress line."""

    elapsed_s: float
    ops: int
    errors: int
    bytes: int


class Recorder:
    """Collects one phase's outcomes per op kind (``put``, ``get``, ``delete``)."""

    def __init__(self, error_samples_max: int = ERROR_SAMPLES_MAX) -> None:
        self._counts: dict[str, _OpCounts] = {}
        self._error_samples_max = error_samples_max
        self.error_samples: list[str] = []
        self.ops = self.errors = self.bytes = 0

    def _of(self, op: str) -> _OpCounts:
        counts = self._counts.get(op)
        if counts is None:
            counts = self._counts[op] = _OpCounts()
        return counts

    def success(self, op: str, latency_s: float, nbytes: int) -> None:
        counts = self._of(op)
        counts.latencies_s.append(latency_s)
        counts.bytes += nbytes
        self.ops += 1
        self.bytes += nbytes

    def failure(self, op: str, kind: str, message: str) -> None:
        self._of(op).errors[kind] += 1
        self.errors += 1
        if len(self.error_samples) < self._error_samples_max:
            self.error_samples.append(f"{op}: {kind}: {message}"[:300])

    def snapshot(self, elapsed_s: float) -> Snapshot:
        return Snapshot(elapsed_s, self.ops, self.errors, self.bytes)

    def summaries(self, duration_s: float) -> dict[str, OpSummary]:
        return {op: OpSummary.of(counts.latencies_s, counts.bytes, counts.errors, duration_s)
                for op, counts in sorted(self._counts.items())}

    def total(self, duration_s: float) -> OpSummary:
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        for counts in self._counts.values():
            latencies.extend(counts.latencies_s)
            errors.update(counts.errors)
        return OpSummary.of(latencies, self.bytes, errors, duration_s)


@dataclass(frozen=True, slots=True)
class OpSummary:
    ops: int
    errors: int
    bytes: int
    ops_per_s: float
    mb_per_s: float
    latency: Latency
    errors_by_kind: dict[str, int]

    @classmethod
    def of(cls, latencies_s: Sequence[float], nbytes: int, errors: Counter[str],
           duration_s: float) -> OpSummary:
        ops = len(latencies_s)
        return cls(ops=ops, errors=sum(errors.values()), bytes=nbytes,
                   ops_per_s=ops / duration_s if duration_s > 0 else 0.0,
                   mb_per_s=mb_per_s(nbytes, duration_s), latency=Latency.of_seconds(latencies_s),
                   errors_by_kind=dict(sorted(errors.items())))

    def to_json(self) -> dict[str, Any]:
        return {"ops": self.ops, "errors": self.errors, "bytes": self.bytes,
                "ops_per_s": round(self.ops_per_s, 3), "mb_per_s": round(self.mb_per_s, 3),
                "latency_ms": self.latency.to_json(), "errors_by_kind": self.errors_by_kind}


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One phase: the SPEC §2 fields, then extras (``by_op`` splits a mixed run)."""

    op: str
    size_bytes: int
    concurrency: int
    duration_s: float
    total: OpSummary
    client_cpu_s: float
    endpoint: str = ""
    bucket: str = ""
    objects: int = 0
    error_samples: tuple[str, ...] = ()
    by_op: dict[str, OpSummary] = field(default_factory=dict)
    label: str = ""
    key_prefix: str = ""

    @property
    def ops(self) -> int:
        return self.total.ops

    @property
    def errors(self) -> int:
        return self.total.errors

    @property
    def mb_per_s(self) -> float:
        return self.total.mb_per_s

    @property
    def ops_per_s(self) -> float:
        return self.total.ops_per_s

    def to_json(self) -> dict[str, Any]:
        total = self.total.to_json()
        document: dict[str, Any] = {
            "op": self.op, "size_bytes": self.size_bytes, "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 3), "ops": total["ops"],
            "errors": total["errors"], "bytes": total["bytes"], "ops_per_s": total["ops_per_s"],
            "mb_per_s": total["mb_per_s"], "latency_ms": total["latency_ms"],
            "client_cpu_s": round(self.client_cpu_s, 3),
            "errors_by_kind": total["errors_by_kind"], "error_samples": list(self.error_samples),
            "endpoint": self.endpoint, "bucket": self.bucket, "key_prefix": self.key_prefix,
            "objects": self.objects,
        }
        if self.label:
            document["label"] = self.label
        if len(self.by_op) > 1:
            document["by_op"] = {op: summary.to_json() for op, summary in self.by_op.items()}
        return document
