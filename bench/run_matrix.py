"""The standard benchmark matrix, in one command: our cluster, the machine, and Swift.

    python bench/run_matrix.py [--quick] [--duration 10s] [--sizes 4KiB,1MiB,64MiB]
        [--concurrency 1,4,32] [--meta 3] [--storage 8] [--swift] [--out DIR]
        [--skip scrub,meta,background,repair] [--background-mib N] [--repair-mib N]
        [--scrub-mib N] [--meta-concurrency N]
    python bench/run_matrix.py --render bench/results/DATE     # remake .md and .png

What it does, in order (the planned duration of each step is printed at the start):
1. Measures the machine's own limits (``blobstore/bench/limits.py``: disk with fsync on
   the disk the cluster will use, loopback HTTP, MD5/SHA-256/xxh3/zfec per core), before
   any cluster runs, so nothing else competes with the probes.
2. Scrub rate (``blobstore/bench/scrub.py``): one node's ``Scrubber``, unthrottled, over a
   shard store of ``--scrub-mib`` on this disk, warm and cold, next to a raw read of the
   same files (still no cluster running).
3. Starts the default local cluster (3 meta, 8 storage, 1 gateway, EC 4+2) in a temporary
   directory with the real-process harness (``blobstore.testing.processes.Cluster``: the
   same processes ``blobstore up`` starts, on ports that are free now rather than 9000,
   which another cluster on this machine may hold; every process is killed by pid at the
   end). If 3 meta replicas do not start, it falls back to 1 and says so in the results.
   ``down_after`` is 1 hour, so no repair starts while nodes are down for the degraded cell.
4. Runs the matrix (``blobstore/bench/matrix.py``): per size, PUT and then GET at each
   concurrency, and for 64 MiB a GET with storage-1 and storage-2 killed (SIGKILL),
   restarted afterwards. Objects are deleted after each size.
5. Meta commits/s (``blobstore/bench/meta_commits.py``): ``--meta-concurrency`` clients
   committing 0-byte ``put_object`` commands straight at the cluster's meta service.
6. Foreground with background work (``blobstore/bench/background.py``): ``--background-mib``
   of 64 MiB objects stored, then PUT 64 MiB x4 and GET 4 KiB x32 measured normally, then
   again with storage-4 lost for good (its repair draining at the default rate) and a scrub
   pass forced on every other storage node (and forced again when one ends) at the default
   rate; the ratio is the issue's "within 10%". Last on this cluster: it loses a node.
7. Repair rate (``blobstore/bench/repair.py``): a cluster of its own (1 meta, 8 storage,
   repair unthrottled), ``--repair-mib`` stored, a node lost, timed until the backlog is 0.
8. With ``--swift``: sets up and starts the OpenStack Swift peer (``--swift-peer``, default
   ``$SWIFT_PEER_DIR`` else /work/shared/peers/swift; its setup installs Debian packages
   when missing, which needs root) with its data under the work dir, on its default ports
   if they are free (else free ones), runs the same matrix with the same client, the
   degraded cell with object-1 and object-3 stopped (the servers of data fragments 0 and
   1, so GETs decode), the background cells with Swift's own daemons (auditor,
   reconstructor, updaters, replicators) started at their default rates, and stops every
   process by its recorded pid (``stop.sh``), also when a step failed.
9. Writes ``results.json``, ``results.md`` (the matrix: ours, Swift, machine limit, ratios,
   client CPU; then the rows of steps 2, 5-7 with the same columns) and ``chart.png`` (if
   matplotlib is importable; else a note) to ``bench/results/<date>/`` (or ``--out``), also
   when a step failed half way. A step that fails is recorded as such; the others go on.

``--quick`` (concurrency 1 and 4, 1.5 s cells, short probes, 128-256 MiB for the extra
rows) takes about 4 minutes with ``--swift``; the full run about 15.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blobstore import __version__
from blobstore.bench.background import BackgroundPlan, run_background
from blobstore.bench.limits import measure_machine
from blobstore.bench.matrix import MatrixPlan, run_matrix
from blobstore.bench.matrix_report import chart, markdown
from blobstore.bench.meta_commits import run_drive
from blobstore.bench.repair import kill_for_good, measure_repair, meta_client, queue_repair
from blobstore.bench.s3 import Target
from blobstore.bench.scrub import measure_scrub
from blobstore.bench.units import MIB, format_size, parse_duration_s, parse_size_bytes
from blobstore.config import DEFAULT_SEGMENT_SIZE_BYTES
from blobstore.core.records import NodeRole
from blobstore.launch.health import NodeStartError
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.heal_client import StorageHealClient
from blobstore.runtime import eventloop, malloc
from blobstore.testing.processes import Cluster, port_is_free

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_SWIFT_PEER = Path(os.environ.get("SWIFT_PEER_DIR", "/work/shared/peers/swift"))
OURS_DEGRADED_NODES = ("storage-1", "storage-2")
SWIFT_DEGRADED_NODES = ("object-1", "object-3")  # data fragments 0 and 1 (peer README)
SWIFT_SETUP_TIMEOUT_S = 1800
SWIFT_SCRIPT_TIMEOUT_S = 300
DOWN_AFTER_S = 3600.0
BACKGROUND_VICTIM = "storage-4"  # lost for good in the background cells (not 1 or 2)
EXTRAS = ("scrub", "meta", "background", "repair")
# The background cells are judged to within 10%, and a 10 s bulk cell (~40 PUTs of 64 MiB)
# moved its ratio by +-0.06 between runs of the same code (run6 0.99, run7 0.87).
BACKGROUND_CELL_FACTOR = 2
SWIFT_DEFAULT_PORTS = {"PROXY_PORT": 8180, "OBJ_PORT_BASE": 6210, "CONTAINER_PORT": 6201,
                       "ACCOUNT_PORT": 6202, "MEMCACHE_PORT": 11311}
SWIFT_OBJECT_NODES = 6
SWIFT_DAEMON_SETTLE_S = 10.0  # 21 Python daemons starting up are not steady background work
SWIFT_DAEMONS = tuple(
    [f"object-{kind}-{node}" for node in range(1, SWIFT_OBJECT_NODES + 1)
     for kind in ("auditor", "reconstructor", "updater")]
    + ["container-replicator", "container-updater", "account-replicator"])

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
                              gateway=1, ec=args.ec, down_after_s=DOWN_AFTER_S,
                              segment_size_bytes=DEFAULT_SEGMENT_SIZE_BYTES)
            return stack.enter_context(cluster), meta
        except NodeStartError as error:
            if meta == 1:
                raise
            first_line = str(error).splitlines()[0]
            notes.append(f"a cluster with {meta} meta replicas did not start ({first_line}); "
                         "this run used 1")
            log(f"warning: {notes[-1]}")
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Extras:
    """The rows beyond the matrix, and how big each one's work is."""

    skip: frozenset[str] = frozenset()
    background: BackgroundPlan = field(default_factory=BackgroundPlan)
    repair_bytes: int = 1024 * MIB
    scrub_bytes: int = 1024 * MIB
    meta_concurrency: int = 64
    meta_duration_s: float = 10.0

    def wants(self, name: str) -> bool:
        return name not in self.skip

    def to_json(self) -> dict[str, Any]:
        return {"skip": sorted(self.skip), "background": self.background.to_json(),
                "repair_bytes": self.repair_bytes, "scrub_bytes": self.scrub_bytes,
                "meta_concurrency": self.meta_concurrency,
                "meta_duration_s": self.meta_duration_s}


