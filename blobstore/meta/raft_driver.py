"""The Raft driver of a meta replica: the one task that owns the ``RaftNode``.

Everything that reaches the node goes through the driver's inbox (peer messages, proposals,
membership changes, ReadIndex requests, leadership transfers) and is handled by one asyncio
task, ``run``, in rounds: wait for input or the next tick, tick (from the real clock:
``tick_s`` per tick, missed ticks dropped as a Go ticker does), step everything queued, then
handle every Ready the node has, one after the other, in ``handle_ready``. Nothing else
touches the node: HTTP handlers read ``view``, a copy published after each round.

``handle_ready`` does, in this order (``docs/raft.md``; ``blobstore/raft/ready.py``):

1. persist the Ready's snapshot, entries and hard state in ONE LMDB transaction of
   ``raft.lmdb`` and fsync ONCE if the Ready says so (group commit: a Ready carries every
   proposal of the round); in a thread, never on the event loop;
2. send its messages (queued per peer by the transport; never before step 1 is durable);
3. restore the state machine from its snapshot, if any; apply its committed entries in ONE
   write transaction of ``meta.lmdb`` (NOOP and CONF_CHANGE entries advance ``last_applied``
   too, so ``last_applied`` is always the raft applied index, and the node is started with
   ``applied = last_applied``: a restart resumes exactly); CONF_CHANGE entries also go to
   ``node.apply_conf_change``;
4. answer the proposals whose entries were applied and release the reads whose ReadIndex
   is now applied;
5. ``node.advance``.

Rules for answers:

- A proposal is answered with the outcome of ITS entry: the waiter records the (index,
  term) the leader gave the entry, and only an applied entry with that index and that term
  answers it. A different entry at that index (the proposal was lost in a change of leader),
  a snapshot that jumps over it, or this node ceasing to lead answer NotLeader: the client
  resends the same envelope to the new leader, and the session table applies it once.
- Reads are linearizable by ReadIndex: the reads that arrive in one round share one
  ``read_index`` call (one heartbeat round), and are released once ``applied >= index``.
  Losing leadership fails the reads still waiting for their index (NotLeader).
- Lease reads (``lease_reads``): a ReadIndex round asked at monotonic time t and confirmed
  by a quorum proves that every node of that quorum heard from this leader after t, and
  none of them will vote for anyone else (check-quorum lease, ``lease_on_start`` after a
  restart) until a full election timeout has passed on its own clock, so no other leader
  can exist before t + election timeout. Until t + ``lease_fraction`` * election timeout
  (the rest is the margin for clock-rate drift between machines) the leader serves reads
  at its commit index without a round, provided an entry of its term is committed and it
  has not tried to hand leadership over in this term (a TIMEOUT_NOW bypasses the lease
  for the rest of the term). In the lease's second half reads go through a round again,
  which renews it. Clocks are monotonic; a stalled leader's lease still ends on time.
- Callers bound every wait with their own deadline (``meta/service.py``); the driver never
  answers Unavailable on its own except when it stops or fails.

Snapshots: every ``snapshot_entries`` applied entries the state is copied (``take_snapshot``,
concurrently with applies, at an exact ``last_applied``) and, back in the loop, recorded in
``raft.lmdb`` with the configuration at that index (the snapshot's configuration, folded
with the CONF_CHANGE entries after it); the log is then compacted up to ``keep_entries``
below the snapshot, a tail for slow followers (farther behind, they get the snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from blobstore.core.errors import Unavailable
from blobstore.meta.commands import Outcome
from blobstore.meta.errors import NotLeader
from blobstore.meta.raft_log import LmdbRaftStorage
from blobstore.meta.state_store import StateStore
from blobstore.raft.core import apply_change
from blobstore.raft.errors import NotLeader as RaftNotLeader
from blobstore.raft.errors import ProposalDropped
from blobstore.raft.messages import (
    ConfChange,
    ConfState,
    EntryKind,
    Message,
    SoftState,
    decode_conf_change,
)
from blobstore.raft.node import RaftNode
from blobstore.raft.ready import ProgressView, Ready

log = logging.getLogger(__name__)
MAX_INBOX_MESSAGES = 65536  # beyond this, peer messages are dropped (raft retransmits)


@dataclass(frozen=True, slots=True)
class DriverOptions:
    """Clock and compaction knobs (``meta/service.py`` reads them from cluster.toml)."""

    tick_s: float = 0.1
    election_tick: int = 10
    heartbeat_tick: int = 1
    snapshot_entries: int = 5000
    keep_entries: int = 1000
    max_inputs_per_round: int = 4096
    # Lease reads: a leader whose ReadIndex round was confirmed by a quorum at time t serves
    # reads at its commit index without another round until t + lease_fraction * election
    # timeout (rule "Reads" in the module docstring). Needs the RaftNode's lease_on_start.
    lease_reads: bool = False
    lease_fraction: float = 0.75

    @property
    def election_timeout_s(self) -> float:
        return self.tick_s * self.election_tick

    @property
    def lease_s(self) -> float:
        return self.election_timeout_s * self.lease_fraction


@dataclass(frozen=True, slots=True)
class RaftView:
    """What the node looked like after the driver's last round (safe to read anywhere)."""

    node_id: str
    role: str = "follower"
    term: int = 0
    leader: str | None = None
    commit: int = 0
    applied: int = 0
    last_index: int = 0
    first_index: int = 1
    snapshot_index: int = 0
    voters: tuple[str, ...] = ()
    progress: dict[str, ProgressView] = field(default_factory=dict)

    @property
    def is_leader(self) -> bool:
        return self.role == "leader"


