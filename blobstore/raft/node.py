"""RaftNode: the public face of the sans-IO Raft state machine (etcd-io/raft's RawNode).

The application owns every effect. It calls ``tick()`` on its clock, ``step(message)`` for
each message from a peer, ``propose``/``read_index``/... for its clients, and whenever
``has_ready()`` it takes ``ready()``, carries it out in the order documented in ready.py
(persist + fsync, send, apply, release reads) and calls ``advance(ready)``.

Rules:
- Messages from the same Ready go out only after that Ready's entries and hard state are
  durable (the application persists first); so a vote or an acknowledgement is never sent
  for something that a crash could make the node forget.
- ``step`` compares terms first (``_check_term``): a higher term makes the node a follower
  (except for pre-votes and granted pre-vote answers, which never change a term, and
  (pre-)votes inside the leader lease, which are ignored); a lower term is ignored, except
  that a stale leader is told the newer term and a pre-vote is rejected explicitly.
- Messages with ``term == 0`` (READ_INDEX, TRANSFER_LEADER forwarded by a follower) carry no
  term and skip the term check: their answer does not depend on the sender's term.
- Proposals are refused (``NotLeader``) on followers; on a leader that is transferring
  leadership or holds too many uncommitted bytes they raise ``ProposalDropped``.
- Membership changes are applied when their entry is applied (``apply_conf_change``); one
  at a time; a removed leader steps down.
"""

from __future__ import annotations

from blobstore.raft.core import RaftConfig, RaftCore, Rng, apply_change
from blobstore.raft.election import Election
from blobstore.raft.errors import NotLeader, ProposalDropped
from blobstore.raft.messages import (
    TRANSFER_CONTEXT,
    ConfChange,
    ConfState,
    EntryKind,
    Message,
    MessageType,
    encode_conf_change,
    entry_size_bytes,
)
from blobstore.raft.progress import Progress
from blobstore.raft.ready import ProgressView, Ready, Status
from blobstore.raft.replication import Replication
from blobstore.raft.storage import Storage

__all__ = ["RaftConfig", "RaftNode", "Rng"]

# messages only a leader of their term sends: a follower learns its leader from them
_LEADER_MESSAGES = (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT,
                    MessageType.READ_INDEX_RESP)


