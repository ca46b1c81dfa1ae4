"""Elections: randomized timeouts, pre-vote, votes, the leader lease and leader transfer.

Rules:
1. A follower or candidate that hears nothing from a leader for its randomized election
   timeout (uniform in ``[election_tick, 2 * election_tick)``, re-drawn at every transition)
   starts an election. A node that is not a voter, or that has committed but not yet applied
   a membership change, never campaigns (its configuration may be stale).
2. Pre-vote (thesis §9.6): first ask for ``PRE_VOTE`` at ``term + 1`` without changing the
   term; only with a quorum of grants increment the term and ask for real votes. A node cut
   off from the majority therefore never inflates its term and cannot disrupt the group when
   it rejoins.
3. A vote (or pre-vote) is granted only to a candidate whose log is at least as up to date
   (§5.4.1); a real vote is granted at most once per term, and recorded in the hard state
   before the answer leaves (the answer travels in the same Ready).
4. Leader lease (check-quorum): a node that heard from a leader within the last
   ``election_tick`` ignores (pre-)vote requests at a higher term, unless the campaign was
   started by TIMEOUT_NOW (``context == TRANSFER_CONTEXT``). With ``lease_on_start`` so does
   a node during its first ``election_tick`` ticks after a (re)start: it may have heard from
   a leader just before it went down and forgotten it, and a leader's lease reads
   (``meta/raft_driver.py``) count on every node of the quorum that confirmed the lease to
   keep that promise for a full timeout.
5. Leader transfer: the leader stops taking proposals, brings the target up to date and
   sends it TIMEOUT_NOW; the target campaigns at once, skipping pre-vote. The transfer is
   abandoned after one election timeout.
"""

from __future__ import annotations

from blobstore.raft.core import RaftCore
from blobstore.raft.messages import TRANSFER_CONTEXT, Message, MessageType
from blobstore.raft.quorum import VoteResult, vote_result

_VOTE_RESPONSE = {MessageType.VOTE: MessageType.VOTE_RESP,
                  MessageType.PRE_VOTE: MessageType.PRE_VOTE_RESP}


class Election(RaftCore):
    """Campaigning and voting (mixed into RaftNode)."""

    def tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.hup(transfer=False)

    def hup(self, transfer: bool) -> None:
        if self.role == "leader" or not self.promotable():
            return
        if self.has_unapplied_conf_changes():
            return
        if self.config.pre_vote and not transfer:
            self.campaign_pre_vote()
        else:
            self.campaign_vote(transfer)

    def campaign_pre_vote(self) -> None:
        self.become_pre_candidate()
        self._ask_for_votes(MessageType.PRE_VOTE, self.term + 1, transfer=False)

    def campaign_vote(self, transfer: bool) -> None:
        self.become_candidate()
        self._ask_for_votes(MessageType.VOTE, self.term, transfer)

    def _ask_for_votes(self, type: MessageType, term: int, transfer: bool) -> None:
        if self.poll(self.id, granted=True) is VoteResult.WON:
            self._won(transfer)
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        context = TRANSFER_CONTEXT if transfer else b""
        for peer in self.peers():
            self.send(type, peer, term=term, index=last_index, log_term=last_term,
                      context=context)

    def _won(self, transfer: bool) -> None:
        if self.role == "pre_candidate":
            self.campaign_vote(transfer)
        else:
            self.become_leader()
            self.bcast_append()

    def poll(self, voter: str, granted: bool) -> VoteResult:
        self.votes.setdefault(voter, granted)
        return vote_result(self.voters, self.votes)

    def in_lease(self) -> bool:
        """Rule 4: recently heard from a leader, so refuse to help depose it."""
        if not self.config.check_quorum:
            return False
        if self.config.lease_on_start and self.ticks_alive < self.config.election_tick:
            return True
        return self.lead is not None and self.election_elapsed < self.config.election_tick

    def handle_vote_request(self, m: Message) -> None:
        """Rule 3; the term checks have already been done by ``step``."""
        can_vote = (self.vote == m.src
                    or (self.vote is None and self.lead is None)
                    or (m.type is MessageType.PRE_VOTE and m.term > self.term))
        response = _VOTE_RESPONSE[m.type]
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self.send(response, m.src, term=m.term)
            if m.type is MessageType.VOTE:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self.send(response, m.src, term=self.term, reject=True)

    def step_candidate(self, m: Message) -> None:
        """A (pre-)candidate: a leader of this term wins; count our kind of vote answer."""
        if m.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
            self.become_follower(m.term, m.src)
            self.step_follower(m)
            return
        mine = (MessageType.PRE_VOTE_RESP if self.role == "pre_candidate"
                else MessageType.VOTE_RESP)
        if m.type is not mine:
            return
        result = self.poll(m.src, granted=not m.reject)
        if result is VoteResult.WON:
            self._won(transfer=False)
        elif result is VoteResult.LOST:
            self.become_follower(self.term, None)

    # -- leader transfer --

    def handle_transfer_leader(self, target: str) -> None:
        """Rule 5, on the leader."""
        if target not in self.voters or target == self.id:
            return
        if self.lead_transferee is not None:
            if self.lead_transferee == target:
                return
            self.abort_leader_transfer()
        self.election_elapsed = 0
        self.lead_transferee = target
        if self.progress[target].match == self.log.last_index():
            self.send(MessageType.TIMEOUT_NOW, target)
        else:
            self.send_append(target)
