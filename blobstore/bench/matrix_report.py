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

A second table holds the rows beyond the matrix (``other_rows``), from
``systems.NAME.background`` (``background.py``), ``.repair`` (``repair.py``), ``.scrub``
(``scrub.py``) and ``.meta_commits`` (``meta_commits.py``): each foreground cell normal and
with background work, and their ratio (target >= 0.90); the repair rate against disk
write x k, loopback GET and zfec decode (``repair_bounds``); the scrub rate against a raw
read of the same files plus xxh3 on one thread (``scrub_bound``); meta commits/s against
loopback HTTP requests/s.
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
        # The content id is BLAKE3 (runs before it had SHA-256 ids only have that probe).
        content_id = ("blake3_mb_per_s_per_core", "BLAKE3") \
            if _limit(limits, "blake3_mb_per_s_per_core") else ("sha256_mb_per_s_per_core", "SHA-256")
        rates = [_limit(limits, name) for name in ("md5_mb_per_s_per_core", content_id[0],
                                                   "zfec_encode_4_2_mb_per_s_per_core")]
        if all(rates):
            per_core = 1 / sum(1 / rate for rate in rates if rate)
            candidates.append((per_core * cpus, f"MD5+{content_id[1]}+EC encode on {cpus} cores"))
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
    lines += _other_rows_markdown(document)
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


# -- rows beyond the matrix: background work, repair, scrub, meta commits ---------------------

@dataclass(frozen=True, slots=True)
class Row:
    """One row of the second table; figures already formatted, ratios computed."""

    cell: str
    ours: str
    peer: str
    limit: str
    ours_vs_peer: str
    ours_vs_limit: str
    client_cpu: str


