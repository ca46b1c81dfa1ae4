"""The state every part of the Raft state machine shares, and the role transitions.

``RaftNode`` (node.py) is assembled from this base and two mixins: ``election.py``
(pre-vote, votes, leader transfer) and ``replication.py`` (appends, heartbeats, snapshots,
commitment, ReadIndex). They all work on the fields defined here.

Field invariants:
- ``term`` never decreases; ``vote`` is the vote cast in ``term`` (reset when term moves).
- ``role == "leader"`` implies ``lead == id`` and ``progress`` has an entry for every voter.
- ``lead_transferee`` is only set on a leader; while set, proposals are refused.
- ``pending_conf_index``: the leader refuses a new membership change until it has applied
  this index; a new leader sets it to its NOOP's index, so it must first commit an entry of
  its own term (the fix for single-server changes, Ongaro 2015).
- Outgoing messages accumulate in ``msgs`` and leave only through a Ready, i.e. after the
  application persisted everything the same Ready asked it to persist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blobstore.raft.errors import Compacted, Unavailable
from blobstore.raft.log import RaftLog
from blobstore.raft.messages import (
    ConfChange,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    SoftState,
    decode_conf_change,
    entry_size_bytes,
)
from blobstore.raft.progress import Progress
from blobstore.raft.quorum import committed_index
from blobstore.raft.read_only import ReadOnly
from blobstore.raft.storage import Storage


class Rng(Protocol):
    """The randomness the core needs; ``random.Random(seed)`` satisfies it."""

    def randrange(self, start: int, stop: int) -> int: ...


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Knobs of one node. Ticks are the application's logical clock units."""

    id: str
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # Ignore (pre-)votes during the first election_tick ticks after a (re)start, as if in a
    # leader's lease (election.py rule 4): needed when the application serves lease reads.
    lease_on_start: bool = False
    max_size_per_msg_bytes: int = 1 << 20
    max_inflight_msgs: int = 256
    max_uncommitted_bytes: int = 64 << 20
    max_committed_size_per_ready_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("raft node id must be non-empty")
        if self.heartbeat_tick < 1:
            raise ValueError("heartbeat_tick must be >= 1")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs < 1:
            raise ValueError("max_inflight_msgs must be >= 1")


