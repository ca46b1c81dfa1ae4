"""Foreground throughput with background work running, against the same without it.

The issue's target: "with scrubber and repair running at default rates, foreground
throughput within 10% of the figure without them". One system at a time, one client
(:class:`LoadGenerator`, as the matrix):

1. untimed: ``data_bytes`` of 64 MiB objects (the material the background work chews on)
   and the objects the small GET cell reads;
2. the foreground cells (PUT 64 MiB x4, GET 4 KiB x32 by default) measured normally;
3. the caller's :class:`BackgroundWork` starts (ours: a scrub pass forced on every storage
   node and a storage node lost for good, so the repairers drain a backlog; both at the
   cluster's default rates), and a keeper samples it every ``SAMPLE_INTERVAL_S`` and keeps
   it going (ours: a node whose scrub pass ended gets a new one, so the scrubber runs for
   the whole cell);
4. the same cells again, each with a summary of the background work seen during it
   (``repair_active_fraction``: share of samples with a repair backlog; ``scrubbing``:
   mean number of nodes in a scrub pass), since a repair may finish before a cell does;
5. the background work is stopped and everything written is deleted.

``ratio`` of a pair is loaded / normal of the figure that matters (MB/s for bulk objects,
ops/s for small ones): the target is >= 0.90.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from blobstore.bench.loadgen import BenchSpec, LoadGenerator, Op, population_for
from blobstore.bench.matrix import MATRIX_BUCKET, wait_ready
from blobstore.bench.objects import ObjectSet
from blobstore.bench.s3 import Target
from blobstore.bench.stats import BenchResult
from blobstore.bench.units import KIB, MIB, format_size

BACKGROUND_BUCKET = f"{MATRIX_BUCKET}-background"
SAMPLE_INTERVAL_S = 0.5
TARGET_RATIO = 0.90
BULK_MIN_BYTES = 256 * KIB

Report = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class BackgroundPlan:
    data_bytes: int = 2048 * MIB
    data_object_bytes: int = 64 * MIB
    cells: tuple[tuple[str, int, int], ...] = (("put", 64 * MIB, 4), ("get", 4 * KIB, 32))
    duration_s: float = 20.0  # twice the matrix's cells (run_matrix.BACKGROUND_CELL_FACTOR)

    @classmethod
    def quick(cls) -> BackgroundPlan:
        return cls(data_bytes=256 * MIB, duration_s=1.5)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class BackgroundWork(Protocol):
    async def start(self) -> str:
        """Start the background work; returns what was done, for the record."""
        ...

    async def sample(self) -> dict[str, float]:
        """Keep the work going where it stopped early; numbers describing it now."""
        ...

    async def stop(self) -> None: ...


@dataclass(slots=True)
class _Samples:
    """Samples of the background work: (seconds since ``origin``, values)."""

    origin: float
    rows: list[tuple[float, dict[str, float]]]

    def now(self) -> float:
        return time.monotonic() - self.origin

    def during(self, started: float, ended: float) -> dict[str, float]:
        inside = [values for at, values in self.rows if started <= at <= ended]
        if not inside:
            return {"samples": 0}
        summary: dict[str, float] = {"samples": len(inside)}
        for name in sorted({name for values in inside for name in values}):
            series = [values.get(name, 0.0) for values in inside]
            summary[f"{name}_first"] = series[0]
            summary[f"{name}_last"] = series[-1]
            summary[f"{name}_mean"] = round(sum(series) / len(series), 2)
            summary[f"{name}_active_fraction"] = round(
                sum(1 for value in series if value > 0) / len(series), 2)
        return summary


def figure(cell: dict[str, Any]) -> float:
    """What a cell is judged by: MB/s for bulk objects, ops/s for small ones."""
    return float(cell["mb_per_s"] if cell["size_bytes"] >= BULK_MIN_BYTES
                 else cell["ops_per_s"])


def ratios(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair each loaded cell with the normal cell of the same op, size and concurrency."""
    normal = {(c["op"], c["size_bytes"], c["concurrency"]): c for c in cells
              if not c.get("background")}
    pairs = []
    for cell in cells:
        key = (cell["op"], cell["size_bytes"], cell["concurrency"])
        if cell.get("background") and key in normal and figure(normal[key]):
            ratio = figure(cell) / figure(normal[key])
            pairs.append({"op": key[0], "size_bytes": key[1], "concurrency": key[2],
                          "normal": figure(normal[key]), "loaded": figure(cell),
                          "ratio": round(ratio, 3), "within_target": ratio >= TARGET_RATIO})
    return pairs


