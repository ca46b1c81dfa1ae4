"""How a benchmark result is shown to people: an aligned text table and a progress line.

The table has one row per phase (and, for a mixed phase, one row per operation under its
total), the SPEC §7 figures as columns, then errors by kind and a few sample messages.
Machines read ``--json`` instead (``BenchResult.to_json``); nothing here is parsed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from blobstore.bench.stats import BenchResult, OpSummary, Snapshot
from blobstore.bench.units import format_size, mb_per_s

COLUMNS = ("op", "size", "conc", "secs", "ops", "ops/s", "MB/s", "p50 ms", "p90 ms",
           "p99 ms", "max ms", "errors", "cpu s")


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
               left_columns: Collection[int] = (0,)) -> str:
    """Columns padded to their widest cell; ``left_columns`` left-aligned, others right."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(cell).ljust(widths[i]) if i in left_columns
                         else str(cell).rjust(widths[i])
                         for i, cell in enumerate(cells)).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]),
                      *(line(row) for row in rows)])


def _row(op: str, result: BenchResult, summary: OpSummary, cpu: str) -> list[str]:
    latency = summary.latency
    return [op, format_size(result.size_bytes), str(result.concurrency),
            f"{result.duration_s:.2f}", str(summary.ops), f"{summary.ops_per_s:.1f}",
            f"{summary.mb_per_s:.1f}", f"{latency.p50_ms:.1f}", f"{latency.p90_ms:.1f}",
            f"{latency.p99_ms:.1f}", f"{latency.max_ms:.1f}", str(summary.errors), cpu]


def result_table(results: Sequence[BenchResult]) -> str:
    """The table ``blobstore bench`` prints, with error kinds and samples under it."""
    rows: list[list[str]] = []
    for result in results:
        rows.append(_row(result.op, result, result.total, f"{result.client_cpu_s:.2f}"))
        if len(result.by_op) > 1:
            rows.extend(_row(f"  {op}", result, summary, "")
                        for op, summary in result.by_op.items())
    lines = [text_table(COLUMNS, rows)]
    for result in results:
        if result.errors:
            kinds = ", ".join(f"{kind} {count}"
                              for kind, count in result.total.errors_by_kind.items())
            lines.append(f"errors ({result.op} {format_size(result.size_bytes)}): {kinds}")
            lines.extend(f"  {sample}" for sample in result.error_samples)
    return "\n".join(lines)


def heading(result: BenchResult) -> str:
    share = result.client_cpu_s / result.duration_s * 100 if result.duration_s else 0.0
    return (f"{result.endpoint} bucket {result.bucket}, keys {result.key_prefix}/..., "
            f"{result.objects} objects; client CPU {share:.0f}% of one core")


def progress_line(label: str, snapshot: Snapshot) -> str:
    """One line for a terminal: elapsed, ops, MB/s so far and errors."""
    rate = snapshot.ops / snapshot.elapsed_s if snapshot.elapsed_s > 0 else 0.0
    return (f"{label}  {snapshot.elapsed_s:6.1f} s  {snapshot.ops:8d} ops  {rate:9.1f} ops/s  "
            f"{mb_per_s(snapshot.bytes, snapshot.elapsed_s):9.1f} MB/s  "
            f"{snapshot.errors} errors")
