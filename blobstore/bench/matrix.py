"""The standard matrix: sizes x {PUT, GET} x concurrencies, and a degraded GET.

One system at a time, through one :class:`LoadGenerator` (one client, the same for every
system compared). For each size, in order: a PUT cell per concurrency, then a GET cell
per concurrency reading what those PUTs wrote (topped up, untimed, when they wrote too
few), then for ``degraded_size_bytes`` a GET cell with the system degraded (the caller's
:class:`Degrader` takes storage nodes down and brings them back), then every object of
that size is deleted and the PUT buffers dropped before the next size. Cells are bounded
by ``duration_s`` (and ``count_max`` if set); requests in flight finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from blobstore.bench.loadgen import BenchSpec, LoadGenerator, Op, population_for
from blobstore.bench.objects import ObjectSet
from blobstore.bench.report import progress_line
from blobstore.bench.s3 import Target
from blobstore.bench.stats import BenchResult, Snapshot
from blobstore.bench.units import KIB, MIB, format_size
from blobstore.core.errors import Unavailable

MATRIX_BUCKET = "blobstore-bench-matrix"
READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.5

Report = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class MatrixPlan:
    sizes_bytes: tuple[int, ...] = (4 * KIB, MIB, 64 * MIB)
    concurrencies: tuple[int, ...] = (1, 4, 32)
    duration_s: float = 10.0
    count_max: int | None = None
    degraded_size_bytes: int | None = 64 * MIB
    degraded_concurrency: int = 4

    @classmethod
    def quick(cls) -> MatrixPlan:
        """A smoke run: every size, concurrency 1 and 4, 1.5 s cells."""
        return cls(concurrencies=(1, 4), duration_s=1.5)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Degrader(Protocol):
    async def degrade(self) -> str:
        """Take the system into its degraded state; returns what was done, for the record."""
        ...

    async def restore(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Cell:
    system: str
    op: str
    size_bytes: int
    concurrency: int
    degraded: bool
    result: BenchResult
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        document = {"system": self.system, "degraded": self.degraded, **self.result.to_json()}
        if self.note:
            document["note"] = self.note
        return document


async def run_matrix(system: str, target: Target, plan: MatrixPlan,
                     degrader: Degrader | None, report: Report, seed: int = 0,
                     ready_timeout_s: float = READY_TIMEOUT_S) -> list[Cell]:
    """Every cell of ``plan`` against ``target``; ``report`` gets one line per cell.

    The endpoint gets ``ready_timeout_s`` to start answering (a meta group electing its
    first leader answers 503 for a moment).
    """
    cells: list[Cell] = []
    widest = max((*plan.concurrencies, plan.degraded_concurrency))
    async with LoadGenerator(target, MATRIX_BUCKET, widest, seed=seed) as generator:
        await wait_ready(generator, ready_timeout_s)
        for size in plan.sizes_bytes:
            written = ObjectSet()
            try:
                await _size_cells(system, generator, plan, size, written, report, cells)
                if size == plan.degraded_size_bytes and degrader is not None:
                    cells.append(await _degraded_cell(system, generator, plan, size, written,
                                                      degrader, report))
            except Unavailable as exc:
                # A system that cannot store the objects a GET cell reads (Swift answering
                # 503 once overloaded) loses the rest of that size, not the sizes after it.
                report(f"{system}: {format_size(size)}: the remaining cells of this size are "
                       f"left out: {exc.message}")
            finally:
                left = await generator.cleanup(written)
                generator.release_buffers()
                if left:
                    report(f"{system}: {left} objects of {format_size(size)} left undeleted")
    return cells


async def wait_ready(generator: LoadGenerator, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Create the bucket, retrying while the endpoint answers 503 (a leader election)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await generator.prepare()
            return
        except Unavailable:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(READY_POLL_S)


async def _size_cells(system: str, generator: LoadGenerator, plan: MatrixPlan, size: int,
                      written: ObjectSet, report: Report, cells: list[Cell]) -> None:
    for op in (Op.PUT, Op.GET):
        for concurrency in plan.concurrencies:
            spec = BenchSpec(op, size, concurrency, plan.duration_s, plan.count_max)
            await _top_up(generator, spec, written)
            result = await generator.run(spec, written)
            cells.append(Cell(system, op.value, size, concurrency, False, result))
            report(_line(system, spec, result, ""))


async def _degraded_cell(system: str, generator: LoadGenerator, plan: MatrixPlan, size: int,
                         written: ObjectSet, degrader: Degrader, report: Report) -> Cell:
    spec = BenchSpec(Op.GET, size, plan.degraded_concurrency, plan.duration_s, plan.count_max)
    await _top_up(generator, spec, written)
    what = await degrader.degrade()
    try:
        result = await generator.run(spec, written)
    finally:
        await degrader.restore()
    report(_line(system, spec, result, f" degraded ({what})"))
    return Cell(system, "get", size, spec.concurrency, True, result, note=what)


async def _top_up(generator: LoadGenerator, spec: BenchSpec, written: ObjectSet) -> None:
    missing = population_for(spec) - len(written)
    if spec.op is Op.GET and missing > 0:
        await generator.populate(spec.size_bytes, missing, written, spec.concurrency)


def _line(system: str, spec: BenchSpec, result: BenchResult, suffix: str) -> str:
    label = f"{system:9s} {spec.op.value:4s} {format_size(spec.size_bytes):>6s} x{spec.concurrency:<3d}"
    snapshot_line = progress_line(label, _snapshot(result))
    return f"{snapshot_line}  p99 {result.total.latency.p99_ms:.1f} ms{suffix}"


def _snapshot(result: BenchResult) -> Snapshot:
    return Snapshot(result.duration_s, result.ops, result.errors, result.total.bytes)
