"""Raft §5.2 (leader election), §5.4.1 (election restriction), thesis §9.6 (pre-vote) and
check-quorum, one rule per test."""

from __future__ import annotations

import random

from blobstore.raft import (
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftConfig,
    RaftNode,
)


def _node(node_id: str = "a", voters: tuple[str, ...] = ("a", "b", "c"), seed: int = 0,
          storage: MemoryStorage | None = None, **config: object) -> RaftNode:
    storage = storage or MemoryStorage(ConfState(voters=voters))
    return RaftNode(RaftConfig(id=node_id, **config), storage, random.Random(seed))  # type: ignore[arg-type]


def test_one_leader_is_elected_and_everyone_follows_it(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.tick(40)
    leader = cluster.leader()
    assert leader is not None
    terms = {n.term for n in cluster.nodes.values()}
    assert len(terms) == 1
    assert all(n.lead == leader for n in cluster.nodes.values())


def test_randomized_election_timeout_is_in_range():
    timeouts = set()
    for seed in range(50):
        node = _node(seed=seed, election_tick=10)
        for _ in range(3):
            node.become_follower(node.term + 1, None)
            timeouts.add(node.randomized_election_timeout)
    assert min(timeouts) >= 10 and max(timeouts) < 20
    assert len(timeouts) > 5


def test_follower_campaigns_after_its_timeout_and_not_before():
    node = _node(pre_vote=False)
    for _ in range(node.randomized_election_timeout - 1):
        node.tick()
    assert node.role == "follower"
    node.tick()
    assert node.role == "candidate" and node.term == 1 and node.vote == "a"


def test_a_vote_is_granted_at_most_once_per_term():
    node = _node(node_id="c", pre_vote=False)
    node.step(Message(MessageType.VOTE, "a", "c", term=1))
    node.step(Message(MessageType.VOTE, "b", "c", term=1))
    replies = node.ready().messages
    assert [(m.dst, m.reject) for m in replies] == [("a", False), ("b", True)]
    assert node.vote == "a"


def test_the_vote_is_persisted_in_the_ready_that_carries_the_answer():
    node = _node(node_id="c")
    node.step(Message(MessageType.VOTE, "a", "c", term=3))
    rd = node.ready()
    assert rd.hard_state == HardState(term=3, vote="a", commit=0)
    assert rd.must_sync
    assert [m.type for m in rd.messages] == [MessageType.VOTE_RESP]


def test_vote_refused_to_a_candidate_with_a_less_up_to_date_log():
    storage = MemoryStorage(ConfState(voters=("a", "b", "c")))
    storage.append([Entry(term=1, index=1), Entry(term=2, index=2)])
    storage.set_hard_state(HardState(term=2))
    node = _node(node_id="c", storage=storage)
    node.step(Message(MessageType.VOTE, "a", "c", term=3, index=5, log_term=1))  # older term
    node.step(Message(MessageType.VOTE, "b", "c", term=3, index=1, log_term=2))  # shorter
    assert all(m.reject for m in node.ready().messages)
    node.step(Message(MessageType.VOTE, "b", "c", term=3, index=2, log_term=2))
    assert not node.ready().messages[0].reject


def test_pre_vote_does_not_change_the_term():
    node = _node()
    node.campaign()
    assert node.role == "pre_candidate" and node.term == 0 and node.vote is None
    requests = node.ready().messages
    assert {m.type for m in requests} == {MessageType.PRE_VOTE}
    assert {m.term for m in requests} == {1}


def test_a_partitioned_node_with_pre_vote_does_not_disrupt_the_leader(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    term = cluster.nodes["a"].term
    cluster.isolate("c")
    cluster.tick(100)
    assert cluster.nodes["c"].term == term  # pre-votes fail: no term inflation
    cluster.heal()
    cluster.tick(5)
    assert cluster.leader() == "a" and cluster.nodes["a"].term == term


def test_without_pre_vote_a_rejoining_node_forces_a_new_term(make_cluster):
    cluster = make_cluster(["a", "b", "c"], pre_vote=False, check_quorum=False)
    cluster.elect("a")
    term = cluster.nodes["a"].term
    cluster.isolate("c")
    cluster.tick(50)
    assert cluster.nodes["c"].term > term + 1
    cluster.heal()
    cluster.tick(30)
    assert cluster.nodes[cluster.leader()].term > term  # the disruption pre-vote prevents


def test_check_quorum_makes_a_partitioned_leader_step_down(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("a")
    cluster.tick(19, only=["a"])  # the first check still sees the election's answers
    assert cluster.nodes["a"].role == "leader"
    cluster.tick(1, only=["a"])
    assert cluster.nodes["a"].role == "follower"


def test_without_check_quorum_a_partitioned_leader_stays(make_cluster):
    cluster = make_cluster(["a", "b", "c"], check_quorum=False)
    cluster.elect("a")
    cluster.isolate("a")
    cluster.tick(30, only=["a"])
    assert cluster.nodes["a"].role == "leader"


def test_the_leader_lease_ignores_vote_requests_from_a_higher_term():
    node = _node(node_id="c")
    node.step(Message(MessageType.HEARTBEAT, "a", "c", term=2))
    node.ready()
    node.step(Message(MessageType.VOTE, "b", "c", term=3, index=9, log_term=9))
    assert node.term == 2 and node.vote is None
    assert not node.ready().messages


def test_a_higher_term_turns_a_leader_into_a_follower(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    leader = cluster.elect("a")
    leader.step(Message(MessageType.APPEND_RESP, "b", "a", term=leader.term + 1))
    assert leader.role == "follower" and leader.term == 2 and leader.lead is None


def test_a_stale_leader_is_told_the_newer_term():
    node = _node(node_id="c")
    node.step(Message(MessageType.HEARTBEAT, "b", "c", term=5))
    node.ready()
    node.step(Message(MessageType.APPEND, "a", "c", term=3))
    answer = node.ready().messages
    assert [(m.type, m.dst, m.term) for m in answer] == [(MessageType.APPEND_RESP, "a", 5)]


def test_a_new_leader_appends_a_noop_of_its_term(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    leader = cluster.elect("a")
    last = leader.log.entries(1, leader.log.last_index() + 1)[-1]
    assert last.term == leader.term and last.kind.name == "NOOP"
    assert all(cluster.applied[i][-1] == last for i in "abc")


def test_a_single_node_elects_itself_at_once(make_cluster):
    cluster = make_cluster(["a"])
    cluster.elect("a")
    assert cluster.propose("a", b"x") == 2
    assert cluster.data_applied("a") == [b"x"]
