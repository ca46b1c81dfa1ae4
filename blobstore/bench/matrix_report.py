"""The matrix results as people read them: a Markdown table and a PNG chart.

Both are made from the results document alone (``results.json``), so they can be made
again from a stored run (``bench/run_matrix.py --render DIR``). The document:
``{"started_utc", "machine", "limits": MachineLimits.to_json(), "plan", "systems": {NAME:
{"cells": [Cell.to_json()...], ...} or {"skipped": REASON}}, "notes": [...]}``.

The "machine limit" of a cell is the tightest of a few single-part ceilings measured in
the same run (``limits.py``), named in the table so nobody takes it for more than it is:
- bulk PUT (objects of 256 KiB and up): durable 4 MiB file writes x k/(k+m) (every byte
  is written (k+m)/k times, and every storage node shares this machine's disk); loopback
  HTTP PUT; MD5 + SHA-256 + zfec encode over all cores.
- bulk GET: loopback HTTP GET; degraded, also zfec decode over all cores.
- small objects: loopback HTTP requests per second with empty bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blobstore.bench.units import KIB, MB, format_size

BULK_MIN_BYTES = 256 * KIB
OURS = "blobstore"
PEER = "swift"


@dataclass(frozen=True, slots=True)
class Bound:
    mb_per_s: float
    ops_per_s: float
    what: str


def _limit(limits: Mapping[str, Any], name: str) -> float | None:
    entry = limits.get("limits", {}).get(name)
    return float(entry["value"]) if entry else None


def cell_bound(op: str, size_bytes: int, degraded: bool, limits: Mapping[str, Any],
               data_shards: int = 4, parity_shards: int = 2) -> Bound | None:
    """The machine limit of one cell (None when the probes it needs did not run)."""
    cpus = int(limits.get("cpus") or 1)
    candidates: list[tuple[float, str]] = []  # (MB/s, what)
    if size_bytes < BULK_MIN_BYTES:
        rate = _limit(limits, "loopback_http_tiny_requests_per_s")
        if rate:
            candidates.append((rate * size_bytes / MB, "loopback HTTP, empty requests"))
    elif op == "put":
        disk = _limit(limits, "disk_durable_4mib_files_mb_per_s")
        if disk:
            share = data_shards / (data_shards + parity_shards)
            candidates.append((disk * share, f"disk, durable files x {data_shards}/"
                                             f"{data_shards + parity_shards}"))
        loop = _limit(limits, "loopback_http_put_1mib_mb_per_s")
        if loop:
            candidates.append((loop, "loopback HTTP PUT"))
        rates = [_limit(limits, name) for name in ("md5_mb_per_s_per_core",
                                                   "sha256_mb_per_s_per_core",
                                                   "zfec_encode_4_2_mb_per_s_per_core")]
        if all(rates):
            per_core = 1 / sum(1 / rate for rate in rates if rate)
            candidates.append((per_core * cpus, f"MD5+SHA-256+zfec on {cpus} cores"))
    else:
        loop = _limit(limits, "loopback_http_get_1mib_mb_per_s")
        if loop:
            candidates.append((loop, "loopback HTTP GET"))
        decode = _limit(limits, "zfec_decode_4_2_mb_per_s_per_core")
        if degraded and decode:
            candidates.append((decode * cpus, f"zfec decode on {cpus} cores"))
    if not candidates or not size_bytes:
        return None
    mb_per_s, what = min(candidates)
    return Bound(mb_per_s, mb_per_s * MB / size_bytes, what)


def _cells(document: Mapping[str, Any], system: str) -> dict[tuple[str, int, int, bool], Any]:
    entry = document.get("systems", {}).get(system, {})
    return {(cell["op"], cell["size_bytes"], cell["concurrency"], cell["degraded"]): cell
            for cell in entry.get("cells", [])}


def _figure(cell: Mapping[str, Any] | None, bulk: bool) -> list[str]:
    if cell is None:
        return ["-", "-", "-", "-"]
    latency = cell["latency_ms"]
    rate = f"{cell['mb_per_s']:.1f}" if bulk else f"{cell['mb_per_s']:.2f}"
    return [rate, f"{cell['ops_per_s']:.1f}", f"{latency['p50']:.1f} / {latency['p99']:.1f}",
            str(cell["errors"])]


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "-"
    ratio = numerator / denominator
    return f"{ratio:.2g}" if ratio < 0.1 else f"{ratio:.2f}"


def _cpu_share(cell: Mapping[str, Any] | None) -> str:
    if cell is None or not cell.get("duration_s"):
        return "-"
    return f"{cell['client_cpu_s'] / cell['duration_s'] * 100:.0f}%"


def markdown(document: Mapping[str, Any]) -> str:
    """The results as Markdown: the matrix (ours, Swift, machine limit, ratios), limits."""
    lines = [f"# blobstore benchmark matrix, {document.get('started_utc', '')}", ""]
    lines += _preamble(document)
    ours, peer = _cells(document, OURS), _cells(document, PEER)
    limits = document.get("limits", {})
    lines += ["| op | size | conc | ours MB/s | ours ops/s | ours p50 / p99 ms | ours err "
              "| Swift MB/s | Swift ops/s | Swift p50 / p99 ms | Swift err | machine limit "
              "| ours / Swift | ours / limit | client CPU (ours / Swift) |",
              "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|"]
    for key in sorted(ours.keys() | peer.keys(), key=_order):
        op, size, concurrency, degraded = key
        mine, theirs = ours.get(key), peer.get(key)
        bulk = size >= BULK_MIN_BYTES
        bound = cell_bound(op, size, degraded, limits)
        limit_text = "-" if bound is None else (
            f"{bound.mb_per_s:.0f} MB/s ({bound.what})" if bulk
            else f"{bound.ops_per_s:.0f} ops/s ({bound.what})")
        mine_rate = mine["mb_per_s"] if mine else None
        lines.append("| " + " | ".join([
            op + (" degraded" if degraded else ""), format_size(size), str(concurrency),
            *_figure(mine, bulk), *_figure(theirs, bulk), limit_text,
            _ratio(mine_rate, theirs["mb_per_s"] if theirs else None),
            _ratio(mine_rate, bound.mb_per_s if bound else None),
            f"{_cpu_share(mine)} / {_cpu_share(theirs)}"]) + " |")
    lines += ["", "## Machine limits", "", f"{limits.get('cpus', '?')} usable CPUs; disk "
              f"probes in `{limits.get('data_dir', '?')}`.", "",
              "| probe | value | unit | what |", "|---|--:|---|---|"]
    for name, entry in limits.get("limits", {}).items():
        lines.append(f"| `{name}` | {entry['value']:.1f} | {entry['unit']} | {entry['what']} |")
    picture = document.get("chart")
    notes = [*document.get("notes", [])]
    if picture and picture != "chart.png":
        notes.append(f"no chart: {picture}")
    elif picture:
        lines += ["", "![throughput per cell: ours, Swift, machine limit](chart.png)"]
    for name, entry in document.get("systems", {}).items():
        notes += [f"{name}: {note}" for note in entry.get("notes", [])]
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def _preamble(document: Mapping[str, Any]) -> list[str]:
    machine = document.get("machine", {})
    plan = document.get("plan", {})
    lines = [f"Machine: {machine.get('cpus', '?')} CPUs, {machine.get('platform', '?')}, "
             f"Python {machine.get('python', '?')}. Cells of {plan.get('duration_s', '?')} s; "
             "MB = 10^6 bytes; latency of successful requests; both systems driven by the same "
             "client (`blobstore bench`: aiohttp, SigV4 with UNSIGNED-PAYLOAD, distinct "
             "content per object, GET bodies read in full and checked). Client CPU is the "
             "benchmark process's CPU time over the cell, in % of one core. Load average "
             f"{machine.get('loadavg_at_start', '?')} at start, "
             f"{machine.get('loadavg_at_end', '?')} at the end."]
    for name, entry in document.get("systems", {}).items():
        if "skipped" in entry:
            lines.append(f"- {name}: not run: {entry['skipped']}")
        else:
            lines.append(f"- {name}: {entry.get('label', '')} at {entry.get('endpoint', '')}")
    return [*lines, ""]


def _order(key: tuple[str, int, int, bool]) -> tuple[int, bool, int, int]:
    op, size, concurrency, degraded = key
    return size, degraded, 0 if op == "put" else 1, concurrency


def chart(document: Mapping[str, Any], path: Path) -> str | None:
    """Write a PNG bar chart; returns why not (matplotlib missing) or None when written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib, then run_matrix.py --render DIR)"
    ours, peer = _cells(document, OURS), _cells(document, PEER)
    keys = sorted(ours.keys() | peer.keys(), key=_order)
    sizes = sorted({key[1] for key in keys})
    figure, axes = pyplot.subplots(1, len(sizes), figsize=(5 * len(sizes), 4.5), squeeze=False)
    for axis, size in zip(axes[0], sizes, strict=True):
        _panel(axis, [key for key in keys if key[1] == size], ours, peer,
               document.get("limits", {}), size)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return None


