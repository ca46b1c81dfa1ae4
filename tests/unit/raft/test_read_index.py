"""ReadIndex (thesis §6.4): a read point confirmed by a heartbeat quorum."""

from __future__ import annotations

import pytest

from blobstore.raft import MessageType, NotLeader, ReadState


def test_the_leader_answers_with_its_commit_index_after_a_heartbeat_quorum(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    index = cluster.propose("a", b"x")
    cluster.sent.clear()
    cluster.nodes["a"].read_index(b"r1")
    cluster.stabilize()
    heartbeats = [m for m in cluster.sent if m.type is MessageType.HEARTBEAT]
    assert heartbeats and all(m.context == b"r1" for m in heartbeats)
    assert cluster.read_states["a"] == [ReadState(index=index, context=b"r1")]


def test_an_isolated_leader_cannot_answer(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("a")
    cluster.nodes["a"].read_index(b"r1")
    cluster.stabilize()
    assert cluster.read_states["a"] == []
    cluster.heal()
    cluster.tick(1)  # the next heartbeat round carries the pending context again
    assert [rs.context for rs in cluster.read_states["a"]] == [b"r1"]


def test_a_new_leader_waits_until_an_entry_of_its_term_commits(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.drop = lambda m: m.type is MessageType.APPEND
    cluster.nodes["a"].campaign()
    cluster.stabilize()
    assert cluster.nodes["a"].role == "leader"
    cluster.nodes["a"].read_index(b"r1")
    cluster.stabilize()
    assert cluster.read_states["a"] == []
    cluster.drop = None
    cluster.tick(1)
    noop_index = cluster.nodes["a"].log.committed
    assert cluster.read_states["a"] == [ReadState(index=noop_index, context=b"r1")]


def test_a_follower_forwards_the_request_and_gets_the_index(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    index = cluster.propose("a", b"x")
    cluster.nodes["b"].read_index(b"from-b")
    cluster.stabilize()
    assert cluster.read_states["b"] == [ReadState(index=index, context=b"from-b")]
    assert cluster.read_states["a"] == []


def test_a_follower_without_a_leader_refuses(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    with pytest.raises(NotLeader):
        cluster.nodes["b"].read_index(b"r")


def test_a_single_node_answers_at_once(make_cluster):
    cluster = make_cluster(["a"])
    cluster.elect("a")
    cluster.nodes["a"].read_index(b"r")
    cluster.stabilize()
    assert [rs.context for rs in cluster.read_states["a"]] == [b"r"]


def test_earlier_requests_are_released_with_a_later_confirmation(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("a")
    cluster.nodes["a"].read_index(b"r1")
    cluster.nodes["a"].read_index(b"r2")
    cluster.stabilize()
    cluster.heal()
    cluster.tick(1)
    assert [rs.context for rs in cluster.read_states["a"]] == [b"r1", b"r2"]
