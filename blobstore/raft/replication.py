"""Log replication: appends, heartbeats, snapshots, commitment and ReadIndex.

Leader rules:
1. Per follower, ``Progress`` decides what to send (probe one message at a time, pipeline
   up to ``max_inflight_msgs`` messages of at most ``max_size_per_msg_bytes`` each, or send
   a snapshot when the entries it needs are compacted).
2. A rejection carries the follower's hint (its last index that may match and that index's
   term); the leader skips every index whose term cannot match (fast backtracking).
3. Commit advances to the highest index a quorum has *only if* that entry is of the
   leader's current term (§5.4.2); earlier entries are committed indirectly. This is what
   makes the Figure 8 scenario safe.
4. Heartbeats carry ``commit = min(match, committed)``, so a follower never commits past what
   it is known to hold, and the newest pending ReadIndex context.
5. ReadIndex: see read_only.py. Forwarded requests are answered with READ_INDEX_RESP.

Follower rules:
6. An APPEND is accepted only if the log has the entry at (``index``, ``log_term``) (Log
   Matching); conflicting entries after it are truncated (never committed ones); commit
   moves to ``min(leader commit, last new index)``.
7. A SNAPSHOT newer than the commit index replaces the log unless the log already has the
   snapshot's last entry (then it just commits up to it).
"""

from __future__ import annotations

from blobstore.raft.core import RaftCore
from blobstore.raft.errors import Compacted, SnapshotTemporarilyUnavailable, Unavailable
from blobstore.raft.messages import Message, MessageType, ReadState, Snapshot
from blobstore.raft.progress import Progress, ProgressState
from blobstore.raft.quorum import has_quorum
from blobstore.raft.read_only import ReadRequest