async def run_background(system: str, target: Target, plan: BackgroundPlan,
                         work: BackgroundWork, report: Report, seed: int = 0
                         ) -> dict[str, Any]:
    """The foreground cells without, then with, ``work`` running; the JSON of it all."""
    widest = max(concurrency for _, _, concurrency in plan.cells)
    cells: list[dict[str, Any]] = []
    document: dict[str, Any] = {"plan": plan.to_json(), "cells": cells}
    async with LoadGenerator(target, BACKGROUND_BUCKET, widest, seed=seed) as generator:
        await wait_ready(generator)
        written: dict[int, ObjectSet] = {}
        try:
            data = written.setdefault(plan.data_object_bytes, ObjectSet())
            count = max(1, plan.data_bytes // plan.data_object_bytes)
            report(f"{system}: background: writing {count} x "
                   f"{format_size(plan.data_object_bytes)} for the background work (untimed)")
            await generator.populate(plan.data_object_bytes, count, data, 4)
            for op, size, concurrency in plan.cells:
                spec = BenchSpec(Op(op), size, concurrency, plan.duration_s)
                objects = written.setdefault(size, ObjectSet())
                missing = population_for(spec) - len(objects.of_size(size))
                if spec.op is Op.GET and missing > 0:
                    await generator.populate(size, missing, objects, concurrency)
            for op, size, concurrency in plan.cells:
                cells.append(await _cell(system, generator, plan, op, size, concurrency,
                                         written, None, report))
            document["started"] = await work.start()
            report(f"{system}: background work: {document['started']}")
            samples = _Samples(time.monotonic(), [])
            keeper = asyncio.create_task(_keep(work, samples))
            try:
                for op, size, concurrency in plan.cells:
                    cells.append(await _cell(system, generator, plan, op, size, concurrency,
                                             written, samples, report))
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                document["samples"] = [{"t": round(at, 2), **values}
                                       for at, values in samples.rows]
                await work.stop()
        finally:
            left = 0
            for objects in written.values():
                left += await generator.cleanup(objects)
            generator.release_buffers()
            if left:
                report(f"{system}: background: {left} objects left undeleted")
    document["ratios"] = ratios(cells)
    return document


async def _keep(work: BackgroundWork, samples: _Samples) -> None:
    while True:
        try:
            values = await work.sample()
        except Exception:  # noqa: BLE001 - a failed sample must not stop the cell
            values = {"sample_errors": 1.0}
        samples.rows.append((samples.now(), values))
        await asyncio.sleep(SAMPLE_INTERVAL_S)


async def _cell(system: str, generator: LoadGenerator, plan: BackgroundPlan, op: str,
                size: int, concurrency: int, written: dict[int, ObjectSet],
                samples: _Samples | None, report: Report) -> dict[str, Any]:
    spec = BenchSpec(Op(op), size, concurrency, plan.duration_s,
                     label="background" if samples is not None else "normal")
    objects = written.setdefault(size, ObjectSet())
    started = samples.now() if samples is not None else 0.0
    result: BenchResult = await generator.run(spec, objects)
    cell = {"system": system, "background": samples is not None, **result.to_json()}
    if samples is not None:
        cell["background_during"] = samples.during(started, samples.now())
    report(f"{system:9s} {op:4s} {format_size(size):>6s} x{concurrency:<3d} "
           f"{'with background work' if samples is not None else 'normal':22s} "
           f"{result.mb_per_s:8.1f} MB/s {result.ops_per_s:8.1f} ops/s "
           f"p99 {result.total.latency.p99_ms:.1f} ms errors {result.errors}")
    return cell

