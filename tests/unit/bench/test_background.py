"""The background-work cells, the extra rows of the report, scrub and meta summaries."""

from __future__ import annotations

import asyncio
import json

import pytest

from blobstore.bench.background import BackgroundPlan, figure, ratios, run_background
from blobstore.bench.matrix_report import markdown, other_rows, repair_bounds, scrub_bound
from blobstore.bench.meta_commits import summarize
from blobstore.bench.s3 import Target
from blobstore.bench.units import KIB, MB

from .test_matrix import DOCUMENT, LIMITS


class RecordingWork:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.backlog = 3.0

    async def start(self) -> str:
        self.calls.append("start")
        return "a node lost"

    async def sample(self) -> dict[str, float]:
        self.calls.append("sample")
        self.backlog = max(0.0, self.backlog - 1)
        return {"repair_backlog": self.backlog, "scrubbing": 2.0}

    async def stop(self) -> None:
        self.calls.append("stop")


def test_background_cells_run_normal_then_loaded_and_clean_up(s3):
    plan = BackgroundPlan(data_bytes=4 * 64 * KIB, data_object_bytes=64 * KIB,
                          cells=(("put", 64 * KIB, 2), ("get", KIB, 4)), duration_s=0.6)
    work = RecordingWork()
    lines: list[str] = []
    target = Target(s3.endpoint, s3.access_key, s3.secret_key)
    document = asyncio.run(run_background("blobstore", target, plan, work, lines.append, 1))
    cells = document["cells"]
    assert [(c["op"], c["background"]) for c in cells] == [
        ("put", False), ("get", False), ("put", True), ("get", True)]
    assert all(c["ops"] > 0 and c["errors"] == 0 for c in cells)
    assert work.calls[0] == "start" and work.calls[-1] == "stop" and "sample" in work.calls
    during = cells[2]["background_during"]
    assert during["samples"] >= 1 and during["scrubbing_mean"] == 2.0
    assert document["started"] == "a node lost" and document["samples"]
    assert [pair["op"] for pair in document["ratios"]] == ["put", "get"]
    assert not s3.objects  # the data set, PUT objects and GET population all deleted
    json.dumps(document)


def _cell(op: str, size: int, mb_per_s: float, background: bool) -> dict:
    return {"op": op, "size_bytes": size, "concurrency": 4, "background": background,
            "mb_per_s": mb_per_s, "ops_per_s": mb_per_s * MB / size, "duration_s": 2.0,
            "client_cpu_s": 0.2, "errors": 0,
            "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0}}


def test_ratios_pair_loaded_with_normal_by_the_figure_that_matters():
    cells = [_cell("put", 64 << 20, 100.0, False), _cell("put", 64 << 20, 95.0, True),
             _cell("get", 4 * KIB, 4.096, False), _cell("get", 4 * KIB, 2.048, True)]
    assert figure(cells[2]) == pytest.approx(1000.0)  # small objects: ops/s
    pairs = ratios(cells)
    assert [(p["op"], p["ratio"], p["within_target"]) for p in pairs] == [
        ("put", 0.95, True), ("get", 0.5, False)]


def test_bounds_of_repair_and_scrub():
    user, shard = repair_bounds(LIMITS)
    assert user is not None and shard is not None
    assert user.mb_per_s == pytest.approx(400.0) and "zfec decode" in user.what  # 200 x 2
    assert shard.mb_per_s == pytest.approx(100.0)
    assert repair_bounds({}) == (None, None)
    assert scrub_bound(1000.0, 1000.0) == pytest.approx(500.0)
    assert scrub_bound(None, 800.0) == pytest.approx(800.0)
    assert scrub_bound(None, None) is None


def test_meta_summary_is_nearest_rank_and_survives_no_commands():
    summary = summarize([0.001 * n for n in range(1, 101)], 2, 2.0, 0.5)
    assert summary["commands"] == 100 and summary["commands_per_s"] == 50.0
    assert summary["latency_ms"]["p50"] == 51.0 and summary["latency_ms"]["max"] == 100.0
    assert summarize([], 3, 1.0)["latency_ms"]["p99"] == 0.0


def test_markdown_has_the_rows_beyond_the_matrix():
    document = json.loads(json.dumps(DOCUMENT))
    ours = document["systems"]["blobstore"]
    ours["background"] = {"started": "storage-4 lost", "cells": [
        _cell("put", 64 << 20, 100.0, False),
        {**_cell("put", 64 << 20, 92.0, True),
         "background_during": {"samples": 4, "repair_backlog_first": 9.0,
                               "repair_backlog_last": 0.0,
                               "repair_backlog_active_fraction": 0.75,
                               "scrubbing_mean": 6.5}}]}
    ours["repair"] = {"user_data_mb_per_s": 120.0, "shard_mb_per_s": 30.0, "victim": "s-4",
                      "repair_concurrency": 4, "data_bytes": 10**9}
    ours["scrub"] = {"payload_bytes": 10**9, "shards": 1000,
                     "warm": {"mb_per_s": 900.0}, "cold": {"mb_per_s": 300.0},
                     "raw_read_warm": {"mb_per_s": 2000.0}, "raw_read_cold": {"mb_per_s": 400.0}}
    ours["meta_commits"] = {"error": "TimeoutError: no leader"}
    document["systems"]["swift"]["background"] = {"skipped": "daemons would not start"}
    rows = {row.cell: row for row in other_rows(document)}
    ratio = rows["put 64MiB x4: with / without background work (target >= 0.90)"]
    assert ratio.ours == "0.92" and ratio.peer == "-"
    loaded = rows["put 64MiB x4, with background work"]
    assert loaded.limit == "200 MB/s (disk, durable files x 4/6)"
    assert loaded.ours_vs_limit == "0.46" and loaded.client_cpu == "10% / -"
    shards = rows["repair: shard bytes re-created"]
    assert shards.ours == "30.0 MB/s" and shards.ours_vs_limit == "0.30"
    assert rows["meta commits/s"].ours.startswith("not measured: TimeoutError")
    text = markdown(document)
    assert "## Background work, repair, scrub, metadata" in text
    assert "repair backlog 9 -> 0 segments, a backlog in 75% of samples" in text
    assert "Background work, Swift: not measured: daemons would not start" in text
    cold = next(line for line in text.splitlines() if "page cache dropped" in line)
    assert "| 300 MB/s |" in cold and "| 0.75 |" in cold  # no xxh3 probe: the raw read binds