class Replication(RaftCore):
    """Replication on the leader and on followers (mixed into RaftNode)."""

    # -- leader: sending --

    def send_append(self, to: str, send_if_empty: bool = True) -> bool:
        """Rule 1: send ``to`` what its progress allows; returns whether a message left."""
        pr = self.progress[to]
        if pr.is_paused():
            return False
        last = self.log.last_index()
        prev = min(pr.next, last + 1) - 1
        try:
            prev_term = self.log.term(prev)
            entries = self.log.entries(prev + 1, last + 1, self.config.max_size_per_msg_bytes)
        except Compacted:
            return self.send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        self.send(MessageType.APPEND, to, index=prev, log_term=prev_term,
                  entries=tuple(entries), commit=self.log.committed)
        pr.sent_entries(len(entries), entries[-1].index if entries else prev)
        return True

    def send_empty_append(self, to: str, pr: Progress) -> None:
        """An empty APPEND at ``next - 1``, outside the window: it either frees the window or
        is rejected and resets the follower to PROBE (its messages were lost)."""
        prev = pr.next - 1
        try:
            prev_term = self.log.term(prev)
        except (Compacted, Unavailable):
            pr.become_probe()
            self.send_append(to)
            return
        self.send(MessageType.APPEND, to, index=prev, log_term=prev_term,
                  commit=self.log.committed)

    def send_snapshot(self, to: str, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        try:
            snapshot = self.log.snapshot()
        except SnapshotTemporarilyUnavailable:
            return False
        pr.become_snapshot(snapshot.meta.index)
        self.send(MessageType.SNAPSHOT, to, snapshot=snapshot)
        return True

    def bcast_append(self) -> None:
        for peer in self.peers():
            if peer in self.progress:
                self.send_append(peer)

    def bcast_heartbeat(self, context: bytes | None = None) -> None:
        """Rule 4."""
        if context is None:
            context = self.read_only.last_pending_context()
        for peer in self.peers():
            pr = self.progress.get(peer)
            if pr is not None:
                commit = min(pr.match, self.log.committed)
                self.send(MessageType.HEARTBEAT, peer, commit=commit, context=context)

    def tick_snapshot_retries(self) -> None:
        for pr in self.progress.values():
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_elapsed_ticks += 1
                if pr.snapshot_elapsed_ticks >= self.config.election_tick:
                    pr.become_probe()

    # -- leader: answers --

    def handle_append_response(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if m.reject:
            self._handle_rejection(m, pr)
            return
        was_paused = pr.is_paused()
        if not (pr.maybe_update(m.index)
                or (pr.match == m.index and pr.state is ProgressState.PROBE)):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            self.bcast_append()
        elif was_paused:
            self.send_append(m.src)
        while self.send_append(m.src, send_if_empty=False):
            pass
        self.maybe_finish_transfer(m.src)

    def _handle_rejection(self, m: Message, pr: Progress) -> None:
        """Rule 2."""
        next_probe = m.reject_hint
        if m.log_term > 0:
            next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decrease_to(m.index, next_probe):
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
            self.send_append(m.src)

    def handle_heartbeat_response(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False
        last = self.log.last_index()
        if pr.state is ProgressState.REPLICATE and pr.match < last:
            if pr.is_paused() or pr.next > last:
                self.send_empty_append(m.src, pr)
            else:
                self.send_append(m.src)
        elif pr.state is ProgressState.PROBE:
            self.send_append(m.src)
        if m.context:
            acks = self.read_only.recv_ack(m.src, m.context)
            if acks is not None and has_quorum(self.voters, dict.fromkeys(acks, True)):
                for request in self.read_only.advance(m.context):
                    self._answer_read(request.context, request.requester, request.index)

    # -- leader: ReadIndex --

    def handle_read_index(self, context: bytes, requester: str) -> None:
        if self.voters == (self.id,):
            self._answer_read(context, requester, self.log.committed)
        elif not self.committed_entry_in_current_term():
            self.pending_read_index.append((context, requester))
        else:
            self._start_read(context, requester)

    def _start_read(self, context: bytes, requester: str) -> None:
        if self.read_only.add_request(self.log.committed, context, requester):
            self.read_only.recv_ack(self.id, context)
            self.bcast_heartbeat(context)

    def release_pending_read_index(self) -> None:
        if not self.committed_entry_in_current_term():
            return
        pending, self.pending_read_index = self.pending_read_index, []
        for context, requester in pending:
            self.handle_read_index(context, requester)

    def _answer_read(self, context: bytes, requester: str, index: int) -> None:
        if requester == self.id:
            self.read_states.append(ReadState(index=index, context=context))
        else:
            self.send(MessageType.READ_INDEX_RESP, requester, index=index, context=context)

    def pending_reads(self) -> list[ReadRequest]:
        return list(self.read_only.pending.values())

    # -- follower --

    def step_follower(self, m: Message) -> None:
        t = m.type
        if t in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
            self.election_elapsed = 0
            self.lead = m.src
            if t is MessageType.APPEND:
                self.handle_append(m)
            elif t is MessageType.HEARTBEAT:
                self.handle_heartbeat(m)
            else:
                self.handle_snapshot(m)
        elif t is MessageType.TRANSFER_LEADER:
            if self.lead is not None:
                self.send(MessageType.TRANSFER_LEADER, self.lead, term=0, context=m.context)
        elif t is MessageType.TIMEOUT_NOW:
            self.hup(transfer=True)
        elif t is MessageType.READ_INDEX_RESP:
            self.read_states.append(ReadState(index=m.index, context=m.context))

    def handle_append(self, m: Message) -> None:
        """Rule 6."""
        log = self.log
        if m.index < log.committed:
            self.send(MessageType.APPEND_RESP, m.src, index=log.committed)
            return
        last = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last is not None:
            self.send(MessageType.APPEND_RESP, m.src, index=last)
            return
        hint, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self.send(MessageType.APPEND_RESP, m.src, index=m.index, reject=True,
                  reject_hint=hint, log_term=hint_term)

    def handle_heartbeat(self, m: Message) -> None:
        # commit <= what the leader knows we hold (rule 4); min() only guards a broken disk.
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self.send(MessageType.HEARTBEAT_RESP, m.src, context=m.context)

    def handle_snapshot(self, m: Message) -> None:
        """Rule 7."""
        assert m.snapshot is not None, "SNAPSHOT message without a snapshot"
        if self.restore(m.snapshot):
            self.send(MessageType.APPEND_RESP, m.src, index=self.log.last_index())
        else:
            self.send(MessageType.APPEND_RESP, m.src, index=self.log.committed)

    def restore(self, snapshot: Snapshot) -> bool:
        meta = snapshot.meta
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snapshot)
        self.voters = tuple(sorted(set(meta.conf.voters)))
        return True