@dataclass(slots=True)
class _Waiter:
    term: int
    future: asyncio.Future[Any]


_MESSAGE, _PROPOSE, _CONF_CHANGE, _READ, _TRANSFER, _CAMPAIGN = range(6)


class RaftDriver:
    """Feeds a RaftNode from the clock and the inbox, and carries out its Readys."""

    def __init__(self, node: RaftNode, storage: LmdbRaftStorage, store: StateStore,
                 send: Callable[[list[Message]], None], options: DriverOptions | None = None,
                 *, address_of: Callable[[str], str | None] = lambda _node_id: None,
                 on_soft_state: Callable[[SoftState], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.storage = storage
        self.store = store
        self.send = send
        self.options = options or DriverOptions()
        self.address_of = address_of
        self.on_soft_state = on_soft_state
        self.clock = clock
        self.applied = store.last_applied()
        self.failed: BaseException | None = None
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._messages_queued = 0
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._proposals: dict[int, _Waiter] = {}
        self._reads: dict[bytes, list[asyncio.Future[None]]] = {}
        self._confirmed_reads: list[tuple[int, list[asyncio.Future[None]]]] = []
        self._read_ids = itertools.count(1)
        self._read_started: dict[bytes, tuple[float, int]] = {}  # context -> (time, term)
        self._lease_until = 0.0
        self._lease_term = -1
        self._transfer_term = -1
        self.lease_read_count = 0
        self._snapshot_task: asyncio.Task[None] | None = None
        self._snapshot_taken: tuple[int, bytes] | None = None
        self._view_changed: asyncio.Event | None = None
        self.view = self._make_view()
        self.ready_count = 0
        self.fsync_count = 0

    # ---- the API for the service (event loop; never touches the node) ----------------

    def deliver(self, messages: list[Message]) -> None:
        """Messages from peers (the transport calls this)."""
        if self._messages_queued + len(messages) > MAX_INBOX_MESSAGES:
            return  # overloaded: raft retransmits
        self._messages_queued += len(messages)
        self._inbox.append((_MESSAGE, messages))
        self._poke()

    async def propose(self, data: bytes) -> tuple[int, Outcome]:
        """Propose command bytes; (index, outcome) of applying ITS entry (or NotLeader)."""
        return await self._submit(_PROPOSE, data)  # type: ignore[no-any-return]

    async def propose_conf_change(self, change: ConfChange) -> ConfState:
        """Propose a membership change; the configuration once its entry is applied."""
        return await self._submit(_CONF_CHANGE, change)  # type: ignore[no-any-return]

    async def read_barrier(self) -> None:
        """Return once this replica's state is at least as new as the group's commit point
        when the call was made (ReadIndex): a read served after it is linearizable."""
        await self._submit(_READ, None)

    async def transfer_leadership(self, to: str) -> None:
        """Ask the node to hand leadership to ``to`` (the caller watches ``view``)."""
        await self._submit(_TRANSFER, to)

    def campaign(self) -> None:
        """Start an election now (a single-voter group does this at start)."""
        self._inbox.append((_CAMPAIGN,))
        self._poke()

    async def view_change(self) -> None:
        """Wait until the next published view (e.g. to watch a leadership transfer)."""
        if self._view_changed is None:
            self._view_changed = asyncio.Event()
        self._view_changed.clear()
        await self._view_changed.wait()

    def stop(self) -> None:
        self._stopping = True
        self._poke()

    async def _submit(self, kind: int, payload: Any) -> Any:
        if self.failed is not None or self._stopping:
            raise Unavailable("this meta replica is stopping")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inbox.append((kind, payload, future))
        self._poke()
        return await future

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ---- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the node until ``stop``; a failure fails every waiter and is re-raised."""
        self._wake = asyncio.Event()
        if self._view_changed is None:
            self._view_changed = asyncio.Event()
        next_tick = self.clock() + self.options.tick_s
        try:
            while not self._stopping:
                timeout = next_tick - self.clock()
                if not self._inbox and timeout > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                now = self.clock()
                if now >= next_tick:
                    self.node.tick()
                    next_tick = now + self.options.tick_s
                self._step_inputs()
                while self.node.has_ready():
                    await self.handle_ready(self.node.ready())
                if self._snapshot_taken is not None:
                    await self._record_snapshot(*self._snapshot_taken)
                    self._snapshot_taken = None
                self._publish()
                self._maybe_start_snapshot()
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            self.failed = error
            log.critical("raft driver failed; this replica stops serving", exc_info=True)
            raise
        finally:
            self._fail_all(Unavailable("this meta replica stopped its raft driver"))
            if self._snapshot_task is not None:
                self._snapshot_task.cancel()

    def _step_inputs(self) -> None:
        node = self.node
        reads: list[asyncio.Future[None]] = []
        for _ in range(min(len(self._inbox), self.options.max_inputs_per_round)):
            item = self._inbox.popleft()
            kind = item[0]
            if kind == _MESSAGE:
                self._messages_queued -= len(item[1])
                for message in item[1]:
                    node.step(message)
                continue
            if kind == _CAMPAIGN:
                node.campaign()
                continue
            payload, future = item[1], item[2]
            if future.done():
                continue  # the caller gave up before we got to it
            if kind == _READ:
                reads.append(future)
                continue
            try:
                if kind == _PROPOSE:
                    self._wait_for(node.propose(payload), future)
                elif kind == _CONF_CHANGE:
                    self._wait_for(node.propose_conf_change(payload), future)
                elif kind == _TRANSFER:
                    self._transfer_term = node.term  # no lease reads for the rest of the term
                    node.transfer_leadership(payload)
                    future.set_result(None)
            except RaftNotLeader as error:
                future.set_exception(self._not_leader(error.leader))
            except ProposalDropped as error:
                future.set_exception(Unavailable(f"proposal refused: {error}"))
        if reads:
            index = self._lease_read_index()
            if index is not None:
                self.lease_read_count += len(reads)
                self._confirmed_reads.append((index, reads))
                self._release_reads()
                return
            context = next(self._read_ids).to_bytes(8, "big")
            try:
                node.read_index(context)
            except RaftNotLeader as error:
                for future in reads:
                    future.set_exception(self._not_leader(error.leader))
            else:
                self._reads[context] = reads
                self._read_started[context] = (self.clock(), node.term)

    def _lease_read_index(self) -> int | None:
        """The commit index, when this leader may serve reads at it without a round."""
        node = self.node
        if node.lead_transferee is not None:
            self._transfer_term = node.term
        if (not self.options.lease_reads or node.role != "leader"
                or node.term != self._lease_term or self._transfer_term == node.term):
            return None
        if self.clock() >= self._lease_until - self.options.lease_s / 2:
            return None  # second half of the lease: a ReadIndex round renews it
        commit = node.log.committed
        if node.log.term(commit) != node.term:
            return None  # nothing of this term committed yet: the commit index may lag
        return commit

    def _extend_lease(self, context: bytes) -> None:
        started = self._read_started.pop(context, None)
        node = self.node
        if started is None or started[1] != node.term or node.role != "leader":
            return
        until = started[0] + self.options.lease_s
        if self._lease_term != node.term or until > self._lease_until:
            self._lease_until, self._lease_term = until, node.term

    def _wait_for(self, index: int, future: asyncio.Future[Any]) -> None:
        stale = self._proposals.pop(index, None)
        if stale is not None and not stale.future.done():  # its entry was overwritten
            stale.future.set_exception(self._not_leader(self.node.lead))
        self._proposals[index] = _Waiter(term=self.node.term, future=future)

    # ---- one Ready -----------------------------------------------------------------------

    async def handle_ready(self, rd: Ready) -> None:
        """Carry out one Ready in the documented order (module docstring, steps 1-5)."""
        self.ready_count += 1
        # 1. persist snapshot, entries and hard state; ONE fsync for the batch
        if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
            await asyncio.to_thread(self.storage.persist, rd.hard_state, rd.entries,
                                    rd.snapshot, sync=rd.must_sync)
            self.fsync_count += int(rd.must_sync)
        if rd.soft_state is not None:
            self._soft_state_changed(rd.soft_state)
        # 2. send, now that what the messages depend on is durable
        if rd.messages:
            self.send(rd.messages)
        # 3. restore from the snapshot, then apply the committed entries
        if rd.snapshot is not None:
            applied = await self.store.restore(rd.snapshot.data)
            if applied != rd.snapshot.meta.index:
                raise RuntimeError(f"snapshot at {rd.snapshot.meta.index} restored a state "
                                   f"with last_applied {applied}")
            self.applied = applied
            log.info("restored the state from a snapshot at index %d", applied)
            self._fail_proposals(lambda index: index <= applied)
        if rd.committed_entries:
            results = await asyncio.to_thread(self.store.apply_entries, rd.committed_entries)
            outcomes: dict[int, Any] = {entry.index: (entry.index, outcome)
                                        for entry, outcome in results if outcome is not None}
            for entry in rd.committed_entries:
                if entry.kind == EntryKind.CONF_CHANGE:
                    change = decode_conf_change(entry.data)
                    outcomes[entry.index] = self.node.apply_conf_change(change)
                    log.info("membership change applied at %d: %s %s -> voters %s",
                             entry.index, change.kind, change.node_id,
                             ", ".join(outcomes[entry.index].voters))
            self.applied = rd.committed_entries[-1].index
            # 4. answer the proposals whose entries were applied ...
            for entry in rd.committed_entries:
                waiter = self._proposals.pop(entry.index, None)
                if waiter is None or waiter.future.done():
                    continue
                if waiter.term == entry.term:
                    waiter.future.set_result(outcomes.get(entry.index))
                else:
                    waiter.future.set_exception(self._not_leader(self.node.lead))
        # 4. ... and release the reads whose read index is applied
        for state in rd.read_states:
            self._extend_lease(state.context)
            futures = self._reads.pop(state.context, None)
            if futures:
                self._confirmed_reads.append((state.index, futures))
        self._release_reads()
        # 5.
        self.node.advance(rd)

    def _soft_state_changed(self, soft: SoftState) -> None:
        if soft.role != "leader":
            error = self._not_leader(soft.leader)
            self._fail_proposals(lambda _index: True, error)
            for futures in self._reads.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            self._reads.clear()
            self._read_started.clear()
            self._lease_until = 0.0
        if self.on_soft_state is not None:
            self.on_soft_state(soft)

    def _release_reads(self) -> None:
        waiting = []
        for index, futures in self._confirmed_reads:
            if index <= self.applied:
                for future in futures:
                    if not future.done():
                        future.set_result(None)
            else:
                waiting.append((index, futures))
        self._confirmed_reads = waiting

    def _fail_proposals(self, which: Callable[[int], bool],
                        error: BaseException | None = None) -> None:
        for index in [index for index in self._proposals if which(index)]:
            waiter = self._proposals.pop(index)
            if not waiter.future.done():
                waiter.future.set_exception(error or self._not_leader(self.node.lead))

    def _fail_all(self, error: BaseException) -> None:
        self._fail_proposals(lambda _index: True, error)
        pending = [futures for futures in self._reads.values()]
        pending += [futures for _index, futures in self._confirmed_reads]
        pending += [[item[2]] for item in self._inbox if item[0] not in (_MESSAGE, _CAMPAIGN)]
        for futures in pending:
            for future in futures:
                if not future.done():
                    future.set_exception(error)
        self._reads.clear()
        self._confirmed_reads.clear()
        self._inbox.clear()

    def _not_leader(self, leader: str | None) -> NotLeader:
        if leader == self.node.id:
            leader = None
        return NotLeader(leader_id=leader,
                         leader_address=self.address_of(leader) if leader else None)

    # ---- published view ------------------------------------------------------------------

    def _make_view(self) -> RaftView:
        status = self.node.status()
        return RaftView(node_id=status.id, role=status.role, term=status.term,
                        leader=status.leader, commit=status.commit, applied=self.applied,
                        last_index=status.last_index, first_index=self.storage.first_index(),
                        snapshot_index=self.storage.snapshot_meta().index,
                        voters=status.voters, progress=dict(status.progress))

    def _publish(self) -> None:
        view = self._make_view()
        changed = (view.role, view.leader, view.term, view.voters) != (
            self.view.role, self.view.leader, self.view.term, self.view.voters)
        self.view = view
        if changed and self._view_changed is not None:
            self._view_changed.set()

    # ---- snapshots and compaction ---------------------------------------------------------

    def _maybe_start_snapshot(self) -> None:
        if self._snapshot_task is not None or self._stopping:
            return
        if self.applied - self.storage.snapshot_meta().index < self.options.snapshot_entries:
            return
        self._snapshot_task = asyncio.get_running_loop().create_task(self._take_snapshot(),
                                                                     name="meta-snapshot")

    async def _take_snapshot(self) -> None:
        try:
            self._snapshot_taken = await self.store.take_snapshot()
            self._poke()
        except Exception:
            log.exception("taking a snapshot of the state failed")
        finally:
            self._snapshot_task = None

    async def _record_snapshot(self, index: int, data: bytes) -> None:
        """Record a state copy at ``index`` in raft.lmdb and compact the log below it."""
        storage = self.storage
        base = storage.snapshot_meta()
        if index <= base.index or index > storage.last_index():
            return  # a newer snapshot was installed meanwhile
        changes = await asyncio.to_thread(storage.entries, base.index + 1, index + 1)
        voters = base.conf.voters
        for entry in changes:
            if entry.kind == EntryKind.CONF_CHANGE:
                voters = apply_change(voters, decode_conf_change(entry.data))
        compact_to = max(index - self.options.keep_entries, 0)
        await asyncio.to_thread(storage.snapshot_and_compact, index, ConfState(voters=voters),
                                data, compact_to)
        log.info("snapshot at index %d (%d bytes); log compacted to %d", index, len(data),
                 storage.first_index() - 1)
