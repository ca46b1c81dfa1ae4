"""The standard benchmark matrix, in one command: our cluster, the machine, and Swift.

    python bench/run_matrix.py [--quick] [--duration 10s] [--sizes 4KiB,1MiB,64MiB]
        [--concurrency 1,4,32] [--meta 3] [--storage 8] [--swift] [--out DIR]
    python bench/run_matrix.py --render bench/results/DATE     # remake .md and .png

What it does, in order:
1. Measures the machine's own limits (``blobstore/bench/limits.py``: disk with fsync on
   the disk the cluster will use, loopback HTTP, MD5/SHA-256/xxh3/zfec per core), before
   any cluster runs, so nothing else competes with the probes.
2. Starts the default local cluster (3 meta, 8 storage, 1 gateway, EC 4+2) in a temporary
   directory with the real-process harness (``blobstore.testing.processes.Cluster``: the
   same processes ``blobstore up`` starts, on ports that are free now rather than 9000,
   which another cluster on this machine may hold; every process is killed by pid at the
   end). If 3 meta replicas do not start, it falls back to 1 and says so in the results.
   ``down_after`` is 1 hour, so no repair starts while nodes are down for the degraded cell.
3. Runs the matrix (``blobstore/bench/matrix.py``): per size, PUT and then GET at each
   concurrency, and for 64 MiB a GET with storage-1 and storage-2 killed (SIGKILL),
   restarted afterwards. Objects are deleted after each size.
4. With ``--swift``: sets up and starts the OpenStack Swift peer (``--swift-peer``, default
   ``$SWIFT_PEER_DIR`` else /work/shared/peers/swift; needs root, as its setup installs
   Debian packages), runs the same matrix with the same client, the degraded cell with
   object-1 and object-3 stopped (the servers of data fragments 0 and 1, so GETs decode),
   and stops it. When it cannot run, the results say why.
5. Writes ``results.json``, ``results.md`` (ours, Swift, machine limit, ratios) and
   ``chart.png`` (if matplotlib is importable; else a note) to
   ``bench/results/<date>/`` (or ``--out``), also when a step failed half way.

``--quick`` (2 sizes of concurrency, 1.5 s cells, short probes) takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blobstore import __version__
from blobstore.bench.limits import measure_machine
from blobstore.bench.matrix import MatrixPlan, run_matrix
from blobstore.bench.matrix_report import chart, markdown
from blobstore.bench.s3 import Target
from blobstore.bench.units import format_size, parse_duration_s, parse_size_bytes
from blobstore.launch.health import NodeStartError
from blobstore.testing.processes import Cluster

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_SWIFT_PEER = Path(os.environ.get("SWIFT_PEER_DIR", "/work/shared/peers/swift"))
OURS_DEGRADED_NODES = ("storage-1", "storage-2")
SWIFT_DEGRADED_NODES = ("object-1", "object-3")  # data fragments 0 and 1 (peer README)
SWIFT_SETUP_TIMEOUT_S = 1800
SWIFT_SCRIPT_TIMEOUT_S = 300
DOWN_AFTER_S = 3600.0

Log = Callable[[str], None]


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- our cluster ------------------------------------------------------------------------------

class ClusterDegrader:
    """Kill storage nodes of a harness cluster for a degraded cell; restart them after."""

    def __init__(self, cluster: Cluster, node_ids: tuple[str, ...]) -> None:
        self.cluster = cluster
        self.node_ids = node_ids

    async def degrade(self) -> str:
        for node_id in self.node_ids:
            await asyncio.to_thread(self.cluster.kill, node_id)
        return f"{', '.join(self.node_ids)} killed (SIGKILL)"

    async def restore(self) -> None:
        for node_id in self.node_ids:
            await asyncio.to_thread(self.cluster.start, node_id)


def start_cluster(stack: contextlib.ExitStack, work: Path, args: argparse.Namespace,
                  notes: list[str]) -> tuple[Cluster, int]:
    """Our default cluster; 3 meta replicas, else 1 (with a note)."""
    for meta in dict.fromkeys((args.meta, 1)):
        try:
            cluster = Cluster(work / f"cluster-meta{meta}", meta=meta, storage=args.storage,
                              gateway=1, ec=args.ec, down_after_s=DOWN_AFTER_S)
            return stack.enter_context(cluster), meta
        except NodeStartError as error:
            if meta == 1:
                raise
            first_line = str(error).splitlines()[0]
            notes.append(f"a cluster with {meta} meta replicas did not start ({first_line}); "
                         "this run used 1")
            log(f"warning: {notes[-1]}")
    raise AssertionError("unreachable")


def run_ours(work: Path, args: argparse.Namespace, plan: MatrixPlan) -> dict[str, Any]:
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        cluster, meta = start_cluster(stack, work, args, notes)
        log(f"blobstore: cluster up at {cluster.endpoint} (meta {meta}, storage {args.storage}, "
            f"gateway 1, EC {args.ec})")
        config = cluster.config
        target = Target(cluster.endpoint, *cluster.credentials, config.region)
        degrader = ClusterDegrader(cluster, OURS_DEGRADED_NODES)
        cells = asyncio.run(run_matrix("blobstore", target, plan, degrader, log, args.seed))
    return {"label": f"blobstore {__version__}: meta {meta}, storage {args.storage}, "
                     f"gateway 1, EC {args.ec}",
            "endpoint": target.endpoint,
            "config": {"meta": meta, "storage": args.storage, "gateway": 1, "ec": args.ec,
                       "segment_size_bytes": config.segment_size_bytes,
                       "degraded_nodes": list(OURS_DEGRADED_NODES)},
            "cells": [cell.to_json() for cell in cells], "notes": notes}


# -- the Swift peer ---------------------------------------------------------------------------

class PeerUnavailable(Exception):
    """The Swift peer cannot run here; the message says why."""


class SwiftPeer:
    """The scripts of /work/shared/peers/swift, on a data dir of ours."""

    def __init__(self, peer_dir: Path, data_dir: Path) -> None:
        self.peer_dir = peer_dir
        self.data_dir = data_dir

    def why_not(self) -> str | None:
        if not (self.peer_dir / "setup.sh").is_file():
            return f"no Swift peer at {self.peer_dir} (set --swift-peer or $SWIFT_PEER_DIR)"
        if os.geteuid() != 0:
            return "the Swift peer needs root (its setup.sh installs Debian packages)"
        if shutil.which("apt-get") is None and shutil.which("swift-proxy-server") is None:
            return "Swift is not installed and there is no apt-get to install it"
        return None

    def script(self, name: str, *args: str, timeout_s: float = SWIFT_SCRIPT_TIMEOUT_S) -> str:
        try:
            done = subprocess.run(["bash", str(self.peer_dir / name), str(self.data_dir), *args],
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            raise PeerUnavailable(f"{name} took over {timeout_s:.0f} s") from error
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            raise PeerUnavailable(f"{name} failed ({done.returncode}): {tail}")
        return done.stdout

    def target(self) -> Target:
        values: dict[str, str] = {}
        for line in (self.data_dir / "etc" / "peer.env").read_text().splitlines():
            if line.lstrip().startswith("#"):
                continue
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip("'\"")
        return Target(f"http://127.0.0.1:{values['PROXY_PORT']}", values["S3_ACCESS_KEY"],
                      values["S3_SECRET"], values.get("S3_REGION") or "us-east-1")


class SwiftDegrader:
    def __init__(self, peer: SwiftPeer, names: tuple[str, ...]) -> None:
        self.peer = peer
        self.names = ",".join(names)

    async def degrade(self) -> str:
        await asyncio.to_thread(self.peer.script, "stop.sh", "--only", self.names)
        return f"{self.names} stopped (data fragments 0 and 1)"

    async def restore(self) -> None:
        await asyncio.to_thread(self.peer.script, "start.sh", "--only", self.names)


def run_swift(work: Path, args: argparse.Namespace, plan: MatrixPlan) -> dict[str, Any]:
    peer = SwiftPeer(args.swift_peer, work / "swift")
    reason = peer.why_not()
    if reason:
        log(f"swift: skipped: {reason}")
        return {"skipped": reason}
    try:
        log("swift: setup.sh (installs packages on first use; may take minutes)")
        peer.script("setup.sh", timeout_s=SWIFT_SETUP_TIMEOUT_S)
        peer.script("start.sh")
    except PeerUnavailable as error:
        log(f"swift: skipped: {error}")
        with contextlib.suppress(PeerUnavailable):
            peer.script("stop.sh")
        return {"skipped": str(error)}
    try:
        target = peer.target()
        log(f"swift: up at {target.endpoint}")
        cells = asyncio.run(run_matrix("swift", target, plan,
                                       SwiftDegrader(peer, SWIFT_DEGRADED_NODES), log, args.seed))
    finally:
        peer.script("stop.sh")
    return {"label": "OpenStack Swift 2.30.1 (Debian 12), EC 4+2 (isa_l_rs_vand), 6 object "
                     "servers, s3api", "endpoint": target.endpoint,
            "config": {"degraded_nodes": list(SWIFT_DEGRADED_NODES)},
            "cells": [cell.to_json() for cell in cells], "notes": []}


# -- the run ----------------------------------------------------------------------------------

def make_plan(args: argparse.Namespace) -> MatrixPlan:
    base = MatrixPlan.quick() if args.quick else MatrixPlan()
    sizes = tuple(parse_size_bytes(s) for s in args.sizes.split(",")) if args.sizes \
        else base.sizes_bytes
    concurrencies = tuple(int(c) for c in args.concurrency.split(",")) if args.concurrency \
        else base.concurrencies
    degraded = base.degraded_size_bytes if base.degraded_size_bytes in sizes else max(sizes)
    return MatrixPlan(sizes_bytes=sizes, concurrencies=concurrencies,
                      duration_s=parse_duration_s(args.duration) if args.duration
                      else base.duration_s,
                      count_max=args.count, degraded_size_bytes=None if args.no_degraded
                      else degraded, degraded_concurrency=args.degraded_concurrency)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_at_start": _loadavg()}


def _loadavg() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def output_dir(out: Path | None, started: dt.datetime) -> Path:
    if out is not None:
        return out
    directory = RESULTS_DIR / started.strftime("%Y-%m-%d")
    if (directory / "results.json").exists():
        directory = RESULTS_DIR / started.strftime("%Y-%m-%d-%H%M%S")
    return directory


def write_outputs(document: dict[str, Any], directory: Path) -> list[str]:
    """results.json, results.md, chart.png; returns notes (a chart not made)."""
    directory.mkdir(parents=True, exist_ok=True)
    why_no_chart = chart(document, directory / "chart.png")
    document["chart"] = why_no_chart or "chart.png"
    (directory / "results.json").write_text(json.dumps(document, indent=1) + "\n")
    (directory / "results.md").write_text(markdown(document))
    return [why_no_chart] if why_no_chart else []


def run(args: argparse.Namespace) -> Path:
    plan = make_plan(args)
    started = dt.datetime.now(dt.UTC)
    directory = output_dir(args.out, started)
    work = Path(tempfile.mkdtemp(prefix="blobstore-bench-", dir=args.work_dir))
    document: dict[str, Any] = {
        "tool": "bench/run_matrix.py", "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": args.quick, "machine": machine(), "limits": {}, "plan": plan.to_json(),
        "systems": {}, "notes": []}
    log(f"matrix: sizes {', '.join(map(format_size, plan.sizes_bytes))} x put, get x "
        f"concurrency {', '.join(map(str, plan.concurrencies))}, {plan.duration_s} s per cell; "
        f"work dir {work}")
    try:
        if not args.no_limits:
            log("machine limits: measuring")
            limits = measure_machine(work / "limits", args.limit_seconds or
                                     (0.5 if args.quick else 2.0), args.seed)
            document["limits"] = limits.to_json()
        document["systems"]["blobstore"] = run_ours(work, args, plan)
        document["systems"]["swift"] = run_swift(work, args, plan) if args.swift \
            else {"skipped": "not asked for (run with --swift)"}
    except BaseException as error:
        document["notes"].append(f"the run stopped early: {error!r}")
        raise
    finally:
        document["machine"]["loadavg_at_end"] = _loadavg()
        document["finished_utc"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for note in write_outputs(document, directory):
            log(f"note: {note}")
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        log(f"results: {directory}/results.json, results.md"
            f"{', chart.png' if (directory / 'chart.png').exists() else ''}")
    return directory


def render(directory: Path) -> None:
    document = json.loads((directory / "results.json").read_text())
    for note in write_outputs(document, directory):
        log(f"note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: concurrency 1,4; 1.5 s cells; short probes (~1 min)")
    parser.add_argument("--duration", help="per cell, e.g. 10s (default 10s; quick 1.5s)")
    parser.add_argument("--count", type=int, default=None, help="at most N requests per cell")
    parser.add_argument("--sizes", help="comma-separated, e.g. 4KiB,1MiB,64MiB")
    parser.add_argument("--concurrency", help="comma-separated, e.g. 1,4,32")
    parser.add_argument("--degraded-concurrency", type=int, default=4)
    parser.add_argument("--no-degraded", action="store_true", help="skip the degraded GET")
    parser.add_argument("--meta", type=int, default=3, help="meta replicas (falls back to 1)")
    parser.add_argument("--storage", type=int, default=8)
    parser.add_argument("--ec", default="4+2")
    parser.add_argument("--no-limits", action="store_true", help="skip the machine probes")
    parser.add_argument("--limit-seconds", type=float, default=None, help="per probe")
    parser.add_argument("--swift", action="store_true", help="also run the Swift peer (root)")
    parser.add_argument("--swift-peer", type=Path, default=DEFAULT_SWIFT_PEER)
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default bench/results/<date>)")
    parser.add_argument("--work-dir", default=None,
                        help="where the cluster's data goes (default: system temp dir)")
    parser.add_argument("--keep-work", action="store_true", help="keep the cluster's files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render", type=Path, default=None,
                        help="only remake results.md and chart.png from DIR/results.json")
    args = parser.parse_args()
    if args.render:
        render(args.render)
        return
    directory = run(args)
    print((directory / "results.md").read_text())


if __name__ == "__main__":
    main()