class RaftNode(Election, Replication, RaftCore):
    """One member of a Raft group, as a pure state machine."""

    def __init__(self, config: RaftConfig, storage: Storage, rng: Rng, applied: int = 0) -> None:
        super().__init__(config, storage, rng, applied)

    # -- inputs --

    def tick(self) -> None:
        """Advance the logical clock by one tick."""
        self.ticks_alive += 1
        if self.role == "leader":
            self._tick_leader()
        else:
            self.tick_election()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum and not self._quorum_active():
                self.become_follower(self.term, None)
                return
            self.abort_leader_transfer()
        self.tick_snapshot_retries()
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self.bcast_heartbeat()

    def _quorum_active(self) -> bool:
        """Check-quorum: has a quorum been heard from since the last check? Resets the marks."""
        active = {peer: pr.recent_active or peer == self.id
                  for peer, pr in self.progress.items()}
        for peer, pr in self.progress.items():
            pr.recent_active = peer == self.id
        return sum(1 for v in self.voters if active.get(v)) * 2 > len(self.voters)

    def step(self, m: Message) -> None:
        """Handle a message from a peer (messages for another node are ignored)."""
        if m.dst != self.id or m.src == self.id:
            return
        if m.term and not self._check_term(m):
            return
        if m.type in (MessageType.PRE_VOTE, MessageType.VOTE):
            self.handle_vote_request(m)
        elif self.role == "leader":
            self._step_leader(m)
        elif self.role == "follower":
            self.step_follower(m)
        else:
            self.step_candidate(m)

    def _check_term(self, m: Message) -> bool:
        """The term rules of the module docstring; returns whether to go on with ``m``."""
        if m.term > self.term:
            if m.type in (MessageType.PRE_VOTE, MessageType.VOTE):
                if m.context != TRANSFER_CONTEXT and self.in_lease():
                    return False
            if m.type is MessageType.PRE_VOTE:
                return True
            if m.type is MessageType.PRE_VOTE_RESP and not m.reject:
                return True
            self.become_follower(m.term, m.src if m.type in _LEADER_MESSAGES else None)
            return True
        if m.term < self.term:
            if m.type in (MessageType.APPEND, MessageType.HEARTBEAT):
                self.send(MessageType.APPEND_RESP, m.src)
            elif m.type is MessageType.PRE_VOTE:
                self.send(MessageType.PRE_VOTE_RESP, m.src, reject=True)
            return False
        return True

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is MessageType.APPEND_RESP:
            self.handle_append_response(m)
        elif t is MessageType.HEARTBEAT_RESP:
            self.handle_heartbeat_response(m)
        elif t is MessageType.READ_INDEX:
            if m.src in self.progress:
                self.handle_read_index(m.context, m.src)
        elif t is MessageType.TRANSFER_LEADER:
            self.handle_transfer_leader(m.context.decode(errors="replace"))

    def campaign(self) -> None:
        """Start an election now (pre-vote first if configured)."""
        self.hup(transfer=False)

    def propose(self, data: bytes) -> int:
        """Append a NORMAL entry; returns its index. Raises NotLeader / ProposalDropped."""
        self._check_can_propose(len(data))
        index = self.append_entries([(EntryKind.NORMAL, data)])
        self.bcast_append()
        return index

    def propose_conf_change(self, change: ConfChange) -> int:
        """Append a single-server change; returns its index. One pending change at a time."""
        data = encode_conf_change(change)
        self._check_can_propose(len(data))
        if self.pending_conf_index > self.log.applied:
            raise ProposalDropped("a membership change is pending (or this term's first "
                                  "entry is not applied yet)")
        if (change.kind == "add") == (change.node_id in self.voters):
            raise ProposalDropped(f"{change.kind} {change.node_id}: nothing to change")
        if change.kind == "remove" and self.voters == (change.node_id,):
            raise ProposalDropped("cannot remove the last voter")
        index = self.append_entries([(EntryKind.CONF_CHANGE, data)])
        self.pending_conf_index = index
        self.bcast_append()
        return index

    def _check_can_propose(self, size: int) -> None:
        if self.role != "leader":
            raise NotLeader(self.lead)
        if self.lead_transferee is not None:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        limit = self.config.max_uncommitted_bytes
        if self.uncommitted_size_bytes > 0 and self.uncommitted_size_bytes + size > limit:
            raise ProposalDropped(f"more than {limit} uncommitted bytes")

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; the answer is a ReadState in a later Ready.

        ``context`` must be unique among this group's pending reads. A follower forwards the
        request to its leader; without a known leader it raises NotLeader(None).
        """
        if self.role == "leader":
            self.handle_read_index(context, self.id)
        elif self.role == "follower" and self.lead is not None:
            self.send(MessageType.READ_INDEX, self.lead, term=0, context=context)
        else:
            raise NotLeader(self.lead)

    def transfer_leadership(self, to: str) -> None:
        """Ask the leader to hand leadership to ``to`` (forwarded if we are not the leader)."""
        if self.role == "leader":
            self.handle_transfer_leader(to)
        elif self.lead is not None:
            self.send(MessageType.TRANSFER_LEADER, self.lead, term=0, context=to.encode())
        else:
            raise NotLeader(None)

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """The application applied a CONF_CHANGE entry: switch to the new configuration."""
        self.voters = apply_change(self.voters, change)
        if self.role != "leader":
            return ConfState(voters=self.voters)
        if change.kind == "add" and change.node_id not in self.progress:
            pr = Progress(self.log.last_index() + 1, self.config.max_inflight_msgs)
            pr.recent_active = True
            self.progress[change.node_id] = pr
        elif change.kind == "remove":
            self.progress.pop(change.node_id, None)
        if change.node_id == self.id and change.kind == "remove":
            self.bcast_append()  # let the others learn the commit index before we go
            self.become_follower(self.term, None)
            return ConfState(voters=self.voters)
        if self.lead_transferee is not None and self.lead_transferee not in self.voters:
            self.abort_leader_transfer()
        if self.maybe_commit():
            self.bcast_append()
        else:
            for peer in self.peers():
                self.send_append(peer, send_if_empty=False)
        return ConfState(voters=self.voters)

    # -- outputs --

    def has_ready(self) -> bool:
        log = self.log
        return bool(self.msgs or self.read_states or log.unstable.entries
                    or log.unstable.snapshot is not None
                    or log.has_next_committed_entries()
                    or self.soft_state() != self.prev_soft_state
                    or self.hard_state() != self.prev_hard_state)

    def ready(self) -> Ready:
        """Everything to do now; hand it back with ``advance`` before asking again."""
        log = self.log
        soft, hard = self.soft_state(), self.hard_state()
        prev_hard = self.prev_hard_state
        committed = log.next_committed_entries()
        rd = Ready(
            soft_state=soft if soft != self.prev_soft_state else None,
            hard_state=hard if hard != prev_hard else None,
            entries=list(log.unstable.entries),
            snapshot=log.unstable.snapshot,
            messages=self.msgs,
            committed_entries=committed,
            read_states=self.read_states,
            must_sync=bool(log.unstable.entries or log.unstable.snapshot is not None
                           or hard.term != prev_hard.term or hard.vote != prev_hard.vote),
        )
        self.msgs = []
        self.read_states = []
        self.prev_soft_state, self.prev_hard_state = soft, hard
        if committed and self.role == "leader":
            released = sum(entry_size_bytes(e) for e in committed)
            self.uncommitted_size_bytes = max(0, self.uncommitted_size_bytes - released)
        return rd

    def advance(self, rd: Ready) -> None:
        """The application has persisted, sent and applied everything in ``rd``."""
        if rd.snapshot is not None:
            self.log.stable_snapshot_to(rd.snapshot.meta.index)
            if rd.snapshot.meta.index > self.log.applied:
                self.log.applied_to(rd.snapshot.meta.index)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)

    def status(self) -> Status:
        progress = {}
        if self.role == "leader":
            progress = {peer: ProgressView(match=pr.match, next=pr.next, state=pr.state.value)
                        for peer, pr in sorted(self.progress.items())}
        return Status(id=self.id, term=self.term, leader=self.lead, role=self.role,
                      commit=self.log.committed, applied=self.log.applied,
                      last_index=self.log.last_index(), vote=self.vote, voters=self.voters,
                      progress=progress)

    def check_invariants(self) -> None:
        """Assert the field invariants (the simulator calls this after every step)."""
        self.log.check_invariants()
        assert (self.role == "leader") == (self.lead == self.id), (self.role, self.lead)
        if self.role == "leader":
            assert all(v in self.progress for v in self.voters), "leader without progress"
        else:
            assert self.lead_transferee is None