def _system(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    entry = document.get("systems", {}).get(name, {})
    return entry if isinstance(entry, Mapping) else {}


def _rate_text(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def _cell_figure(cell: Mapping[str, Any] | None) -> tuple[float | None, str]:
    if cell is None:
        return None, ""
    if cell["size_bytes"] >= BULK_MIN_BYTES:
        return float(cell["mb_per_s"]), "MB/s"
    return float(cell["ops_per_s"]), "ops/s"


def _with_latency(cell: Mapping[str, Any] | None) -> str:
    value, unit = _cell_figure(cell)
    if cell is None or value is None:
        return "-"
    latency = cell["latency_ms"]
    errors = f", {cell['errors']} err" if cell.get("errors") else ""
    return f"{_rate_text(value, unit)} (p99 {latency['p99']:.0f} ms{errors})"


def _background_rows(document: Mapping[str, Any]) -> list[Row]:
    limits = document.get("limits", {})
    mine = _system(document, OURS).get("background") or {}
    theirs = _system(document, PEER).get("background") or {}
    keys: list[tuple[str, int, int]] = []
    for entry in (mine, theirs):
        for cell in entry.get("cells", []):
            key = (cell["op"], cell["size_bytes"], cell["concurrency"])
            if key not in keys:
                keys.append(key)

    def find(entry: Mapping[str, Any], key: tuple[str, int, int],
             loaded: bool) -> Mapping[str, Any] | None:
        for cell in entry.get("cells", []):
            if (cell["op"], cell["size_bytes"], cell["concurrency"]) == key \
                    and bool(cell.get("background")) == loaded:
                return cell
        return None

    rows = []
    for key in keys:
        op, size, concurrency = key
        bound = cell_bound(op, size, False, limits)
        name = f"{op} {format_size(size)} x{concurrency}"
        ratios = []
        for loaded, label in ((False, "normal"), (True, "with background work")):
            a, b = find(mine, key, loaded), find(theirs, key, loaded)
            a_value, unit = _cell_figure(a)
            b_value, _ = _cell_figure(b)
            bound_value = None if bound is None else (
                bound.mb_per_s if unit == "MB/s" else bound.ops_per_s)
            rows.append(Row(
                f"{name}, {label}", _with_latency(a), _with_latency(b),
                "-" if bound is None or bound_value is None
                else f"{_rate_text(bound_value, unit or 'MB/s')} ({bound.what})",
                _ratio(a_value, b_value), _ratio(a_value, bound_value),
                f"{_cpu_share(a)} / {_cpu_share(b)}"))
            ratios.append((a_value, b_value))
        (a_normal, b_normal), (a_loaded, b_loaded) = ratios
        rows.append(Row(f"{name}: with / without background work (target >= 0.90)",
                        _ratio(a_loaded, a_normal), _ratio(b_loaded, b_normal),
                        "-", "-", "-", "-"))
    return rows


def repair_bounds(limits: Mapping[str, Any], data_shards: int = 4
                  ) -> tuple[Bound | None, Bound | None]:
    """Ceilings of a repair: (user data made whole, shard bytes re-created), in MB/s.

    Every lost shard is written once (durable files), and ``data_shards`` shards are read
    over loopback HTTP and decoded to rebuild it: user data moves at most at the disk's
    write rate x k, the loopback GET rate and zfec decode on every core; shards at 1/k of
    that.
    """
    cpus = int(limits.get("cpus") or 1)
    candidates: list[tuple[float, str]] = []
    disk = _limit(limits, "disk_durable_4mib_files_mb_per_s")
    if disk:
        candidates.append((disk * data_shards, f"disk, durable files x {data_shards} "
                                               "(1 shard written per segment)"))
    loop = _limit(limits, "loopback_http_get_1mib_mb_per_s")
    if loop:
        candidates.append((loop, "loopback HTTP GET of the surviving shards"))
    decode = _limit(limits, "zfec_decode_4_2_mb_per_s_per_core")
    if decode:
        candidates.append((decode * cpus, f"zfec decode on {cpus} cores"))
    if not candidates:
        return None, None
    user, what = min(candidates)
    shard_disk = [(disk, "disk, durable 4 MiB files")] if disk else []
    shard, shard_what = min([(user / data_shards, f"{what}, / {data_shards}"), *shard_disk])
    return Bound(user, 0.0, what), Bound(shard, 0.0, shard_what)


def _repair_rows(document: Mapping[str, Any]) -> list[Row]:
    repair = _system(document, OURS).get("repair")
    if not repair:
        return []
    if "skipped" in repair or "error" in repair:
        return [Row("repair after losing a node", f"not measured: "
                    f"{repair.get('skipped') or repair.get('error')}", "-", "-", "-", "-", "-")]
    user_bound, shard_bound = repair_bounds(document.get("limits", {}))
    setting = (f"unthrottled, repair_concurrency {repair.get('repair_concurrency')}, "
               f"{repair.get('data_bytes', 0) / MB:.0f} MB stored, {repair.get('victim')} lost")
    rows = []
    for field, label, bound in (
            ("user_data_mb_per_s", "repair: user data made whole", user_bound),
            ("shard_mb_per_s", "repair: shard bytes re-created", shard_bound)):
        value = float(repair[field])
        rows.append(Row(f"{label} ({setting}; target >= {repair.get('target_mb_per_s', 100)}"
                        " MB/s of user data)" if field == "user_data_mb_per_s"
                        else f"{label}", _rate_text(value, "MB/s"), "-",
                        "-" if bound is None else f"{bound.mb_per_s:.0f} MB/s ({bound.what})",
                        "-", _ratio(value, bound.mb_per_s if bound else None), "-"))
    return rows


def scrub_bound(read_mb_per_s: float | None, xxh3_mb_per_s: float | None) -> float | None:
    """A one-thread pass that reads then hashes each file: 1 / (1/read + 1/xxh3)."""
    rates = [rate for rate in (read_mb_per_s, xxh3_mb_per_s) if rate]
    if not rates:
        return None
    return 1 / sum(1 / rate for rate in rates)


def _scrub_rows(document: Mapping[str, Any]) -> list[Row]:
    scrub = _system(document, OURS).get("scrub")
    if not scrub:
        return []
    if "skipped" in scrub or "error" in scrub:
        return [Row("scrub", f"not measured: {scrub.get('skipped') or scrub.get('error')}",
                    "-", "-", "-", "-", "-")]
    xxh3 = _limit(document.get("limits", {}), "xxh3_mb_per_s_per_core")
    rows = []
    for name, label, source in (("warm", "page cache", "raw read from the page cache"),
                                ("cold", "disk, page cache dropped", "raw read from disk")):
        value = float(scrub[name]["mb_per_s"])
        read = scrub.get(f"raw_read_{name}", {}).get("mb_per_s")
        bound = scrub_bound(read, xxh3)
        what = " + ".join([part for part, rate in ((f"{source} of the same files", read),
                                                   ("xxh3", xxh3)) if rate])
        rows.append(Row(f"scrub, one node, unthrottled, {label} ({scrub['payload_bytes'] / MB:.0f}"
                        f" MB in {scrub['shards']} shards; target >= "
                        f"{scrub.get('target_mb_per_s', 300)} MB/s)",
                        _rate_text(value, "MB/s"), "-",
                        "-" if bound is None else f"{bound:.0f} MB/s ({what}, one thread)",
                        "-", _ratio(value, bound), "-"))
    return rows


def _meta_rows(document: Mapping[str, Any]) -> list[Row]:
    meta = _system(document, OURS).get("meta_commits")
    if not meta:
        return []
    if "skipped" in meta or "error" in meta:
        return [Row("meta commits/s", f"not measured: {meta.get('skipped') or meta.get('error')}",
                    "-", "-", "-", "-", "-")]
    tiny = _limit(document.get("limits", {}), "loopback_http_tiny_requests_per_s")
    value = float(meta["commands_per_s"])
    latency = meta.get("latency_ms", {})
    errors = f", {meta['errors']} err" if meta.get("errors") else ""
    cpu = (f"{meta['client_cpu_s'] / meta['duration_s'] * 100:.0f}% / -"
           if meta.get("duration_s") and "client_cpu_s" in meta else "-")
    return [Row(f"meta commits/s ({meta.get('meta_replicas', '?')} replicas, "
                f"{meta.get('concurrency', '?')} clients, 0-byte put_object)",
                f"{value:.0f} /s (p50 {latency.get('p50', 0):.0f} ms, p99 "
                f"{latency.get('p99', 0):.0f} ms{errors})", "-",
                "-" if not tiny else f"{tiny:.0f} /s (loopback HTTP, one empty request each)",
                "-", _ratio(value, tiny), cpu)]


def other_rows(document: Mapping[str, Any]) -> list[Row]:
    """Foreground with background work, repair, scrub, meta commits (where measured)."""
    return [*_background_rows(document), *_repair_rows(document), *_scrub_rows(document),
            *_meta_rows(document)]


def _other_rows_markdown(document: Mapping[str, Any]) -> list[str]:
    rows = other_rows(document)
    if not rows:
        return []
    lines = ["", "## Background work, repair, scrub, metadata", "",
             "| cell | ours | Swift | machine limit | ours / Swift | ours / limit "
             "| client CPU (ours / Swift) |", "|---|--:|--:|---|--:|--:|--:|"]
    lines += ["| " + " | ".join([row.cell, row.ours, row.peer, row.limit, row.ours_vs_peer,
                                 row.ours_vs_limit, row.client_cpu]) + " |" for row in rows]
    lines += _background_notes(document)
    return lines


def _background_notes(document: Mapping[str, Any]) -> list[str]:
    notes = []
    for name, label in ((OURS, "ours"), (PEER, "Swift")):
        background = _system(document, name).get("background") or {}
        if "skipped" in background or "error" in background:
            notes.append(f"- Background work, {label}: not measured: "
                         f"{background.get('skipped') or background.get('error')}")
            continue
        if not background.get("started"):
            continue
        notes.append(f"- Background work, {label}: {background['started']}")
        for cell in background.get("cells", []):
            during = cell.get("background_during")
            if not during or not during.get("samples"):
                continue
            facts = []
            if "repair_backlog_first" in during:
                facts.append(f"repair backlog {during['repair_backlog_first']:.0f} -> "
                             f"{during['repair_backlog_last']:.0f} segments, a backlog in "
                             f"{during['repair_backlog_active_fraction'] * 100:.0f}% of samples")
            if "scrubbing_mean" in during:
                facts.append(f"{during['scrubbing_mean']:.1f} nodes scrubbing on average")
            if facts:
                notes.append(f"  - during {cell['op']} {format_size(cell['size_bytes'])} "
                             f"x{cell['concurrency']}: {'; '.join(facts)}")
    return ["", *notes] if notes else []


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
    background = _background_ratios(document)
    panels = len(sizes) + (1 if background else 0)
    if not panels:
        return "no cells to chart"
    figure, axes = pyplot.subplots(1, panels, figsize=(5 * panels, 4.5), squeeze=False)
    for axis, size in zip(axes[0], sizes, strict=False):
        _panel(axis, [key for key in keys if key[1] == size], ours, peer,
               document.get("limits", {}), size)
    if background:
        _background_panel(axes[0][-1], background)
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


def _background_ratios(document: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{cell label: {system: with / without background work}} where both were measured."""
    found: dict[str, dict[str, float]] = {}
    for name, label in ((OURS, "blobstore"), (PEER, "Swift")):
        for pair in (_system(document, name).get("background") or {}).get("ratios", []):
            cell = f"{pair['op']} {format_size(pair['size_bytes'])} x{pair['concurrency']}"
            found.setdefault(cell, {})[label] = float(pair["ratio"])
    return found


def _background_panel(axis: Any, ratios: Mapping[str, Mapping[str, float]]) -> None:
    labels = list(ratios)
    width = 0.35
    for offset, name in enumerate(("blobstore", "Swift")):
        values = [ratios[label].get(name, 0.0) for label in labels]
        if any(values):
            axis.bar([i + (offset - 0.5) * width for i in range(len(labels))], values, width,
                     label=name)
    axis.axhline(0.9, color="grey", linestyle="--", label="target 0.90")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_ylim(0, 1.2)
    axis.set_title("with / without background work")
    axis.legend(fontsize="small")
