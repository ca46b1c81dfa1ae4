"""Leader transfer (thesis §3.10): catch the target up, then TIMEOUT_NOW."""

from __future__ import annotations

import pytest

from blobstore.raft import MessageType, NotLeader, ProposalDropped


def test_transfer_to_an_up_to_date_follower(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    term = cluster.nodes["a"].term
    cluster.nodes["a"].transfer_leadership("b")
    cluster.stabilize()
    assert cluster.leader() == "b" and cluster.nodes["b"].term == term + 1
    assert cluster.nodes["a"].role == "follower"


def test_transfer_waits_for_a_lagging_target_to_catch_up(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("c")
    for i in range(5):
        cluster.propose("a", bytes([i]))
    cluster.heal()
    cluster.sent.clear()
    cluster.nodes["a"].transfer_leadership("c")
    cluster.stabilize()
    kinds = [m.type for m in cluster.sent if m.dst == "c" and m.src == "a"]
    assert kinds.index(MessageType.APPEND) < kinds.index(MessageType.TIMEOUT_NOW)
    assert cluster.leader() == "c"
    assert len(cluster.data_applied("c")) == 5


def test_proposals_are_dropped_while_transferring(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("b")
    cluster.propose("a", b"x")
    cluster.nodes["a"].transfer_leadership("b")
    with pytest.raises(ProposalDropped):
        cluster.nodes["a"].propose(b"y")


def test_an_unreachable_target_aborts_the_transfer_after_an_election_timeout(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("b")
    cluster.propose("a", b"x")
    cluster.nodes["a"].transfer_leadership("b")
    cluster.tick(10, only=["a", "c"])
    assert cluster.nodes["a"].lead_transferee is None
    cluster.propose("a", b"y")


def test_a_follower_forwards_the_request_to_the_leader(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.nodes["c"].transfer_leadership("c")
    cluster.stabilize()
    assert cluster.leader() == "c"


def test_without_a_known_leader_a_transfer_is_refused(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    with pytest.raises(NotLeader):
        cluster.nodes["b"].transfer_leadership("c")


def test_timeout_now_bypasses_the_leader_lease(make_cluster):
    cluster = make_cluster(["a", "b", "c"])  # check_quorum on: followers are in lease
    cluster.elect("a")
    cluster.nodes["a"].transfer_leadership("c")
    cluster.stabilize()
    assert cluster.leader() == "c"