class RaftCore:
    """Shared state and transitions; see the module docstring for the invariants."""

    def __init__(self, config: RaftConfig, storage: Storage, rng: Rng, applied: int = 0) -> None:
        self.id = config.id
        self.config = config
        self.rng = rng
        self.log = RaftLog(storage, config.max_committed_size_per_ready_bytes)
        hard_state, conf = storage.initial_state()
        self.term = hard_state.term
        self.vote: str | None = hard_state.vote
        self.voters: tuple[str, ...] = tuple(sorted(set(conf.voters)))
        self._restore_commit_and_applied(hard_state.commit, applied)
        self.role: Role = "follower"
        self.lead: str | None = None
        self.progress: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
        self.pending_read_index: list[tuple[bytes, str]] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.ticks_alive = 0  # ticks since this node (re)started: see election.py rule 4
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee: str | None = None
        self.pending_conf_index = 0
        self.uncommitted_size_bytes = 0
        self._replay_conf_changes()
        self.prev_hard_state = hard_state
        self.prev_soft_state = SoftState(leader=None, role="follower")
        self.become_follower(self.term, None)

    def _restore_commit_and_applied(self, commit: int, applied: int) -> None:
        log = self.log
        last = log.last_index()
        applied = max(applied, log.first_index() - 1)
        if applied > last:
            raise ValueError(f"applied {applied} is beyond the last log index {last}")
        if commit > last:
            raise ValueError(f"stored commit {commit} is beyond the last log index {last}")
        log.committed = max(commit, applied)
        log.applied = applied

    def _replay_conf_changes(self) -> None:
        """Rebuild the configuration from the snapshot's and the applied CONF_CHANGEs."""
        lo, hi = self.log.first_index(), self.log.applied + 1
        for entry in self.log.entries(lo, hi) if lo < hi else []:
            if entry.kind is EntryKind.CONF_CHANGE:
                self.voters = apply_change(self.voters, decode_conf_change(entry.data))

    # -- small helpers --

    def promotable(self) -> bool:
        return self.id in self.voters

    def peers(self) -> list[str]:
        return [v for v in self.voters if v != self.id]

    def send(self, type: MessageType, dst: str, **fields: object) -> None:
        assert dst != self.id, "a node never sends to itself"
        term = fields.pop("term", self.term)
        self.msgs.append(Message(type=type, src=self.id, dst=dst, term=term, **fields))  # type: ignore[arg-type]

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(leader=self.lead, role=self.role)

    def committed_entry_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def has_unapplied_conf_changes(self) -> bool:
        log = self.log
        if log.committed <= log.applied or log.unstable.snapshot is not None:
            return False
        try:
            entries = log.entries(log.applied + 1, log.committed + 1)
        except (Compacted, Unavailable):
            return False
        return any(e.kind is EntryKind.CONF_CHANGE for e in entries)

    # -- transitions --

    def reset(self, term: int) -> None:
        if term != self.term:
            assert term > self.term, f"term moving back from {self.term} to {term}"
            self.term = term
            self.vote = None
        self.lead = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.lead_transferee = None
        self.votes = {}
        self.progress = {}
        self.pending_conf_index = 0
        self.uncommitted_size_bytes = 0
        self.read_only.reset()
        self.pending_read_index = []

    def reset_randomized_election_timeout(self) -> None:
        tick = self.config.election_tick
        self.randomized_election_timeout = tick + self.rng.randrange(0, tick)

    def become_follower(self, term: int, lead: str | None) -> None:
        self.reset(term)
        self.role = "follower"
        self.lead = lead

    def become_pre_candidate(self) -> None:
        assert self.role != "leader", "a leader cannot become pre-candidate"
        self.role = "pre_candidate"
        self.votes = {}
        self.lead = None
        self.reset_randomized_election_timeout()

    def become_candidate(self) -> None:
        assert self.role != "leader", "a leader cannot become candidate"
        self.reset(self.term + 1)
        self.vote = self.id
        self.role = "candidate"

    def become_leader(self) -> None:
        assert self.role != "follower", "a follower cannot become leader directly"
        self.reset(self.term)
        self.role = "leader"
        self.lead = self.id
        last = self.log.last_index()
        for voter in self.voters:
            pr = Progress(last + 1, self.config.max_inflight_msgs)
            if voter == self.id:
                pr.match = last
                pr.become_replicate()
                pr.recent_active = True
            self.progress[voter] = pr
        self.pending_conf_index = self.append_entries([(EntryKind.NOOP, b"")])

    # -- appending as leader --

    def append_entries(self, items: list[tuple[EntryKind, bytes]]) -> int:
        """Append new entries of the current term; returns the last index."""
        last = self.log.last_index()
        entries = [Entry(term=self.term, index=last + i + 1, kind=kind, data=data)
                   for i, (kind, data) in enumerate(items)]
        last = self.log.append(entries)
        self.progress[self.id].maybe_update(last)
        self.uncommitted_size_bytes += sum(entry_size_bytes(e) for e in entries)
        self.maybe_commit()
        return last

    def maybe_commit(self) -> bool:
        """Raft §5.4.2: advance commit to what a quorum has, if that entry is of this term."""
        match = {peer: pr.match for peer, pr in self.progress.items()}
        if not self.log.maybe_commit(committed_index(self.voters, match), self.term):
            return False
        if self.pending_read_index:
            self.release_pending_read_index()
        return True

    # -- implemented by the mixins (declared here so each mixin type-checks alone) --

    def bcast_append(self) -> None:
        raise NotImplementedError  # replication.py

    def send_append(self, to: str, send_if_empty: bool = True) -> bool:
        raise NotImplementedError  # replication.py

    def step_follower(self, m: Message) -> None:
        raise NotImplementedError  # replication.py

    def hup(self, transfer: bool) -> None:
        raise NotImplementedError  # election.py

    def release_pending_read_index(self) -> None:
        raise NotImplementedError  # replication.py

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = None

    def maybe_finish_transfer(self, peer: str) -> None:
        """The transferee has caught up: tell it to campaign now."""
        if peer == self.lead_transferee and self.progress[peer].match == self.log.last_index():
            self.send(MessageType.TIMEOUT_NOW, peer)


def apply_change(voters: tuple[str, ...], change: ConfChange) -> tuple[str, ...]:
    """The voter set after ``change`` (idempotent)."""
    members = set(voters)
    if change.kind == "add":
        members.add(change.node_id)
    else:
        members.discard(change.node_id)
    return tuple(sorted(members))
