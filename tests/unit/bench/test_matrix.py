"""The matrix runner and its report: cells in order, degraded hooks, limits, Markdown, chart."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from blobstore.bench.matrix import MatrixPlan, run_matrix
from blobstore.bench.matrix_report import cell_bound, chart, markdown
from blobstore.bench.s3 import Target
from blobstore.bench.units import KIB, MB, MIB
from blobstore.core.errors import Unavailable

LIMITS = {"cpus": 2, "data_dir": "/data", "limits": {
    "disk_durable_4mib_files_mb_per_s": {"value": 300.0, "unit": "MB/s", "what": "disk"},
    "loopback_http_put_1mib_mb_per_s": {"value": 1000.0, "unit": "MB/s", "what": "put"},
    "loopback_http_get_1mib_mb_per_s": {"value": 900.0, "unit": "MB/s", "what": "get"},
    "loopback_http_tiny_requests_per_s": {"value": 5000.0, "unit": "req/s", "what": "tiny"},
    "md5_mb_per_s_per_core": {"value": 600.0, "unit": "MB/s", "what": "md5"},
    "sha256_mb_per_s_per_core": {"value": 600.0, "unit": "MB/s", "what": "sha"},
    "zfec_encode_4_2_mb_per_s_per_core": {"value": 600.0, "unit": "MB/s", "what": "enc"},
    "zfec_decode_4_2_mb_per_s_per_core": {"value": 200.0, "unit": "MB/s", "what": "dec"},
}}


class RecordingDegrader:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def degrade(self) -> str:
        self.calls.append("degrade")
        return "two nodes down"

    async def restore(self) -> None:
        self.calls.append("restore")


class RefusingDegrader(RecordingDegrader):
    async def degrade(self) -> str:
        raise Unavailable("no node can be stopped")


def test_a_size_that_fails_loses_its_own_remaining_cells_only(s3):
    plan = MatrixPlan(sizes_bytes=(KIB, 300 * KIB), concurrencies=(1,), duration_s=5.0,
                      count_max=3, degraded_size_bytes=KIB, degraded_concurrency=1)
    lines: list[str] = []
    target = Target(s3.endpoint, s3.access_key, s3.secret_key)
    cells = asyncio.run(run_matrix("swift", target, plan, RefusingDegrader(), lines.append))
    assert [(c.op, c.size_bytes, c.degraded) for c in cells] == [
        ("put", KIB, False), ("get", KIB, False), ("put", 300 * KIB, False),
        ("get", 300 * KIB, False)]
    assert any("1KiB: the remaining cells of this size are left out: no node can be stopped"
               in line for line in lines)
    assert not s3.objects


def test_matrix_runs_every_cell_in_order_and_cleans_up(s3):
    plan = MatrixPlan(sizes_bytes=(KIB, 300 * KIB), concurrencies=(1, 2), duration_s=5.0,
                      count_max=6, degraded_size_bytes=300 * KIB, degraded_concurrency=2)
    degrader = RecordingDegrader()
    lines: list[str] = []
    target = Target(s3.endpoint, s3.access_key, s3.secret_key)
    cells = asyncio.run(run_matrix("blobstore", target, plan, degrader, lines.append, seed=1))
    assert [(c.op, c.size_bytes, c.concurrency, c.degraded) for c in cells] == [
        ("put", KIB, 1, False), ("put", KIB, 2, False),
        ("get", KIB, 1, False), ("get", KIB, 2, False),
        ("put", 300 * KIB, 1, False), ("put", 300 * KIB, 2, False),
        ("get", 300 * KIB, 1, False), ("get", 300 * KIB, 2, False),
        ("get", 300 * KIB, 2, True)]
    assert all(cell.result.ops == 6 and cell.result.errors == 0 for cell in cells)
    assert degrader.calls == ["degrade", "restore"]
    assert cells[-1].note == "two nodes down"
    assert len(lines) == len(cells)
    assert not s3.objects  # every size cleaned up
    document = json.loads(json.dumps([cell.to_json() for cell in cells]))
    assert document[-1]["degraded"] is True and document[0]["system"] == "blobstore"


@pytest.mark.parametrize("op, size, degraded, mb_per_s, what", [
    ("put", 64 * MIB, False, 200.0, "disk, durable files x 4/6"),
    ("put", MIB, False, 200.0, "disk, durable files x 4/6"),
    ("get", 64 * MIB, False, 900.0, "loopback HTTP GET"),
    ("get", 64 * MIB, True, 400.0, "zfec decode on 2 cores"),
    ("put", 4 * KIB, False, 5000.0 * 4 * KIB / MB, "loopback HTTP, empty requests"),
])
def test_cell_bound_is_the_tightest_ceiling(op, size, degraded, mb_per_s, what):
    bound = cell_bound(op, size, degraded, LIMITS)
    assert bound is not None
    assert bound.mb_per_s == pytest.approx(mb_per_s) and bound.what == what
    assert bound.ops_per_s == pytest.approx(mb_per_s * MB / size)


def test_cell_bound_counts_the_cpu_when_it_binds():
    limits = json.loads(json.dumps(LIMITS))
    limits["limits"]["disk_durable_4mib_files_mb_per_s"]["value"] = 10_000.0
    bound = cell_bound("put", 64 * MIB, False, limits)
    assert bound is not None and bound.what == "MD5+SHA-256+EC encode on 2 cores"
    assert bound.mb_per_s == pytest.approx(2 * 200.0)
    assert cell_bound("put", 64 * MIB, False, {}) is None
    # With the BLAKE3 probe (runs since content ids are BLAKE3) it replaces SHA-256.
    limits["limits"]["blake3_mb_per_s_per_core"] = {"value": 1e9, "unit": "MB/s"}
    bound = cell_bound("put", 64 * MIB, False, limits)
    assert bound is not None and bound.what == "MD5+BLAKE3+EC encode on 2 cores"
    assert bound.mb_per_s > 2 * 200.0


def _cell(system: str, op: str, size: int, mb_per_s: float, degraded: bool = False) -> dict:
    return {"system": system, "op": op, "size_bytes": size, "concurrency": 4,
            "degraded": degraded, "duration_s": 2.0, "ops": 10, "errors": 0,
            "bytes": 10 * size, "ops_per_s": mb_per_s * MB / size, "mb_per_s": mb_per_s,
            "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
            "client_cpu_s": 0.5}


DOCUMENT = {
    "started_utc": "2026-01-01T00:00:00Z", "machine": {"cpus": 2}, "limits": LIMITS,
    "plan": {"duration_s": 2.0},
    "systems": {"blobstore": {"label": "ours", "endpoint": "http://a",
                              "cells": [_cell("blobstore", "put", 64 * MIB, 100.0),
                                        _cell("blobstore", "get", 64 * MIB, 300.0, True)],
                              "notes": ["ran with 1 meta"]},
                "swift": {"label": "peer", "endpoint": "http://b",
                          "cells": [_cell("swift", "put", 64 * MIB, 50.0)]}},
    "notes": []}


def test_markdown_has_ours_swift_limit_and_ratios():
    text = markdown(DOCUMENT)
    put_row = next(line for line in text.splitlines() if line.startswith("| put | 64MiB"))
    cells = [cell.strip() for cell in put_row.strip("|").split("|")]
    assert cells[3] == "100.0" and cells[7] == "50.0"
    assert cells[11] == "200 MB/s (disk, durable files x 4/6)"
    assert cells[12] == "2.00" and cells[13] == "0.50"
    assert cells[14] == "25% / 25%"
    degraded_row = next(line for line in text.splitlines() if "get degraded" in line)
    assert "| - | - | - | - |" in degraded_row  # Swift has no such cell
    assert "`zfec_decode_4_2_mb_per_s_per_core`" in text
    assert "blobstore: ran with 1 meta" in text


def test_chart_is_skipped_with_a_note_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    note = chart(DOCUMENT, tmp_path / "chart.png")
    assert note is not None and "matplotlib" in note
    assert not (tmp_path / "chart.png").exists()


def test_chart_is_a_png_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    assert chart(DOCUMENT, tmp_path / "chart.png") is None
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
