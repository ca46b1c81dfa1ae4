"""Raft §5.3 (log replication, log matching), §5.4.2 (commitment, Figure 8), batching,
pipelining and the persist-before-send contract."""

from __future__ import annotations

import random

from blobstore.raft import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftConfig,
    RaftNode,
)
from blobstore.raft.quorum import committed_index


class CommitsPreviousTerms(RaftNode):
    """PLANTED BUG: counts replicas of entries of earlier terms (what §5.4.2 forbids)."""

    def maybe_commit(self) -> bool:
        match = {peer: pr.match for peer, pr in self.progress.items()}
        return self.log.commit_to(committed_index(self.voters, match))


def _seed_logs(cluster, logs: dict[str, list[int]], terms: dict[str, int]) -> None:
    """Give each node a log (a list of entry terms) and a current term, then reboot it."""
    for node_id, entry_terms in logs.items():
        storage = cluster.storages[node_id]
        storage.append([Entry(term=t, index=i + 1, data=f"{i + 1}.{t}".encode())
                        for i, t in enumerate(entry_terms)])
        storage.set_hard_state(HardState(term=terms[node_id]))
        cluster.restart(node_id)


def test_an_entry_commits_once_a_majority_has_it(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("c")
    index = cluster.propose("a", b"x")
    assert cluster.nodes["a"].log.committed == index
    assert cluster.data_applied("b") == [b"x"] and cluster.data_applied("c") == []
    cluster.heal()
    cluster.tick(2)
    assert cluster.data_applied("c") == [b"x"]


def test_without_a_majority_nothing_commits(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("a")
    index = cluster.propose("a", b"x")
    assert cluster.nodes["a"].log.committed < index
    assert cluster.data_applied("a") == []


def test_entries_and_their_acknowledgement_leave_in_one_ready():
    node = RaftNode(RaftConfig(id="b"), MemoryStorage(ConfState(voters=("a", "b"))),
                    random.Random(0))
    node.step(Message(MessageType.APPEND, "a", "b", term=1, index=0, log_term=0,
                      entries=(Entry(term=1, index=1, data=b"x"),), commit=0))
    rd = node.ready()
    assert [e.index for e in rd.entries] == [1] and rd.must_sync
    assert [(m.type, m.index) for m in rd.messages] == [(MessageType.APPEND_RESP, 1)]


def test_a_follower_rejects_an_append_that_does_not_match_its_log():
    node = RaftNode(RaftConfig(id="b"), MemoryStorage(ConfState(voters=("a", "b"))),
                    random.Random(0))
    node.step(Message(MessageType.APPEND, "a", "b", term=1, index=3, log_term=1,
                      entries=(Entry(term=1, index=4),)))
    (answer,) = node.ready().messages
    assert answer.reject and answer.index == 3 and answer.reject_hint == 0


def test_conflicting_uncommitted_entries_are_replaced(make_cluster):
    cluster = make_cluster(["a", "b", "c"], pre_vote=False, check_quorum=False)
    _seed_logs(cluster, {"a": [1, 1], "b": [1, 1], "c": [1, 2, 2, 2]},
               {"a": 2, "b": 2, "c": 2})
    cluster.elect("a")  # c's entries of term 2 were never committed
    cluster.propose("a", b"new")
    logs = {i: [(e.index, e.term) for e in cluster.nodes[i].log.entries(1, 5)] for i in "abc"}
    assert logs["a"] == logs["b"] == logs["c"]
    assert [e.data for e in cluster.applied["c"]][:2] == [b"1.1", b"2.1"]


def test_fast_backtracking_skips_a_whole_divergent_term(make_cluster):
    cluster = make_cluster(["a", "b", "c"], pre_vote=False, check_quorum=False)
    _seed_logs(cluster, {"a": [1] + [3] * 5, "b": [1] + [3] * 5, "c": [1] + [2] * 30},
               {"a": 3, "b": 3, "c": 3})
    cluster.elect("a")
    rejections = [m for m in cluster.sent
                  if m.type is MessageType.APPEND_RESP and m.reject and m.src == "c"]
    assert len(rejections) <= 2  # not one per divergent entry
    assert cluster.nodes["c"].log.last_index() == cluster.nodes["a"].log.last_index()


def test_figure_8_an_entry_of_an_earlier_term_is_not_committed_by_counting(make_cluster):
    """Raft Figure 8 (c)-(d): S1, leader in term 4, replicates index 2 of term 2 to a
    majority; committing it would be unsafe: S5 (last term 3) can still win and overwrite."""
    cluster = _figure_8(make_cluster, RaftNode)
    assert cluster.nodes["a"].log.committed < 2  # a majority has index 2, but of term 2
    _figure_8_finish(cluster)
    applied = {i: [(e.index, e.term) for e in cluster.applied[i]] for i in "abcde"}
    for node_id in "bcde":  # all agree with each other, and with what "a" applied
        assert applied[node_id][: len(applied["a"])] == applied["a"]
    assert (2, 3) in applied["b"]


def test_figure_8_with_the_planted_bug_loses_a_committed_entry(make_cluster):
    cluster = _figure_8(make_cluster, CommitsPreviousTerms)
    assert cluster.nodes["a"].log.committed == 2
    assert (2, 2) in [(e.index, e.term) for e in cluster.applied["a"]]
    _figure_8_finish(cluster)
    assert (2, 3) in [(e.index, e.term) for e in cluster.applied["b"]]  # safety violated


def _figure_8(make_cluster, node_class):
    cluster = make_cluster(list("abcde"), node_class=node_class, pre_vote=False,
                           check_quorum=False, max_size_per_msg_bytes=1)
    _seed_logs(cluster, {"a": [1, 2], "b": [1], "c": [1], "d": [1], "e": [1, 3]},
               {"a": 3, "b": 3, "c": 3, "d": 3, "e": 4})
    cluster.isolate("e")
    cluster.isolate("d")
    # the NOOP of term 4 (index 3) never reaches a follower that could accept it
    cluster.drop = lambda m: (any(e.index >= 3 for e in m.entries)
                              and cluster.nodes[m.dst].log.last_index() >= 2)
    cluster.elect("a")
    assert cluster.nodes["a"].term == 4
    return cluster


def _figure_8_finish(cluster) -> None:
    cluster.heal()
    cluster.isolate("a")
    cluster.nodes["e"].campaign()  # votes from b, c, d: its last term 3 beats their 2
    cluster.stabilize()
    assert cluster.leader() == "e"
    cluster.propose("e", b"e5")


def test_appends_are_batched_by_size(make_cluster):
    cluster = make_cluster(["a", "b"], max_size_per_msg_bytes=100)
    cluster.elect("a")
    cluster.isolate("b")
    for i in range(10):
        cluster.nodes["a"].propose(bytes(40) + bytes([i]))
    cluster.stabilize()
    cluster.heal()
    cluster.sent.clear()
    cluster.tick(3)
    appends = [m for m in cluster.sent if m.type is MessageType.APPEND and m.entries]
    assert appends and all(sum(len(e.data) + 24 for e in m.entries) <= 100 or len(m.entries) == 1
                           for m in appends)
    assert len(cluster.data_applied("b")) == 10


def test_pipelining_is_bounded_by_the_inflight_window(make_cluster):
    cluster = make_cluster(["a", "b"], max_inflight_msgs=3)
    cluster.elect("a")
    leader = cluster.nodes["a"]
    cluster.drop = lambda m: m.type is MessageType.APPEND_RESP
    cluster.sent.clear()
    for i in range(8):
        leader.propose(bytes([i]))
    cluster.stabilize()
    appends = [m for m in cluster.sent if m.type is MessageType.APPEND and m.entries]
    assert len(appends) == 3  # no answers: the window stays full
    cluster.heal()
    cluster.tick(2)
    assert len(cluster.data_applied("b")) == 8


def test_lost_appends_are_resent_after_a_heartbeat(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.drop = lambda m: m.type is MessageType.APPEND and m.dst == "c"
    cluster.propose("a", b"x")
    assert cluster.data_applied("c") == []
    cluster.heal()
    cluster.tick(2)
    assert cluster.data_applied("c") == [b"x"]


def test_heartbeats_never_commit_beyond_what_the_follower_holds(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("c")
    cluster.propose("a", b"x")
    cluster.heal()
    cluster.drop = lambda m: m.type is MessageType.APPEND
    cluster.sent.clear()
    cluster.tick(1)
    heartbeats = [m for m in cluster.sent if m.type is MessageType.HEARTBEAT and m.dst == "c"]
    assert heartbeats and all(m.commit <= 1 for m in heartbeats)
    assert cluster.nodes["c"].log.committed <= cluster.nodes["c"].log.last_index()


def test_the_leader_never_sends_messages_to_itself(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.propose("a", b"x")
    assert all(m.src != m.dst for m in cluster.sent)


def test_entry_kinds_reach_the_application(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.propose("a", b"x")
    assert [e.kind for e in cluster.applied["b"]] == [EntryKind.NOOP, EntryKind.NORMAL]