class ClusterBackground:
    """Our background work at default rates: a node lost (repair) and scrub on every node."""

    def __init__(self, cluster: Cluster, victim: str) -> None:
        self.cluster = cluster
        self.victim = victim
        self.passes_forced = 0
        self._session: Any = None

    async def start(self) -> str:
        config = self.cluster.config
        self._session = new_session(limit_per_host=8)
        rpc = RpcClient(self._session, config.secret)
        self._meta = meta_client(self.cluster, rpc)
        self._heal = StorageHealClient(rpc)
        await kill_for_good(self.cluster, rpc, self.victim)
        self._live = [n for n in config.by_role(NodeRole.STORAGE)
                      if self.cluster.is_running(n.id)]
        for node in self._live:
            await self._heal.start_scrub(node.address)
        self.passes_forced = len(self._live)
        queued = await queue_repair(self.cluster, rpc, self.victim)
        return (f"{self.victim} lost for good (SIGKILL, data deleted, declared down): "
                f"{queued} segments queued for repair at the default rate "
                f"(repair_rate_bytes_per_s {config.repair_rate_bytes_per_s / MIB:.0f} MiB/s, "
                f"repair_concurrency {config.repair_concurrency} per node); a scrub pass forced "
                f"on each of the {len(self._live)} other storage nodes and forced again whenever "
                f"one ends (scrub_rate_bytes_per_s {config.scrub_rate_bytes_per_s / MIB:.0f} "
                "MiB/s per node)")

    async def sample(self) -> dict[str, float]:
        backlog = float((await self._meta.status()).get("repair_backlog", 0))
        scrubbing = 0
        for node in self._live:
            status = await self._heal.scrub_status(node.address)
            if status.get("pass_running"):
                scrubbing += 1
            else:
                await self._heal.start_scrub(node.address)
                self.passes_forced += 1
        return {"repair_backlog": backlog, "scrubbing": float(scrubbing)}

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()


