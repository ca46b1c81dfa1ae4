"""Storage membership on real processes (SPEC §2 ``node add|drain|remove``, issue #8): a node
drained under load keeps every segment at k+m shards and ends empty, then is removed; an
added node receives its fair share; refusals and dry runs change nothing; every process
restarted one at a time under load fails no request (boto3's own retries aside)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from blobstore.core.records import NodeRole
from blobstore.testing.processes import Cluster, free_port

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
KIB = 1024
# Small grace and fast workers, so that a drained node's old copies go within seconds.
FAST = {"repair_poll_interval_s": 1.0, "inventory_interval_s": 2.0, "gc_delete_margin_s": 1.0}


# ---- helpers ---------------------------------------------------------------------------------


def cli_json(cluster: Cluster, *args: str, expect: tuple[int, ...] = (0,),
             timeout_s: float = 240.0) -> dict:
    result = cluster.cli(*args, "--json", timeout_s=timeout_s)
    assert result.returncode in expect, (args, result.returncode, result.stderr.decode()[-2000:],
                                         result.stdout.decode()[-2000:])
    return json.loads(result.stdout) if result.returncode == 0 else {}


def refused(cluster: Cluster, *args: str) -> str:
    """Run a command that must be refused (exit 1); its error message."""
    result = cluster.cli(*args, timeout_s=120)
    assert result.returncode == 1, (args, result.returncode, result.stdout.decode(),
                                    result.stderr.decode())
    return result.stderr.decode()


def wait_until(what: str, predicate: Callable[[], bool], timeout_s: float,
               interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


def client(endpoint: str, cluster: Cluster, attempts: int = 3):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=cluster.config.region,
        aws_access_key_id=cluster.credentials.access_key,
        aws_secret_access_key=cluster.credentials.secret_key,
        config=Config(s3={"addressing_style": "path"},
                      retries={"max_attempts": attempts, "mode": "standard"},
                      connect_timeout=5, read_timeout=60))


def put_objects(cluster: Cluster, bucket: str, sizes: list[int]) -> dict[str, bytes]:
    s3 = client(cluster.endpoint, cluster)
    s3.create_bucket(Bucket=bucket)
    objects = {f"obj-{number:03d}": os.urandom(size) for number, size in enumerate(sizes)}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return objects


def assert_all_read_back(cluster: Cluster, bucket: str, objects: dict[str, bytes]) -> None:
    s3 = client(cluster.endpoint, cluster)
    for key, data in objects.items():
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest(), key


def assert_fsck_clean(cluster: Cluster, *flags: str) -> dict:
    report = cli_json(cluster, "fsck", *flags)
    assert (report["degraded"], report["lost"]) == (0, 0), report
    assert report["healthy"] == report["segments"] > 0, report
    return report


def status(cluster: Cluster) -> dict:
    return cli_json(cluster, "status", expect=(0, 1))


def states(cluster: Cluster) -> dict[str, str]:
    return {node["id"]: node["state"] for node in status(cluster)["nodes"]}


def placed(cluster: Cluster) -> dict[str, int]:
    return {node["id"]: node["placed_shards"] for node in cli_json(cluster, "node", "list")["nodes"]}


def shard_files(data_dir: str) -> list[Path]:
    root = Path(data_dir) / "shards"
    return [p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.name] \
        if root.exists() else []


def shard_bytes(data_dir: str) -> int:
    """Bytes of the shard files in ``data_dir``; a file that the collector removes between
    the listing and its stat counts as gone (it once failed CI with FileNotFoundError)."""
    total = 0
    for path in shard_files(data_dir):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


class Workload:
    """PUTs of new objects and GETs of acknowledged ones from ``threads`` threads; every
    failure (an exception after boto3's retries, or wrong bytes) is kept."""

    def __init__(self, cluster: Cluster, bucket: str, endpoints: list[str], *,
                 threads: int = 2, attempts: int = 3, seed: int = 1) -> None:
        self.cluster = cluster
        self.bucket = bucket
        self.endpoints = endpoints
        self.attempts = attempts
        self.rng = random.Random(seed)
        self.acked: dict[str, bytes] = {}
        self.errors: list[str] = []
        self.ops = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(threads)]

    def __enter__(self) -> Workload:
        client(self.endpoints[0], self.cluster).create_bucket(Bucket=self.bucket)
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _run(self, number: int) -> None:
        clients = [client(e, self.cluster, self.attempts) for e in self.endpoints]
        rng = random.Random(number * 7919 + 1)
        sequence = 0
        while not self._stop.is_set():
            s3 = clients[sequence % len(clients)]
            sequence += 1
            try:
                if sequence % 2 or not self.acked:
                    key = f"w{number}-{sequence:05d}"
                    data = os.urandom(rng.randrange(40 * KIB, 600 * KIB))
                    s3.put_object(Bucket=self.bucket, Key=key, Body=data)
                    with self._lock:
                        self.acked[key] = data
                else:
                    with self._lock:
                        key = rng.choice(sorted(self.acked))
                        data = self.acked[key]
                    body = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    if body != data:
                        self.errors.append(f"GET {key}: wrong bytes")
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                self.errors.append(f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.ops += 1


# ---- must-show: drain under load, then remove ---------------------------------------------------


def test_drain_under_load_keeps_full_redundancy_empties_the_node_and_remove_succeeds(tmp_path):
    # Moves are paced by the repair rate: 512 KiB/s per node makes the drain last seconds,
    # so that the status is sampled many times while it runs.
    with Cluster(tmp_path, storage=8, segment_size_bytes=MIB, gc_grace_s=8,
                 settings={**FAST, "repair_rate_bytes_per_s": 512 * KIB}) as cluster:
        rng = random.Random(8)
        objects = put_objects(cluster, "keep", [rng.randrange(300 * KIB, 3 * MIB)
                                                for _ in range(50)])
        victim = "storage-3"
        data_dir = cluster.node(victim).data_dir
        before = placed(cluster)[victim]
        assert before > 10, before
        with Workload(cluster, "live", [cluster.endpoint]) as load:
            time.sleep(2)
            started = time.monotonic()
            drain = subprocess.Popen(
                [sys.executable, "-m", "blobstore", "node", "drain", victim, "--wait",
                 "--timeout", "150", "--json"], env=cluster.env(), cwd=cluster.root,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            samples = []
            while drain.poll() is None:  # full redundancy THROUGHOUT: nothing ever degraded
                now = status(cluster)
                samples.append((now["degraded_segments"], now["repair_backlog"]))
                assert now["degraded_segments"] == 0, samples
                time.sleep(1)
            out, err = drain.communicate()
            assert drain.returncode == 0, err.decode()[-2000:]
            drained_s = time.monotonic() - started
            time.sleep(2)
            load.stop()
        result = json.loads(out)
        assert result["placed_shards_after"] == 0
        assert load.errors == [], load.errors[:5]
        assert load.ops > 20, load.ops
        print(f"drained {before}+ shards of {victim} in {drained_s:.1f}s "
              f"({result['drain_s']}s by the CLI) under {load.ops} requests, "
              f"{len(samples)} status samples all with 0 degraded")
        assert states(cluster)[victim] == "draining"
        assert placed(cluster)[victim] == 0
        wait_until(f"{victim}'s old copies reclaimed", lambda: not shard_files(data_dir), 60)
        assert_fsck_clean(cluster, "--deep")
        assert_all_read_back(cluster, "keep", objects)
        assert_all_read_back(cluster, "live", load.acked)
        removed = cli_json(cluster, "node", "remove", victim)
        assert removed["state"] == "removed"
        wait_until("status shows it removed", lambda: states(cluster)[victim] == "removed", 10)
        more = put_objects(cluster, "after", [700 * KIB, 2 * MIB])
        assert_all_read_back(cluster, "after", more)
        assert_fsck_clean(cluster)


# ---- must-show: add a node, it receives its fair share ------------------------------------------


def test_an_added_node_receives_its_fair_share(tmp_path):
    with Cluster(tmp_path, storage=6, segment_size_bytes=MIB, gc_grace_s=8,
                 settings=FAST) as cluster:
        objects = put_objects(cluster, "grow", [2 * MIB] * 36)  # 72 segments, 432 equal shards
        address = f"127.0.0.1:{free_port()}"
        dry = cli_json(cluster, "node", "add", "storage-7", "--address", address, "--dry-run")
        assert dry["dry_run"] and "storage-7" not in states(cluster)
        added = cli_json(cluster, "node", "add", "storage-7", "--address", address)
        assert added["config_appended"]
        cluster.reload_config()
        cluster.start("storage-7")
        wait_until("storage-7 up", lambda: states(cluster).get("storage-7") == "up", 30)
        plan = cli_json(cluster, "node", "rebalance", "storage-7", "--dry-run")
        assert plan["placed_shards"] == 0 and plan["fair_share"] > 0, plan
        started = time.monotonic()
        done = cli_json(cluster, "node", "rebalance", "storage-7", "--wait", "--timeout", "150")
        counts = placed(cluster)
        mean = sum(counts.values()) / len(counts)
        print(f"rebalance moved {done['queued']} shards to storage-7 in "
              f"{time.monotonic() - started:.1f}s; placed per node: {counts}")
        assert abs(counts["storage-7"] - mean) <= 0.10 * mean, counts
        data_dir = cluster.node("storage-7").data_dir
        assert len(shard_files(data_dir)) >= counts["storage-7"]

        def used_balanced() -> bool:  # the moved shards' old copies reclaimed
            used = {n.id: shard_bytes(n.data_dir)
                    for n in cluster.config.by_role(NodeRole.STORAGE)}
            average = sum(used.values()) / len(used)
            return abs(used["storage-7"] - average) <= 0.10 * average \
                and sum(used.values()) <= 1.02 * sum(counts.values()) * (256 * KIB + 48)

        wait_until("used bytes balanced", used_balanced, 60)
        assert_fsck_clean(cluster, "--deep")
        assert_all_read_back(cluster, "grow", objects)


# ---- refusals and dry runs change nothing -------------------------------------------------------


def test_refusals_and_dry_runs_change_nothing(tmp_path):
    with Cluster(tmp_path, storage=7, segment_size_bytes=MIB, gc_grace_s=8,
                 settings=FAST) as cluster:
        put_objects(cluster, "keep", [1 * MIB + n for n in range(8)])
        config_text = cluster.config_path.read_text()
        counts = placed(cluster)

        plan = cli_json(cluster, "node", "drain", "storage-7", "--dry-run")
        assert plan["dry_run"] and plan["placed_shards"] == counts["storage-7"] > 0
        assert len(plan["targets"]) == 6
        assert states(cluster)["storage-7"] == "up" and placed(cluster) == counts

        for args in (("node", "remove", "storage-1"), ("node", "remove", "storage-1",
                                                         "--dry-run")):
            assert "drain it first" in refused(cluster, *args)
        assert refused(cluster, "node", "drain", "meta-1").count("meta remove")
        cli_json(cluster, "node", "drain", "storage-7", "--wait", "--timeout", "120")

        # 6 storage nodes left for 4+2: draining one more could never finish
        for args in (("node", "drain", "storage-6"), ("node", "drain", "storage-6",
                                                        "--dry-run")):
            assert "would leave 5 up storage node(s)" in refused(cluster, *args)
        assert states(cluster)["storage-6"] == "up"
        assert cli_json(cluster, "node", "list")["move_backlog"] == 0

        dry = cli_json(cluster, "node", "remove", "storage-7", "--dry-run")
        assert dry["dry_run"] and states(cluster)["storage-7"] == "draining"

        taken = cluster.node("storage-1").address
        assert "already storage-1's" in refused(cluster, "node", "add", "storage-9",
                                                "--address", taken)
        assert "is taken" in refused(cluster, "node", "add", "storage-2", "--address",
                                     f"127.0.0.1:{free_port()}")
        cli_json(cluster, "node", "add", "storage-9", "--address", f"127.0.0.1:{free_port()}",
                 "--dry-run")
        assert cluster.config_path.read_text() == config_text
        assert "storage-9" not in states(cluster)
        assert "last voter" in refused(cluster, "meta", "remove", "meta-1")
        assert "last voter" in refused(cluster, "meta", "remove", "meta-1", "--dry-run")

        cli_json(cluster, "node", "remove", "storage-7")
        assert "already removed" in refused(cluster, "node", "drain", "storage-7")
        assert_fsck_clean(cluster)


# ---- rolling restart of every process under load -----------------------------------------------


def _restart_one_at_a_time(cluster: Cluster, node_ids: list[str]) -> list[tuple[str, float]]:
    took = []
    for node_id in node_ids:
        started = time.monotonic()
        cluster.stop(node_id)
        cluster.start(node_id)
        if cluster.node(node_id).role == NodeRole.STORAGE:
            wait_until(f"{node_id} up", lambda n=node_id: states(cluster)[n] == "up", 30)
        elif cluster.node(node_id).role == NodeRole.META:
            wait_until("meta leader with every replica caught up", lambda: _meta_settled(cluster),
                       30)
        took.append((node_id, round(time.monotonic() - started, 1)))
    return took


def _meta_settled(cluster: Cluster) -> bool:
    now = status(cluster)
    replicas = now.get("meta_replicas") or []
    return bool(now.get("leader")) and all(r.get("reachable") is not False
                                           and r.get("role") in ("leader", "follower")
                                           for r in replicas)


def _rolling_restart(tmp_path: Path, order: Callable[[Cluster], list[str]]) -> None:
    with Cluster(tmp_path, meta=3, storage=7, gateway=2, segment_size_bytes=MIB,
                 settings=FAST) as cluster:
        gateways = [f"http://{cluster.node(g).address}" for g in cluster.node_ids("gateway")]
        with Workload(cluster, "roll", gateways, threads=2, attempts=8) as load:
            time.sleep(2)
            took = _restart_one_at_a_time(cluster, order(cluster))
            time.sleep(2)
            load.stop()
        print(f"restarted {took} under {load.ops} requests")
        assert load.errors == [], load.errors[:5]
        assert load.ops > 20
        assert_all_read_back(cluster, "roll", load.acked)
        cli_json(cluster, "repair", "--wait", "--timeout", "120")
        assert_fsck_clean(cluster)


def test_rolling_restart_of_every_process_under_load_fails_nothing(tmp_path):
    """Each of 3 meta replicas (the leader among them), 7 storage nodes and 2 gateways is
    stopped (SIGTERM) and started again, one at a time, while two clients PUT and GET
    through both gateways with boto3's standard retries: no request fails."""
    _rolling_restart(tmp_path, lambda cluster: [*cluster.node_ids("meta"),
                                                *cluster.node_ids("storage"),
                                                *cluster.node_ids("gateway")])