def _panel(axis: Any, keys: list[tuple[str, int, int, bool]], ours: Mapping[Any, Any],
           peer: Mapping[Any, Any], limits: Mapping[str, Any], size: int) -> None:
    bulk = size >= BULK_MIN_BYTES
    field = "mb_per_s" if bulk else "ops_per_s"
    labels = [f"{op}{' deg' if degraded else ''} x{conc}" for op, _, conc, degraded in keys]
    width = 0.27
    for offset, (name, cells) in enumerate((("blobstore", ours), ("Swift", peer))):
        if not cells:
            continue  # a system that did not run gets no empty bars in the legend
        values = [cells[key][field] if key in cells else 0.0 for key in keys]
        axis.bar([i + (offset - 1) * width for i in range(len(keys))], values, width,
                 label=name)
    bounds = [cell_bound(op, sz, degraded, limits) for op, sz, _, degraded in keys]
    axis.bar([i + width for i in range(len(keys))],
             [(b.mb_per_s if bulk else b.ops_per_s) if b else 0.0 for b in bounds], width,
             label="machine limit", color="lightgrey")
    axis.set_xticks(range(len(keys)), labels, rotation=45, ha="right")
    axis.set_yscale("log")
    axis.set_title(format_size(size))
    axis.set_ylabel("MB/s" if bulk else "ops/s")
    axis.legend(fontsize="small")