def _phase(entry: dict[str, Any], name: str, step: Callable[[], dict[str, Any]]) -> None:
    """Run one extra row; a failure is recorded in ``entry[name]`` and the run goes on."""
    log(f"{entry.get('system', '')}: {name}")
    try:
        entry[name] = step()
    except Exception as error:  # noqa: BLE001 - one row failing must not lose the others
        entry[name] = {"error": f"{type(error).__name__}: {error}"}
        log(f"warning: {name} failed: {entry[name]['error']}")


def run_ours(work: Path, args: argparse.Namespace, plan: MatrixPlan, extras: Extras,
             entry: dict[str, Any]) -> None:
    """Fill ``entry`` (the document's blobstore system) as the steps finish."""
    notes: list[str] = entry.setdefault("notes", [])
    entry["system"] = "blobstore"
    if extras.wants("scrub"):  # no cluster runs yet: the disk is ours alone
        _phase(entry, "scrub", lambda: measure_scrub(work / "scrub", extras.scrub_bytes))
    with contextlib.ExitStack() as stack:
        cluster, meta = start_cluster(stack, work, args, notes)
        log(f"blobstore: cluster up at {cluster.endpoint} (meta {meta}, storage {args.storage}, "
            f"gateway 1, EC {args.ec})")
        config = cluster.config
        target = Target(cluster.endpoint, *cluster.credentials, config.region)
        entry.update({
            "label": f"blobstore {__version__}: meta {meta}, storage {args.storage}, "
                     f"gateway 1, EC {args.ec}",
            "endpoint": target.endpoint,
            "config": {"meta": meta, "storage": args.storage, "gateway": 1, "ec": args.ec,
                       "segment_size_bytes": config.segment_size_bytes,
                       "scrub_rate_bytes_per_s": config.scrub_rate_bytes_per_s,
                       "repair_rate_bytes_per_s": config.repair_rate_bytes_per_s,
                       "degraded_nodes": list(OURS_DEGRADED_NODES)},
            "cells": []})
        degrader = ClusterDegrader(cluster, OURS_DEGRADED_NODES)
        cells = eventloop.run(run_matrix("blobstore", target, plan, degrader, log, args.seed))
        entry["cells"] = [cell.to_json() for cell in cells]
        if extras.wants("meta"):
            addresses = [n.address for n in config.by_role(NodeRole.META)]

            def meta_commits() -> dict[str, Any]:
                result = run_drive(addresses, config.secret, extras.meta_concurrency,
                                   extras.meta_duration_s)
                log(f"blobstore: meta commits {result['commands_per_s']}/s, p99 "
                    f"{result['latency_ms']['p99']} ms, errors {result['errors']}")
                return {**result, "meta_replicas": meta, "concurrency": extras.meta_concurrency}

            _phase(entry, "meta_commits", meta_commits)
        if extras.wants("background"):  # last on this cluster: it loses a node for good
            work_ = ClusterBackground(cluster, BACKGROUND_VICTIM)
            _phase(entry, "background", lambda: eventloop.run(run_background(
                "blobstore", target, extras.background, work_, log, args.seed)))
    if extras.wants("repair"):
        def repair() -> dict[str, Any]:
            result = measure_repair(Cluster, work / "repair-cluster", extras.repair_bytes)
            log(f"blobstore: repair {result['user_data_mb_per_s']} MB/s of user data "
                f"({result['shard_mb_per_s']} MB/s of shards) in {result['seconds']} s")
            return result

        _phase(entry, "repair", repair)


