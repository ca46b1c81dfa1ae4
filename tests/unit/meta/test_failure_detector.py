"""Heartbeat ages -> node states (meta/failure_detector.py), with time as an argument."""

from __future__ import annotations

import pytest

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import Invalid
from blobstore.core.records import NodeRole, NodeState
from blobstore.meta.failure_detector import FailureDetector

STORE = NodeConfig(id="s1", role=NodeRole.STORAGE, address="127.0.0.1:9200", data_dir="/d/s1")
META = NodeConfig(id="m1", role=NodeRole.META, address="127.0.0.1:9100", data_dir="/d/m1")
CONFIG = ClusterConfig(secret="x", nodes=(META, STORE), down_after_s=30.0)


def beat(detector: FailureDetector, now_s: float) -> None:
    detector.heartbeat("s1", now_s, 0, capacity_bytes=10, used_bytes=1, shard_count=2)


@pytest.mark.parametrize(("heard_s", "now_s", "state"), [
    (100.0, 100.0, NodeState.UP),
    (100.0, 102.9, NodeState.UP),
    (100.0, 103.0, NodeState.SUSPECT),
    (100.0, 129.9, NodeState.SUSPECT),
    (100.0, 130.0, NodeState.DOWN),
])
def test_state_by_heartbeat_age(heard_s: float, now_s: float, state: NodeState) -> None:
    detector = FailureDetector(CONFIG, started_s=0.0)
    beat(detector, heard_s)
    assert detector.state(STORE, now_s) == state


def test_never_heard_is_suspect_then_down_after_one_down_after() -> None:
    detector = FailureDetector(CONFIG, started_s=1000.0)
    assert detector.state(STORE, 1000.0) == NodeState.SUSPECT
    assert detector.state(STORE, 1029.0) == NodeState.SUSPECT
    assert detector.state(STORE, 1030.0) == NodeState.DOWN
    beat(detector, 1031.0)
    assert detector.state(STORE, 1031.0) == NodeState.UP


def test_map_shows_every_configured_node() -> None:
    detector = FailureDetector(CONFIG, started_s=0.0)
    beat(detector, 5.0)
    cluster = detector.cluster_map(6.0)
    assert [(n.id, n.state) for n in cluster.nodes] == [("m1", NodeState.UP),
                                                        ("s1", NodeState.UP)]
    assert cluster.storage_nodes()[0].capacity_bytes == 10
    with pytest.raises(Invalid):
        detector.heartbeat("nobody", 1.0, 0, capacity_bytes=0, used_bytes=0, shard_count=0)
