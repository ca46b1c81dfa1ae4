"""Single-server membership changes (thesis §4.1, applied when their entry is applied)."""

from __future__ import annotations

import pytest

from blobstore.raft import ConfChange, ConfState, EntryKind, ProposalDropped


def _change(cluster, leader: str, kind: str, node_id: str) -> None:
    cluster.nodes[leader].propose_conf_change(ConfChange(kind=kind, node_id=node_id))
    cluster.stabilize()


def test_adding_a_node_replicates_the_log_to_it_and_grows_the_quorum(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.propose("a", b"before")
    cluster.add_node("d")  # starts with the group's genesis configuration, not a voter
    assert not cluster.nodes["d"].promotable()
    _change(cluster, "a", "add", "d")
    cluster.tick(2)
    assert cluster.nodes["a"].voters == ("a", "b", "c", "d")
    assert cluster.nodes["d"].voters == ("a", "b", "c", "d")
    assert cluster.data_applied("d") == [b"before"]
    cluster.isolate("c")
    cluster.isolate("d")
    index = cluster.propose("a", b"needs three of four")
    assert cluster.nodes["a"].log.committed < index


def test_removing_a_follower_shrinks_the_quorum(make_cluster):
    cluster = make_cluster(["a", "b", "c", "d"])
    cluster.elect("a")
    _change(cluster, "a", "remove", "d")
    assert cluster.nodes["a"].voters == ("a", "b", "c")
    assert "d" not in cluster.nodes["a"].status().progress
    cluster.isolate("c")
    index = cluster.propose("a", b"two of three")
    assert cluster.nodes["a"].log.committed == index


def test_a_removed_leader_steps_down_and_the_rest_elect_a_leader(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    _change(cluster, "a", "remove", "a")
    assert cluster.nodes["a"].role == "follower" and not cluster.nodes["a"].promotable()
    cluster.tick(40)
    leader = cluster.leader()
    assert leader in ("b", "c")
    assert cluster.nodes[leader].voters == ("b", "c")


def test_only_one_change_may_be_pending(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    cluster.isolate("b")
    cluster.isolate("c")
    cluster.nodes["a"].propose_conf_change(ConfChange(kind="add", node_id="d"))
    with pytest.raises(ProposalDropped):
        cluster.nodes["a"].propose_conf_change(ConfChange(kind="remove", node_id="c"))


def test_a_new_leader_waits_for_its_first_entry_before_a_change(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.nodes["a"].campaign()
    cluster.drop = lambda m: m.type.name == "APPEND"  # its NOOP never commits
    cluster.stabilize()
    assert cluster.nodes["a"].role == "leader"
    with pytest.raises(ProposalDropped):
        cluster.nodes["a"].propose_conf_change(ConfChange(kind="add", node_id="d"))


def test_changes_that_change_nothing_are_refused(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    with pytest.raises(ProposalDropped):
        cluster.nodes["a"].propose_conf_change(ConfChange(kind="add", node_id="b"))
    with pytest.raises(ProposalDropped):
        cluster.nodes["a"].propose_conf_change(ConfChange(kind="remove", node_id="z"))


def test_a_restart_rebuilds_the_configuration_from_the_log(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    _change(cluster, "a", "remove", "c")
    storage = cluster.storages["b"]
    applied = cluster.nodes["b"].log.applied
    storage.create_snapshot(1, ConfState(voters=("a", "b", "c")), b"")  # before the change
    node = cluster.restart("b")
    assert node.voters == ("a", "b", "c")  # replayed up to the snapshot only...
    cluster.stabilize()  # ...then the application re-applies the change
    assert node.voters == ("a", "b") and node.log.applied == applied
    assert [e.kind for e in cluster.applied["b"]].count(EntryKind.CONF_CHANGE) == 1


def test_a_node_does_not_campaign_with_an_unapplied_change(make_cluster):
    cluster = make_cluster(["a", "b", "c"])
    cluster.elect("a")
    _change(cluster, "a", "remove", "c")
    node = cluster.nodes["b"]
    node.log.applied = node.log.committed - 1  # as if the change were not applied yet
    node.voters = ("a", "b", "c")
    node.campaign()
    assert node.role == "follower"