# -- the Swift peer ---------------------------------------------------------------------------

class PeerUnavailable(Exception):
    """The Swift peer cannot run here; the message says why."""


class SwiftPeer:
    """The scripts of /work/shared/peers/swift, on a data dir of ours."""

    def __init__(self, peer_dir: Path, data_dir: Path,
                 ports: dict[str, int] | None = None) -> None:
        self.peer_dir = peer_dir
        self.data_dir = data_dir
        self.ports = ports or {}  # read by setup.sh on the first run (a fresh data dir)

    def why_not(self) -> str | None:
        if not (self.peer_dir / "setup.sh").is_file():
            return f"no Swift peer at {self.peer_dir} (set --swift-peer or $SWIFT_PEER_DIR)"
        if os.geteuid() != 0 and shutil.which("swift-proxy-server") is None:
            return "the Swift peer needs root (its setup.sh installs Debian packages)"
        if shutil.which("apt-get") is None and shutil.which("swift-proxy-server") is None:
            return "Swift is not installed and there is no apt-get to install it"
        return None

    def script(self, name: str, *args: str, timeout_s: float = SWIFT_SCRIPT_TIMEOUT_S) -> str:
        env = {**os.environ, **{key: str(value) for key, value in self.ports.items()}}
        try:
            done = subprocess.run(["bash", str(self.peer_dir / name), str(self.data_dir), *args],
                                  capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired as error:
            raise PeerUnavailable(f"{name} took over {timeout_s:.0f} s") from error
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            raise PeerUnavailable(f"{name} failed ({done.returncode}): {tail}")
        return done.stdout

    def version(self) -> str:
        try:
            done = subprocess.run(["/usr/bin/python3", "-c",
                                   "import swift; print(swift.__version__)"],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return done.stdout.strip() or "?"

    def settings(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for line in (self.data_dir / "etc" / "peer.env").read_text().splitlines():
            if line.lstrip().startswith("#") or "=" not in line:
                continue
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip("'\"")
        return values

    def target(self) -> Target:
        values = self.settings()
        return Target(f"http://127.0.0.1:{values['PROXY_PORT']}", values["S3_ACCESS_KEY"],
                      values["S3_SECRET"], values.get("S3_REGION") or "us-east-1")


def swift_ports(rng: random.Random | None = None,
                is_free: Callable[[int], bool] = port_is_free) -> dict[str, int]:
    """Swift's default ports if all are free, else free ones (6 in a row for the objects)."""
    def all_free(ports: dict[str, int]) -> bool:
        wanted = [port for name, port in ports.items() if name != "OBJ_PORT_BASE"]
        wanted += range(ports["OBJ_PORT_BASE"], ports["OBJ_PORT_BASE"] + SWIFT_OBJECT_NODES)
        return len(set(wanted)) == len(wanted) and all(is_free(port) for port in wanted)

    if all_free(SWIFT_DEFAULT_PORTS):
        return dict(SWIFT_DEFAULT_PORTS)
    rng = rng or random.Random()
    for _ in range(200):
        base = rng.randrange(15000, 19900) // 10 * 10
        ports = {"OBJ_PORT_BASE": base, "CONTAINER_PORT": base + 6, "ACCOUNT_PORT": base + 7,
                 "MEMCACHE_PORT": base + 8, "PROXY_PORT": base + 9}
        if all_free(ports):
            return ports
    raise PeerUnavailable("no free block of 10 ports for Swift in 15000-19999")


class SwiftDegrader:
    def __init__(self, peer: SwiftPeer, names: tuple[str, ...]) -> None:
        self.peer = peer
        self.names = ",".join(names)

    async def degrade(self) -> str:
        await asyncio.to_thread(self.peer.script, "stop.sh", "--only", self.names)
        return f"{self.names} stopped (data fragments 0 and 1)"

    async def restore(self) -> None:
        await asyncio.to_thread(self.peer.script, "start.sh", "--only", self.names)


class SwiftBackground:
    """Swift's own background daemons at their default rates (``start.sh --daemons``)."""

    def __init__(self, peer: SwiftPeer) -> None:
        self.peer = peer
        self.names = ",".join(SWIFT_DAEMONS)

    async def start(self) -> str:
        await asyncio.to_thread(self.peer.script, "start.sh", "--only", self.names)
        await asyncio.sleep(SWIFT_DAEMON_SETTLE_S)
        return (f"Swift's {len(SWIFT_DAEMONS)} background daemons started at their default "
                "rates (object auditor, reconstructor and updater on each of the 6 object "
                "nodes; container replicator and updater; account replicator), measured from "
                f"{SWIFT_DAEMON_SETTLE_S:.0f} s after their start; no node lost")

    async def sample(self) -> dict[str, float]:
        return {}

    async def stop(self) -> None:
        await asyncio.to_thread(self.peer.script, "stop.sh", "--only", self.names)


def run_swift(work: Path, args: argparse.Namespace, plan: MatrixPlan, extras: Extras,
              entry: dict[str, Any]) -> None:
    """Set up, start, measure and stop the Swift peer; every process stopped by pid."""
    entry["system"] = "swift"
    try:
        peer = SwiftPeer(args.swift_peer, work / "swift", swift_ports())
    except PeerUnavailable as error:
        entry["skipped"] = str(error)
        return
    reason = peer.why_not()
    if reason:
        log(f"swift: skipped: {reason}")
        entry["skipped"] = reason
        return
    try:
        log("swift: setup.sh (installs packages on first use; may take minutes)")
        peer.script("setup.sh", timeout_s=SWIFT_SETUP_TIMEOUT_S)
        peer.script("start.sh")
    except PeerUnavailable as error:
        log(f"swift: skipped: {error}")
        with contextlib.suppress(PeerUnavailable):
            peer.script("stop.sh")
        entry["skipped"] = str(error)
        return
    try:
        target = peer.target()
        settings = peer.settings()
        log(f"swift: up at {target.endpoint}")
        entry.update({
            "label": f"OpenStack Swift {peer.version()} (Debian 12), EC "
                     f"{settings.get('EC_K', 4)}+{settings.get('EC_M', 2)} "
                     f"({settings.get('EC_TYPE', '?')}), {SWIFT_OBJECT_NODES} object servers, "
                     "s3api", "endpoint": target.endpoint,
            "config": {"degraded_nodes": list(SWIFT_DEGRADED_NODES),
                       "ports": peer.ports, "data_dir": str(peer.data_dir)},
            "cells": [], "notes": []})
        cells = eventloop.run(run_matrix("swift", target, plan,
                                       SwiftDegrader(peer, SWIFT_DEGRADED_NODES), log, args.seed))
        entry["cells"] = [cell.to_json() for cell in cells]
        if extras.wants("background"):
            _phase(entry, "background", lambda: eventloop.run(run_background(
                "swift", target, extras.background, SwiftBackground(peer), log, args.seed)))
    finally:
        try:
            peer.script("stop.sh")
            log("swift: stopped")
        except PeerUnavailable as error:
            entry.setdefault("notes", []).append(f"stop.sh failed: {error}")
            log(f"warning: swift: {error}")


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


def make_extras(args: argparse.Namespace, plan: MatrixPlan) -> Extras:
    """The rows beyond the matrix: sized down with --quick, --skip'ped by name."""
    skip = frozenset(name.strip() for name in (args.skip or "").split(",") if name.strip())
    unknown = skip - set(EXTRAS)
    if unknown:
        raise SystemExit(f"--skip: unknown {', '.join(sorted(unknown))} "
                         f"(choose from {', '.join(EXTRAS)})")
    base = BackgroundPlan.quick() if args.quick else BackgroundPlan()
    background = BackgroundPlan(
        data_bytes=args.background_mib * MIB if args.background_mib else base.data_bytes,
        data_object_bytes=base.data_object_bytes, cells=base.cells,
        duration_s=BACKGROUND_CELL_FACTOR * plan.duration_s)
    quick_mib = 128 if args.quick else 1024
    return Extras(skip=skip, background=background,
                  repair_bytes=(args.repair_mib or quick_mib) * MIB,
                  scrub_bytes=(args.scrub_mib or quick_mib) * MIB,
                  meta_concurrency=args.meta_concurrency,
                  meta_duration_s=max(2.0, plan.duration_s))


# Rough costs for the planned duration (this machine, loaded: the estimate errs long).
PUT_MB_PER_S, GET_MB_PER_S, SLOW_PUT_MB_PER_S = 80.0, 300.0, 60.0
CELL_OVERHEAD_S = 2.0
CLUSTER_START_S = 20.0
SWIFT_SETUP_S = 40.0


def _matrix_seconds(plan: MatrixPlan, put_mb_per_s: float) -> float:
    """Cells, the in-flight requests that finish after each deadline, populate, cleanup."""
    total = 0.0
    for size in plan.sizes_bytes:
        for concurrency in plan.concurrencies:
            in_flight_mb = size * concurrency / 1e6
            total += plan.duration_s + CELL_OVERHEAD_S + in_flight_mb / put_mb_per_s
            total += plan.duration_s + CELL_OVERHEAD_S + in_flight_mb / GET_MB_PER_S
        if size == plan.degraded_size_bytes:
            total += plan.duration_s + CELL_OVERHEAD_S + 5.0
    return total


def _background_seconds(background: BackgroundPlan, put_mb_per_s: float) -> float:
    cells = sum(background.duration_s + CELL_OVERHEAD_S + size * concurrency / 1e6 /
                (put_mb_per_s if op == "put" else GET_MB_PER_S)
                for op, size, concurrency in background.cells)
    return background.data_bytes / 1e6 / put_mb_per_s + 2 * cells + 15.0


def planned_seconds(plan: MatrixPlan, extras: Extras, limit_seconds: float, limits: bool,
                    swift: bool) -> dict[str, float]:
    """An estimate of each step's wall time, printed at the start of a run."""
    steps = {"limits": 12 * limit_seconds + 8.0 if limits else 0.0,
             "blobstore": CLUSTER_START_S + _matrix_seconds(plan, PUT_MB_PER_S)}
    if extras.wants("scrub"):
        steps["scrub"] = extras.scrub_bytes / 1e6 * (1 / 60.0 + 4 / 500.0) + 3.0
    if extras.wants("meta"):
        steps["meta"] = extras.meta_duration_s + 3.0
    if extras.wants("background"):
        steps["background"] = _background_seconds(extras.background, PUT_MB_PER_S)
    if extras.wants("repair"):
        steps["repair"] = CLUSTER_START_S + extras.repair_bytes / 1e6 * (1 / PUT_MB_PER_S +
                                                                         0.75 / 80.0)
    if swift:
        steps["swift"] = SWIFT_SETUP_S + _matrix_seconds(plan, SLOW_PUT_MB_PER_S)
        if extras.wants("background"):
            steps["swift background"] = _background_seconds(extras.background,
                                                             SLOW_PUT_MB_PER_S) \
                + SWIFT_DAEMON_SETTLE_S
    return {name: round(seconds) for name, seconds in steps.items()}


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
    extras = make_extras(args, plan)
    limit_seconds = args.limit_seconds or (0.5 if args.quick else 2.0)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    directory = output_dir(args.out, started)
    work = Path(tempfile.mkdtemp(prefix="blobstore-bench-", dir=args.work_dir))
    planned = planned_seconds(plan, extras, limit_seconds, not args.no_limits, args.swift)
    document: dict[str, Any] = {
        "tool": "bench/run_matrix.py", "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": args.quick, "machine": machine(), "limits": {}, "plan": plan.to_json(),
        "extras": extras.to_json(), "planned_seconds": planned,
        "systems": {"blobstore": {}, "swift": {}}, "notes": []}
    log(f"matrix: sizes {', '.join(map(format_size, plan.sizes_bytes))} x put, get x "
        f"concurrency {', '.join(map(str, plan.concurrencies))}, {plan.duration_s} s per cell; "
        f"extra rows: {', '.join(name for name in EXTRAS if extras.wants(name)) or 'none'}; "
        f"work dir {work}")
    log(f"planned: about {sum(planned.values()) / 60:.0f} min ("
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in planned.items()) + ")")
    try:
        if not args.no_limits:
            log("machine limits: measuring")
            limits = measure_machine(work / "limits", limit_seconds, args.seed)
            document["limits"] = limits.to_json()
        run_ours(work, args, plan, extras, document["systems"]["blobstore"])
        if args.swift:
            run_swift(work, args, plan, extras, document["systems"]["swift"])
        else:
            document["systems"]["swift"] = {"skipped": "not asked for (run with --swift)"}
    except BaseException as error:
        document["notes"].append(f"the run stopped early: {error!r}")
        raise
    finally:
        for entry in document["systems"].values():
            entry.pop("system", None)
            if not entry:
                entry["skipped"] = "did not run (the run stopped before it)"
        document["machine"]["loadavg_at_end"] = _loadavg()
        document["finished_utc"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        document["wall_seconds"] = round(time.monotonic() - clock)
        for note in write_outputs(document, directory):
            log(f"note: {note}")
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        log(f"results: {directory}/results.json, results.md"
            f"{', chart.png' if (directory / 'chart.png').exists() else ''} "
            f"(took {document['wall_seconds'] / 60:.1f} min)")
    return directory


def render(directory: Path) -> None:
    document = json.loads((directory / "results.json").read_text())
    for note in write_outputs(document, directory):
        log(f"note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: concurrency 1,4; 1.5 s cells; short probes; small extra rows "
                        "(~4 min with --swift)")
    parser.add_argument("--duration", help="per cell, e.g. 10s (default 10s; quick 1.5s)")
    parser.add_argument("--count", type=int, default=None, help="at most N requests per cell")
    parser.add_argument("--sizes", help="comma-separated, e.g. 4KiB,1MiB,64MiB")
    parser.add_argument("--concurrency", help="comma-separated, e.g. 1,4,32")
    parser.add_argument("--degraded-concurrency", type=int, default=4)
    parser.add_argument("--no-degraded", action="store_true", help="skip the degraded GET")
    parser.add_argument("--meta", type=int, default=3, help="meta replicas (falls back to 1)")
    parser.add_argument("--storage", type=int, default=8)
    parser.add_argument("--ec", default="4+2")
    parser.add_argument("--skip", default="",
                        help=f"extra rows to leave out, comma-separated: {', '.join(EXTRAS)}")
    parser.add_argument("--background-mib", type=int, default=None,
                        help="data stored before the background cells (default 2048; quick 256)")
    parser.add_argument("--repair-mib", type=int, default=None,
                        help="data stored before a node is lost (default 1024; quick 128)")
    parser.add_argument("--scrub-mib", type=int, default=None,
                        help="shard payload the scrub passes check (default 1024; quick 128)")
    parser.add_argument("--meta-concurrency", type=int, default=64,
                        help="clients committing metadata commands")
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
    malloc.keep_freed_memory()  # the client moves as many bytes as the gateway does
    directory = run(args)
    print((directory / "results.md").read_text())


if __name__ == "__main__":
    main()
