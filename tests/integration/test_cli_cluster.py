"""The CLI against real processes: up/status/down, supervision, serve, and the data commands.

Every test cleans up by pid, even when it fails: clusters started with ``up`` are stopped with
``down`` and then any recorded pid still alive is SIGKILLed; ``Cluster`` kills its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blobstore.config import load_config
from blobstore.launch.cluster_dir import cluster_dir, pid_alive, read_pids
from blobstore.launch.health import child_env
from blobstore.launch.init import InitOptions
from blobstore.testing.processes import Cluster, free_base_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HAVE_GATEWAY = (ROOT / "blobstore" / "gateway" / "app.py").exists()
GATEWAYS = 1 if HAVE_GATEWAY else 0


def blobstore(*args: str, timeout_s: float = 180.0, env: dict[str, str] | None = None,
              input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "blobstore", *args], capture_output=True,
                          timeout=timeout_s, env=env or child_env(), input=input)


def _text(result: subprocess.CompletedProcess[bytes]) -> str:
    return (f"exit {result.returncode}\nstdout:\n{result.stdout.decode(errors='replace')}\n"
            f"stderr:\n{result.stderr.decode(errors='replace')}")


def _init(directory: Path, storage: int = 8, gateway: int = GATEWAYS) -> None:
    base = free_base_port(InitOptions(storage=storage, gateway=gateway))
    result = blobstore("init", "--dir", str(directory), "--base-port", str(base),
                       "--storage", str(storage), "--gateway", str(gateway))
    assert result.returncode == 0, _text(result)


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def cluster_dir_path(tmp_path: Path) -> Iterator[Path]:
    """A cluster directory whose processes are all gone after the test, whatever happened."""
    directory = tmp_path / "cluster"
    seen: set[int] = set()
    try:
        yield directory
    finally:
        pids = read_pids(cluster_dir(directory).pids_path)
        if pids is not None:
            seen.update(pids.all_pids())
            blobstore("down", "--dir", str(directory), timeout_s=60)
        for pid in seen:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_up_detach_status_down(cluster_dir_path: Path) -> None:
    _init(cluster_dir_path)
    result = blobstore("up", "--dir", str(cluster_dir_path), "--detach")
    assert result.returncode == 0, _text(result)
    output = result.stdout.decode()
    if HAVE_GATEWAY:
        assert "export AWS_ACCESS_KEY_ID=" in output and "S3 endpoint: http://" in output

    pids = read_pids(cluster_dir(cluster_dir_path).pids_path)
    assert pids is not None and pids.ready and pids.supervisor
    assert all(pid_alive(pid) for pid in pids.all_pids())

    report: dict = {}

    def every_node_up() -> bool:  # storage nodes are "suspect" until their first heartbeat
        nonlocal report
        status = blobstore("status", "--dir", str(cluster_dir_path), "--json")
        assert status.returncode == 0, _text(status)
        report = json.loads(status.stdout)
        return all(node["state"] == "up" for node in report["nodes"])

    _wait_for(every_node_up, 30, "every node to be up in status")
    assert len(report["nodes"]) == 3 + 8 + GATEWAYS
    for node in report["nodes"]:
        assert node["pid"] == pids.nodes[node["id"]], node
        assert {"id", "role", "address", "zone", "capacity_bytes", "used_bytes"} <= set(node)
    for key in ("leader", "term", "repair_backlog", "degraded_segments"):
        assert key in report

    human = blobstore("status", "--dir", str(cluster_dir_path))
    assert human.returncode == 0, _text(human)
    assert b"storage-8" in human.stdout

    again = blobstore("up", "--dir", str(cluster_dir_path), "--detach")
    assert again.returncode == 1 and b"already running" in again.stderr, _text(again)

    down = blobstore("down", "--dir", str(cluster_dir_path))
    assert down.returncode == 0, _text(down)
    assert [pid for pid in pids.all_pids() if pid_alive(pid)] == []
    assert not cluster_dir(cluster_dir_path).pids_path.exists()

    down_again = blobstore("down", "--dir", str(cluster_dir_path))
    assert down_again.returncode == 0 and b"no cluster running" in down_again.stdout


def test_status_with_meta_down_says_unknown(cluster_dir_path: Path) -> None:
    _init(cluster_dir_path, storage=6)
    result = blobstore("status", "--dir", str(cluster_dir_path), "--json", timeout_s=60)
    assert result.returncode == 1, _text(result)
    assert result.stderr.decode().startswith("error: ")
    report = json.loads(result.stdout)
    assert {node["state"] for node in report["nodes"]} == {"unknown"}
    assert report["leader"] is None and "error" in report


def test_supervisor_restarts_a_killed_node_and_stops_on_sigint(cluster_dir_path: Path) -> None:
    _init(cluster_dir_path, storage=6, gateway=0)
    paths = cluster_dir(cluster_dir_path)
    up = subprocess.Popen([sys.executable, "-m", "blobstore", "up", "--dir",
                           str(cluster_dir_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=child_env())
    try:
        def ready() -> bool:
            assert up.poll() is None, up.stdout.read().decode() if up.stdout else ""
            pids = read_pids(paths.pids_path)
            return pids is not None and pids.ready

        _wait_for(ready, 120, "the cluster to be ready")
        before = read_pids(paths.pids_path)
        assert before is not None
        victim = before.nodes["storage-2"]
        assert victim is not None
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            now = read_pids(paths.pids_path)
            pid = now.nodes.get("storage-2") if now else None
            return pid is not None and pid != victim and pid_alive(pid)

        _wait_for(restarted, 30, "storage-2 to be restarted")
        after = read_pids(paths.pids_path)
        assert after is not None
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        assert [pid for pid in after.all_pids() if pid_alive(pid)] == []
        assert not paths.pids_path.exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_serve_refuses_a_taken_port(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    _init(directory, storage=6, gateway=0)
    config_path = cluster_dir(directory).config_path
    meta = load_config(config_path).node("meta-1")
    address = meta.address
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((meta.host, meta.port))
        blocker.listen()
        result = blobstore("serve", "--config", str(config_path), "--id", "meta-1", timeout_s=60)
    assert result.returncode == 1, _text(result)
    lines = result.stderr.decode().strip().splitlines()
    assert lines[-1] == f"error: meta-1: cannot listen on {address}: address already in use"


def test_harness_kill_and_start(tmp_path: Path) -> None:
    with Cluster(tmp_path / "h", storage=6, gateway=GATEWAYS) as cluster:
        pid = cluster.pid("storage-1")
        assert pid is not None
        cluster.kill("storage-1")
        assert cluster.pid("storage-1") is None
        new_pid = cluster.start("storage-1")
        assert new_pid != pid and cluster.is_running("storage-1")
        every_pid = list(cluster.pids().values())
        assert len(every_pid) == 1 + 6 + GATEWAYS
    assert [p for p in every_pid if pid_alive(p)] == []


@pytest.mark.skipif(not HAVE_GATEWAY, reason="the gateway is not written yet")
def test_data_commands_round_trip(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "in.bin"
    source.write_bytes(payload)
    with Cluster(tmp_path / "h", storage=6, segment_size_bytes=1024 * 1024) as cluster:
        def run(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
            result = cluster.cli(*args, input=input)
            assert result.returncode == 0, _text(result)
            return result

        run("mb", "s3://bucket")
        assert b"bucket" in run("ls").stdout
        run("cp", str(source), "s3://bucket/dir/in.bin")
        run("cp", "-", "s3://bucket/dir/stdin.txt", input=b"hello from stdin\n")
        listing = run("ls", "s3://bucket/").stdout.decode()
        assert "PRE dir/" in listing
        listing = run("ls", "s3://bucket/dir/").stdout.decode()
        assert "in.bin" in listing and str(len(payload)) in listing
        assert run("cat", "s3://bucket/dir/stdin.txt").stdout == b"hello from stdin\n"
        run("cp", "s3://bucket/dir/in.bin", str(tmp_path / "out.bin"))
        assert (tmp_path / "out.bin").read_bytes() == payload
        run("cp", "-r", "s3://bucket/dir", str(tmp_path / "tree"))
        assert (tmp_path / "tree" / "in.bin").read_bytes() == payload

        located = json.loads(run("locate", "--json", "s3://bucket/dir/in.bin").stdout)
        assert located["size"] == len(payload)
        assert located["etag"] == hashlib.md5(payload).hexdigest()
        assert len(located["segments"]) == 4
        for segment in located["segments"]:
            assert (segment["k"], segment["m"]) == (4, 2)
            assert len(segment["shards"]) == 6
            for shard in segment["shards"]:
                assert shard["state"] == "ok" and Path(shard["path"]).is_file(), shard

        missing = cluster.cli("cat", "s3://bucket/nope")
        assert missing.returncode == 1 and b"NoSuchKey" in missing.stderr, _text(missing)
        not_empty = cluster.cli("rb", "s3://bucket")
        assert not_empty.returncode == 1 and b"BucketNotEmpty" in not_empty.stderr
        tree = tmp_path / "up"
        (tree / "a").mkdir(parents=True)
        (tree / "one.txt").write_bytes(b"1")
        (tree / "a" / "two words.txt").write_bytes(b"22")
        run("cp", "-r", str(tree), "s3://bucket/tree")
        keys = run("ls", "-r", "s3://bucket/tree/").stdout.decode()
        assert "tree/a/two words.txt" in keys and "tree/one.txt" in keys
        run("rm", "-r", "s3://bucket/dir/")
        assert b"dir/" not in run("ls", "s3://bucket/").stdout
        run("rb", "--force", "s3://bucket")
        assert b"bucket" not in run("ls").stdout


def test_chaos_command_against_a_supervised_cluster(cluster_dir_path: Path) -> None:
    """`blobstore chaos` kills processes by the recorded pids (the supervisor restarts them),
    corrupts shards, and reports; it exits 0 only when nothing was lost or read wrong."""
    _init(cluster_dir_path)
    result = blobstore("up", "--dir", str(cluster_dir_path), "--detach", timeout_s=120)
    assert result.returncode == 0, _text(result)
    result = blobstore("chaos", "--dir", str(cluster_dir_path), "--duration", "15",
                       "--every", "3", "--faults", "kill,corrupt,delete_shard", "--seed", "3",
                       "--json", timeout_s=400)
    assert result.returncode == 0, _text(result)
    report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert report["lost"] == 0 and report["wrong_reads"] == 0
    assert sum(report["faults"].values()) > 0 and sum(report["ops"].values()) > 0
