"""status and locate reports (pure builders), the pid file, and the supervisor's back-off."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from blobstore.client.cluster_info import build_locate, build_status, shard_path
from blobstore.core.records import (
    ClusterMap,
    Manifest,
    NodeRole,
    NodeState,
    NodeView,
    ObjectVersion,
    Segment,
    SegmentRef,
)
from blobstore.launch import supervisor
from blobstore.launch.cluster_dir import PidFile, cluster_dir, pid_alive, read_pids, write_pids
from blobstore.launch.init import InitOptions, plan_cluster

SEGMENT_A = "ab" * 32
SEGMENT_B = "cd" * 32


def _config(tmp_path: Path):
    return plan_cluster(cluster_dir(tmp_path), InitOptions(meta=1, storage=3, data_shards=2,
                                                           parity_shards=1))


def _view(node, state=NodeState.UP, capacity=0, used=0) -> NodeView:
    return NodeView(id=node.id, role=node.role, address=node.address, zone=node.zone,
                    weight=1.0, state=state, capacity_bytes=capacity, used_bytes=used)


def test_status_takes_storage_states_from_the_map_and_probes_the_rest(tmp_path):
    config = _config(tmp_path)
    storage = config.by_role(NodeRole.STORAGE)
    views = [_view(storage[0], capacity=100, used=10), _view(storage[1], NodeState.DOWN),
             _view(storage[2], NodeState.SUSPECT)]
    views += [_view(node) for node in config.nodes if node.role != NodeRole.STORAGE]
    status = {"leader": "meta-1", "term": 3, "repair_backlog": 5, "degraded_segments": 2}
    probes = {"meta-1": True, "gateway-1": False}
    report = build_status(config, {"storage-1": 1234}, status, ClusterMap(1, 2, 1, views),
                          probes)
    states = {node["id"]: node["state"] for node in report["nodes"]}
    assert states == {"meta-1": "up", "storage-1": "up", "storage-2": "down",
                      "storage-3": "suspect", "gateway-1": "down"}
    first = report["nodes"][1]
    assert first == {"id": "storage-1", "role": "storage", "address": storage[0].address,
                     "zone": "z1", "state": "up", "pid": 1234, "capacity_bytes": 100,
                     "used_bytes": 10}
    assert (report["leader"], report["term"]) == ("meta-1", 3)
    assert (report["repair_backlog"], report["degraded_segments"]) == (5, 2)
    assert "error" not in report


def test_status_without_meta_reports_unknown(tmp_path):
    config = _config(tmp_path)
    report = build_status(config, {}, None, None, {}, error="meta unreachable")
    assert {node["state"] for node in report["nodes"]} == {"unknown"}
    assert report["leader"] is None and report["term"] is None
    assert report["error"] == "meta unreachable"


def test_locate_names_every_shard_file(tmp_path):
    config = _config(tmp_path)
    version = ObjectVersion(bucket="b", key="k", version_id="v1", size=150, etag="e" * 32,
                            created_ns=1, segments=[SegmentRef(SEGMENT_A, 0, 100),
                                                    SegmentRef(SEGMENT_B, 100, 50)])
    segments = {
        SEGMENT_A: Segment(SEGMENT_A, 100, 2, 1, ["0" * 16] * 3,
                           ["storage-1", "storage-2", "storage-3"]),
        SEGMENT_B: Segment(SEGMENT_B, 50, 2, 1, ["0" * 16] * 3, ["storage-3", None, "storage-1"]),
    }
    report = build_locate(config, Manifest(version, segments), None)
    assert (report["bucket"], report["key"], report["size"], report["etag"]) == (
        "b", "k", 150, "e" * 32)
    first, second = report["segments"]
    assert (first["id"], first["length"], first["k"], first["m"]) == (SEGMENT_A, 100, 2, 1)
    data_dir = config.node("storage-2").data_dir
    assert first["shards"][1] == {
        "index": 1, "node": "storage-2", "address": config.node("storage-2").address,
        "path": f"{data_dir}/shards/ab/ab/{SEGMENT_A}.1", "state": "ok"}
    assert second["shards"][1] == {"index": 1, "node": None, "address": None, "path": None,
                                   "state": "missing"}
    assert shard_path("/d", SEGMENT_B, 2) == f"/d/shards/cd/cd/{SEGMENT_B}.2"


def test_pid_file_round_trip_and_liveness(tmp_path):
    path = tmp_path / "run" / "pids.json"
    write_pids(path, PidFile(supervisor=11, ready=True, nodes={"meta-1": 12, "storage-1": None}))
    assert read_pids(path) == PidFile(11, True, {"meta-1": 12, "storage-1": None})
    path.write_text("{half")
    assert read_pids(path) is None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                                "blobstore"])
    try:
        # Until the child has exec'd, /proc shows the parent's command line: give it time.
        deadline = time.monotonic() + 10
        while not pid_alive(sleeper.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pid_alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not pid_alive(sleeper.pid)


class _ExitedProcess:
    pid = 4242
    returncode = 1

    def poll(self) -> int:
        return 1


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_run(tmp_path, monkeypatch):
    paths = cluster_dir(tmp_path)
    config = _config(tmp_path)
    watcher = supervisor.Supervisor(config, paths, report=lambda line: None)
    monkeypatch.setattr(watcher, "_write_pids", lambda: None)
    child = watcher.children[0]
    delays = []
    now = 1000.0
    for _ in range(10):
        child.process = _ExitedProcess()  # type: ignore[assignment]
        child.started_at = now
        watcher._check_child(child, now + 1)
        assert child.restart_at is not None
        delays.append(child.restart_at - (now + 1))
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    child.process = _ExitedProcess()  # type: ignore[assignment]
    child.started_at = now
    watcher._check_child(child, now + supervisor.BACKOFF_RESET_AFTER_S)
    assert child.restart_at == now + supervisor.BACKOFF_RESET_AFTER_S + 0.5
