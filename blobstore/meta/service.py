"""One meta replica: the Raft group member behind the metadata API.

Every meta node of cluster.toml is a voter of ONE Raft group (``blobstore/raft``, driven by
``meta/raft_driver.py``); the replicated log holds the state machine's commands
(``meta/commands.py``); each replica applies them to its own ``meta.lmdb``
(``meta/state_store.py``); ``raft.lmdb`` holds the log (``meta/raft_log.py``); peers talk
over ``POST /v1/raft`` (``meta/raft_transport.py``).

Rules:

1. Writes (``command``) are proposed on the leader only and answered when ITS entry has
   been applied (the outcome recorded by the state machine; a retried (client id,
   sequence) is answered from the session table, applied once). A follower answers
   NotLeader with the leader's address (``meta/errors.py``), without proposing.
2. Fail fast: with no leader known, or on a leader that has not heard from a quorum of
   voters within one election timeout, a write is refused at once with 503 Unavailable;
   a proposal not applied within ``proposal_timeout_s`` is answered 503 too (it may still
   apply: the client retries the same envelope). Nothing waits longer than that.
3. Reads are linearizable by ReadIndex on the leader (``read_barrier``), then served from
   the local state. A follower that knows the leader redirects (NotLeader). Without a
   leader, or on a leader without quorum, reads fail with 503 ... unless
   ``allow_stale_reads`` is on in cluster.toml: then they are served from this replica's
   last applied state, marked stale (``X-Blobstore-Stale: 1``).
4. Soft state: storage heartbeats and the cluster map live on the leader (a new leader
   starts a fresh failure detector, which waits ``down_after_s`` before calling anyone
   down). Followers redirect them; ``allow_stale_reads`` lets a leaderless replica serve
   its own (old) map.
5. Membership: the first start of a group (every meta node of cluster.toml fresh, and each
   one reachable) bootstraps the configuration "all meta nodes of cluster.toml" (the conf of
   the empty snapshot at index 0). A fresh node that finds a peer with state joins that
   group: it takes the peer's snapshot configuration (the genesis one until the peer
   compacts), so replaying the leader's log, or installing its snapshot, gives it the
   group's configuration; it is not a voter (does not campaign) until added
   (``blobstore meta add ID``). From then on membership lives in the Raft log and
   snapshots only. A replica with state restarts from it. A pre-Raft ``meta.lmdb`` (state
   but no raft log) is adopted as a snapshot at its ``last_applied`` -- only when
   cluster.toml names ONE meta node (add the others afterwards), since two fresh replicas
   could otherwise elect each other over the adopted data.
6. A membership change is accepted on the leader only, one at a time; the node added must
   be a meta node of cluster.toml (re-read from disk if this process does not know it), and
   a change is refused when the voters reachable now would not be a quorum after it.
7. Knobs, in ``[cluster]`` of cluster.toml (all optional): ``raft_tick_ms`` (50),
   ``raft_election_ticks`` (10), ``raft_heartbeat_ticks`` (1), ``raft_snapshot_entries``
   (50000), ``raft_keep_entries`` (1000), ``raft_proposal_timeout_s`` (3),
   ``raft_lease_reads`` (true: the leader serves linearizable reads from its lease, assuming
   the meta machines' clocks run at rates within 25% of each other; false: a ReadIndex
   round for every batch of reads, no clock assumption).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from blobstore.config import ClusterConfig, ConfigError, NodeConfig, load_config
from blobstore.core.errors import (
    BlobstoreError,
    Conflict,
    Invalid,
    Unavailable,
    UnknownAccessKey,
)
from blobstore.core.records import ClusterMap, NodeRole
from blobstore.meta.commands import CommandEnvelope, Outcome, PutUser, encode_envelope
from blobstore.meta.errors import NoQuorum, NotLeader
from blobstore.meta.failure_detector import FailureDetector
from blobstore.meta.raft_driver import DriverOptions, RaftDriver, RaftView
from blobstore.meta.raft_log import LmdbRaftStorage
from blobstore.meta.raft_transport import RaftTransport, TransportOptions
from blobstore.meta.schema import User
from blobstore.meta.state_machine import StateMachine
from blobstore.meta.state_store import StateStore, open_env
from blobstore.raft.core import RaftConfig
from blobstore.raft.messages import (
    ConfChange,
    ConfState,
    HardState,
    Message,
    Snapshot,
    SnapshotMeta,
    SoftState,
)
from blobstore.raft.node import RaftNode
from blobstore.rpc.client import RpcClient

__all__ = ["MetaService", "ReplicaOptions", "open_env"]
log = logging.getLogger(__name__)
T = TypeVar("T")
RAFT_STATE_PATH = "/v1/raft/state"
BOOTSTRAP_POLL_S = 0.3
PEER_PROBE_TIMEOUT_S = 1.0
CONFIG_RELOAD_S = 1.0


class ReplicaError(BlobstoreError):
    """This replica cannot start safely (see the message for what to do)."""

    code = "ReplicaError"


@dataclass(frozen=True, slots=True)
class ReplicaOptions:
    driver: DriverOptions = field(default_factory=DriverOptions)
    transport: TransportOptions = field(default_factory=TransportOptions)
    proposal_timeout_s: float = 3.0
    read_timeout_s: float = 3.0
    allow_stale_reads: bool = False

    @classmethod
    def from_config(cls, config: ClusterConfig) -> ReplicaOptions:
        """Rule 7: the ``raft_*`` knobs of ``[cluster]``, checked."""
        extra = config.extra

        def number(key: str, default: float, low: float, high: float) -> float:
            value = extra.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"[cluster] {key} must be a number")
            if not low <= value <= high:
                raise ConfigError(f"[cluster] {key} must be between {low:g} and {high:g}")
            return float(value)

        tick_s = number("raft_tick_ms", 50, 1, 10_000) / 1000
        election = int(number("raft_election_ticks", 10, 2, 1000))
        heartbeat = int(number("raft_heartbeat_ticks", 1, 1, 1000))
        if heartbeat >= election:
            raise ConfigError("[cluster] raft_heartbeat_ticks must be below "
                              "raft_election_ticks")
        driver = DriverOptions(
            tick_s=tick_s, election_tick=election, heartbeat_tick=heartbeat,
            snapshot_entries=int(number("raft_snapshot_entries", 50_000, 1, 10**9)),
            keep_entries=int(number("raft_keep_entries", 1000, 0, 10**9)),
            lease_reads=extra.get("raft_lease_reads", True) in (True, 1))
        timeout_s = number("raft_proposal_timeout_s", 3.0, 0.1, 600)
        return cls(driver=driver, proposal_timeout_s=timeout_s, read_timeout_s=timeout_s,
                   allow_stale_reads=config.allow_stale_reads)


class _RaftStateBody(msgspec.Struct, frozen=True):
    node_id: str
    bootstrapped: bool
    voters: list[str] = []
    snapshot_voters: list[str] = []
    term: int = 0
    last_index: int = 0


class MetaService:
    """One replica: raft storage, state, driver and transport, and the API over them."""

    def __init__(self, config: ClusterConfig, node: NodeConfig, rpc: RpcClient,
                 options: ReplicaOptions | None = None) -> None:
        self.config = config
        self.node = node
        self.rpc = rpc
        self.options = options or ReplicaOptions.from_config(config)
        self.addresses = {n.id: n.address for n in config.by_role(NodeRole.META)}
        self.store: StateStore | None = None
        self.storage: LmdbRaftStorage | None = None
        self.driver: RaftDriver | None = None
        self.transport: RaftTransport | None = None
        self.detector = FailureDetector(config, started_s=time.monotonic())
        self.started_s = time.monotonic()
        self.ready = False
        self._tasks: list[asyncio.Task[None]] = []
        self._heard: dict[str, float] = {}
        self._leader_since_s: float | None = None
        self.bootstrap_user_done = False
        self._reloaded_s = float("-inf")

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the state and the log, join or bootstrap the group, start driving."""
        data_dir = Path(self.node.data_dir)
        self.store = await asyncio.to_thread(StateStore, data_dir / "meta.lmdb")
        self.storage = await asyncio.to_thread(LmdbRaftStorage.open, data_dir / "raft.lmdb")
        await self._bootstrap()
        storage, store = self.storage, self.store
        snapshot_index = storage.snapshot_meta().index
        if store.last_applied() < snapshot_index:  # crashed between persist and restore
            log.warning("state at %d is behind the raft snapshot at %d: restoring it",
                        store.last_applied(), snapshot_index)
            await asyncio.to_thread(store.restore_sync, storage.snapshot().data)
        applied = store.last_applied()
        if applied > storage.last_index():
            raise ReplicaError(f"{self.node.id}: meta.lmdb has applied entry {applied} but "
                               f"raft.lmdb ends at {storage.last_index()}; the raft log was "
                               "lost: move this replica's data dir away, remove it from the "
                               "group (blobstore meta remove) and add it back")
        options = self.options.driver
        raft_config = RaftConfig(id=self.node.id, election_tick=options.election_tick,
                                 heartbeat_tick=options.heartbeat_tick,
                                 lease_on_start=options.lease_reads)
        raft = RaftNode(raft_config, storage, rng=random.Random(), applied=applied)
        self.transport = RaftTransport(self.node.id, self.rpc, self.address_of,
                                       self._received, self.options.transport)
        self.driver = RaftDriver(raft, storage, store, self.transport.send, options,
                                 address_of=self.address_of, on_soft_state=self._soft_state)
        self.started_s = time.monotonic()
        self._spawn(self._drive(), "raft-driver")
        if self.driver.view.voters == (self.node.id,):
            self.driver.campaign()
        self._spawn(self._bootstrap_user(), "bootstrap-user")
        self.ready = True
        log.info("meta replica %s started: applied=%d last_index=%d voters=%s", self.node.id,
                 applied, storage.last_index(), ",".join(self.driver.view.voters))

    async def _drive(self) -> None:
        assert self.driver is not None
        try:
            await self.driver.run()
        except asyncio.CancelledError:
            raise
        except BaseException:
            self.ready = False  # healthz goes 503; every request answers 503

    def _spawn(self, coroutine: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coroutine, name=name))

    async def stop(self) -> None:
        self.ready = False
        if self.driver is not None:
            self.driver.stop()
        for task in self._tasks:
            if task.get_name() != "raft-driver":
                task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self.transport is not None:
            await self.transport.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        if self.storage is not None:
            await asyncio.to_thread(self.storage.close)

    # ---- membership bootstrap (rule 5) ---------------------------------------------------

    async def _bootstrap(self) -> None:
        storage, store = self.storage, self.store
        assert storage is not None and store is not None
        if not storage.is_empty():
            return
        meta_ids = sorted(self.addresses)
        applied = store.last_applied()
        if applied:
            if meta_ids != [self.node.id]:
                raise ReplicaError(
                    f"{self.node.id}: meta.lmdb holds pre-Raft state (last_applied {applied}) "
                    f"but cluster.toml names {len(meta_ids)} meta nodes; start it with "
                    "cluster.toml naming only this meta node, then add the others with "
                    "`blobstore meta add ID`")
            await asyncio.to_thread(self._adopt, applied)
            return
        peers = [node_id for node_id in meta_ids if node_id != self.node.id]
        while peers:
            answers = await asyncio.gather(*(self._peer_raft_state(p) for p in peers))
            existing = [a for a in answers if a is not None and a.bootstrapped and a.voters]
            if existing:
                # The peer's snapshot configuration (the genesis one until it compacts):
                # replaying the log from there rebuilds the group's configuration; a
                # snapshot from the leader replaces it (docs/raft.md, "Storage").
                peer = existing[0]
                voters = tuple(sorted(peer.snapshot_voters or peer.voters))
                log.info("joining the existing group of %s (voters now %s); waiting to be "
                         "added", peer.node_id, ",".join(peer.voters))
                await asyncio.to_thread(storage.bootstrap, ConfState(voters=voters))
                return
            if all(a is not None for a in answers):
                break  # everyone is fresh: the group's first start
            await asyncio.sleep(BOOTSTRAP_POLL_S)
        log.info("bootstrapping a new group: voters %s", ",".join(meta_ids))
        await asyncio.to_thread(storage.bootstrap, ConfState(voters=tuple(meta_ids)))

    def _adopt(self, applied: int) -> None:
        assert self.storage is not None and self.store is not None
        store = self.store
        with store.env.begin(write=True) as txn:  # the pre-Raft command log: not state
            txn.drop(store.state.dbs.log, delete=False)
        index, data = store.snapshot_sync()
        meta = SnapshotMeta(index=index, term=1, conf=ConfState(voters=(self.node.id,)))
        self.storage.persist(HardState(term=1, vote=None, commit=index), [],
                             Snapshot(meta=meta, data=data))
        log.info("adopted the pre-Raft state at index %d as a snapshot", applied)

    async def _peer_raft_state(self, node_id: str) -> _RaftStateBody | None:
        try:
            _status, _headers, payload = await self.rpc.request(
                "GET", self.addresses[node_id], RAFT_STATE_PATH, timeout_s=PEER_PROBE_TIMEOUT_S)
            return msgspec.json.decode(payload, type=_RaftStateBody)
        except (BlobstoreError, msgspec.DecodeError, msgspec.ValidationError):
            return None

    def raft_state(self) -> dict[str, Any]:
        """``GET /v1/raft/state``: what a fresh peer needs to decide how to start."""
        if self.driver is None:
            return {"node_id": self.node.id, "bootstrapped": False}
        view = self.driver.view
        assert self.storage is not None
        return {"node_id": self.node.id, "bootstrapped": True, "voters": list(view.voters),
                "snapshot_voters": list(self.storage.snapshot_meta().conf.voters),
                "term": view.term, "last_index": view.last_index}

    # ---- helpers -------------------------------------------------------------------------

    def address_of(self, node_id: str, force_reload: bool = False) -> str | None:
        """A meta node's address, from cluster.toml (re-read, at most once per
        ``CONFIG_RELOAD_S`` unless forced, for an id this process does not know: a node
        added since)."""
        address = self.addresses.get(node_id)
        now = time.monotonic()
        due = force_reload or now - self._reloaded_s >= CONFIG_RELOAD_S
        if address is None and self.config.path and due:
            self._reloaded_s = now
            try:
                fresh = load_config(self.config.path)
            except ConfigError as error:
                log.warning("cannot re-read %s: %s", self.config.path, error)
                return None
            for node in fresh.by_role(NodeRole.META):
                self.addresses.setdefault(node.id, node.address)
            address = self.addresses.get(node_id)
        return address

    def _received(self, messages: list[Message]) -> None:
        now = time.monotonic()
        for message in messages:
            self._heard[message.src] = now
        if self.driver is not None:
            self.driver.deliver(messages)

    def _soft_state(self, soft: SoftState) -> None:
        if soft.role == "leader":
            if self._leader_since_s is None:
                self._leader_since_s = time.monotonic()
                members = self.detector.members  # the node table, until the next sync
                self.detector = FailureDetector(self.config, started_s=time.monotonic())
                self.detector.set_members(members, time.monotonic())
                log.info("%s is the leader", self.node.id)
        else:
            if self._leader_since_s is not None:
                log.info("%s is no longer the leader (leader: %s)", self.node.id, soft.leader)
            self._leader_since_s = None

    @property
    def state(self) -> StateMachine:
        """The local state machine (reads only; it is replaced by a snapshot restore)."""
        assert self.store is not None, "only between start and stop"
        return self.store.state

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """A read as ``read`` serves it (linearizable on the leader, NotLeader on a follower,
        stale only where allowed), for callers that pass the state themselves:
        ``await service.run(fn, service.state, ...)`` (the pre-Raft signature)."""
        assert self.store is not None, "only between start and stop"
        await self._read_point("read")
        return await self.store.read(lambda _state: function(*args))

    @property
    def view(self) -> RaftView:
        if self.driver is None or not self.ready:
            raise Unavailable(f"meta replica {self.node.id} is starting")
        return self.driver.view

    def reachable_voters(self, timeouts: float = 1.0) -> set[str]:
        """Voters this replica heard from within ``timeouts`` election timeouts (and itself)."""
        view = self.view
        horizon = time.monotonic() - timeouts * self.options.driver.election_timeout_s
        return {v for v in view.voters
                if v == self.node.id or self._heard.get(v, float("-inf")) >= horizon}

    def quorum_active(self, timeouts: float = 1.0) -> bool:
        voters = self.view.voters
        return bool(voters) and 2 * len(self.reachable_voters(timeouts)) > len(voters)

    def _redirect(self, view: RaftView, what: str) -> BlobstoreError:
        """The error for a request this replica cannot serve (rules 1 and 3)."""
        if view.leader and view.leader != self.node.id:
            return NotLeader(leader_id=view.leader, leader_address=self.address_of(view.leader))
        if view.is_leader:
            return NoQuorum(f"{what}: meta leader {self.node.id} cannot reach a quorum of "
                            f"its {len(view.voters)} voters")
        settled_s = 2 * self.options.driver.election_timeout_s
        if time.monotonic() - self.started_s >= settled_s and not self.quorum_active(2.0):
            return NoQuorum(f"{what}: no meta leader, and {self.node.id} reaches "
                            f"{len(self.reachable_voters(2.0))} of {len(view.voters)} voters")
        return Unavailable(f"{what}: no meta leader yet (election running)")

    def _leader_view(self, what: str) -> RaftView:
        view = self.view
        if not view.is_leader or not self.quorum_active():
            raise self._redirect(view, what)
        return view

    # ---- the API -------------------------------------------------------------------------

    async def command(self, envelope: CommandEnvelope) -> tuple[int, Outcome]:
        """Rule 1 and 2: propose on the leader; (index, outcome) of its entry."""
        self._leader_view("write")
        assert self.driver is not None
        try:
            return await asyncio.wait_for(self.driver.propose(encode_envelope(envelope)),
                                          self.options.proposal_timeout_s)
        except TimeoutError:
            raise Unavailable(f"write not committed within {self.options.proposal_timeout_s:g}s "
                              "(it may still be applied; retry with the same sequence)") from None

    async def read(self, function: Callable[..., T], *args: Any) -> tuple[T, bool]:
        """Rule 3: ``function(state_machine, *args)``; (value, whether it is stale)."""
        store = self.store
        assert store is not None
        if await self._read_point("read"):
            return await store.read(function, *args), False
        return await store.read(function, *args), True

    async def _read_point(self, what: str) -> bool:
        """True once a linearizable read may be served; False if a stale one may be."""
        view = self.view
        stale_ok = self.options.allow_stale_reads
        if view.is_leader and self.quorum_active():
            assert self.driver is not None
            try:
                await asyncio.wait_for(self.driver.read_barrier(), self.options.read_timeout_s)
                return True
            except (TimeoutError, NotLeader, Unavailable) as error:
                if stale_ok and not self.view.leader:
                    return False
                if isinstance(error, TimeoutError):
                    raise Unavailable(f"{what}: the leader could not confirm its lease within "
                                      f"{self.options.read_timeout_s:g}s") from None
                raise
        error = self._redirect(view, what)
        if stale_ok and not isinstance(error, NotLeader):
            return False
        raise error

    async def get_user(self, access_key: str) -> tuple[User, bool]:
        """A user; while the ``[s3]`` user is not created yet, asking for it is a 503 (retry)
        rather than UnknownAccessKey, so a gateway never refuses the first requests."""
        try:
            return await self.read(StateMachine.get_user, access_key)
        except UnknownAccessKey:
            if access_key == self.config.access_key and not self.bootstrap_user_done:
                raise Unavailable("the bootstrap S3 user is being created") from None
            raise

    def cluster_map(self) -> tuple[ClusterMap, bool]:
        """Rule 4: the leader's map; a leaderless replica's own map with stale reads."""
        view = self.view
        if view.is_leader:
            return self.detector.cluster_map(time.monotonic()), False
        error = self._redirect(view, "cluster map")
        if self.options.allow_stale_reads and not isinstance(error, NotLeader):
            return self.detector.cluster_map(time.monotonic()), True
        raise error

    def heartbeat(self, node_id: str, capacity_bytes: int, used_bytes: int,
                  shard_count: int, payload_bytes: int = 0) -> None:
        # Every replica keeps this soft state (storage nodes beat to all of them), so a new
        # leader knows at once which nodes are up instead of seeing them all silent.
        self.detector.heartbeat(node_id, time.monotonic(), time.time_ns(),
                                capacity_bytes=capacity_bytes, used_bytes=used_bytes,
                                shard_count=shard_count, payload_bytes=payload_bytes)

    async def status(self) -> dict[str, Any]:
        """This replica's view; on the leader also each replica's progress."""
        store = self.store
        if store is None or self.driver is None:
            return {"node_id": self.node.id, "role": "starting", "leader": None, "term": None,
                    "commit_index": None, "last_applied": None}
        view = self.driver.view
        counts = await store.read(lambda state: state.counts())
        result: dict[str, Any] = {
            "node_id": self.node.id, "role": view.role, "leader": view.leader,
            "leader_address": self.address_of(view.leader) if view.leader else None,
            "term": view.term, "commit_index": view.commit, "last_applied": view.applied,
            "last_index": view.last_index, "first_index": view.first_index,
            "snapshot_index": view.snapshot_index, "voters": list(view.voters),
            "allow_stale_reads": self.options.allow_stale_reads,
            "repair_backlog": counts.repair_backlog,
            "degraded_segments": counts.degraded_segments, "objects": counts.objects,
            "segments": counts.segments, "gc_backlog": counts.gc_backlog,
        }
        if view.is_leader:
            reachable = self.reachable_voters()
            result["quorum_active"] = self.quorum_active()
            result["replicas"] = {
                peer: {"match_index": progress.match, "next_index": progress.next,
                       "state": progress.state, "reachable": peer in reachable,
                       "address": self.address_of(peer)}
                for peer, progress in view.progress.items()}
        return result

    async def change_membership(self, kind: str, node_id: str,
                                dry_run: bool = False) -> dict[str, Any]:
        """Rule 6: add or remove one voter; the new voters (or the plan, for a dry run)."""
        if kind not in ("add", "remove"):
            raise Invalid(f"membership change kind must be add or remove, not {kind!r}")
        view = self._leader_view("membership change")
        voters = set(view.voters)
        if kind == "add":
            if self.address_of(node_id, force_reload=True) is None:
                raise Invalid(f"{node_id} is not a meta node of cluster.toml")
            if node_id in voters:
                raise Conflict(f"{node_id} is already a voter")
            after = voters | {node_id}
        else:
            if node_id not in voters:
                raise Conflict(f"{node_id} is not a voter")
            after = voters - {node_id}
            if not after:
                raise Conflict("cannot remove the last voter")
        reachable = self.reachable_voters() & after
        plan = {"kind": kind, "node_id": node_id, "voters_before": sorted(voters),
                "voters_after": sorted(after), "reachable_after": sorted(reachable),
                "quorum_after": len(after) // 2 + 1}
        if 2 * len(reachable) <= len(after):
            raise Conflict(f"{kind} {node_id} refused: after it {len(reachable)} of "
                           f"{len(after)} voters would be reachable, fewer than a quorum "
                           f"({plan['quorum_after']})")
        if dry_run:
            return {**plan, "dry_run": True}
        assert self.driver is not None
        try:
            conf = await asyncio.wait_for(
                self.driver.propose_conf_change(ConfChange(kind=kind, node_id=node_id)),
                self.options.proposal_timeout_s)
        except TimeoutError:
            raise Unavailable(f"{kind} {node_id}: not committed within "
                              f"{self.options.proposal_timeout_s:g}s") from None
        return {**plan, "dry_run": False, "voters": list(conf.voters)}

    async def transfer_leader(self, to: str) -> dict[str, Any]:
        """Hand leadership to voter ``to``; waits (bounded) until it leads."""
        view = self._leader_view("leadership transfer")
        if to not in view.voters:
            raise Invalid(f"{to} is not a voter")
        if to == self.node.id:
            return {"leader": to, "term": view.term}
        assert self.driver is not None
        await self.driver.transfer_leadership(to)
        deadline = time.monotonic() + 2 * self.options.driver.election_timeout_s
        while time.monotonic() < deadline:
            current = self.driver.view
            if current.leader == to:
                return {"leader": to, "term": current.term}
            try:
                await asyncio.wait_for(self.driver.view_change(),
                                       max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                break
        raise Unavailable(f"leadership did not move to {to} in time (leader: "
                          f"{self.driver.view.leader})")

    # ---- the bootstrap S3 user -----------------------------------------------------------

    async def _bootstrap_user(self) -> None:
        """Create the ``[s3]`` user once, as client ``bootstrap``, from whichever replica
        leads (the session table makes a duplicate from two leaders apply once)."""
        config = self.config
        if not config.access_key or not config.secret_key:
            if config.access_key:
                log.warning("[s3] access_key is set without a secret_key: no user created")
            self.bootstrap_user_done = True
            return
        assert self.store is not None and self.driver is not None
        while True:
            try:
                view = self.view
                if view.is_leader:
                    await self._read_point("bootstrap user")
                    exists = await self.store.read(_user_exists, config.access_key)
                    if exists:
                        return
                    sequence = await self.store.read(
                        lambda state: state.session_last_sequence(BOOTSTRAP_CLIENT_ID)) + 1
                    envelope = CommandEnvelope(
                        client_id=BOOTSTRAP_CLIENT_ID, sequence=sequence,
                        command=PutUser(access_key=config.access_key,
                                        secret_key=config.secret_key, name="bootstrap"))
                    _index, outcome = await self.command(envelope)
                    outcome.unwrap()
                    log.info("created the bootstrap S3 user %s", config.access_key)
                    self.bootstrap_user_done = True
                    return
                if view.applied and await self.store.read(_user_exists, config.access_key):
                    self.bootstrap_user_done = True
                    return  # created by another replica (and replicated here)
            except BlobstoreError as error:
                log.debug("bootstrap user not created yet: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.driver.view_change(), 0.5)


BOOTSTRAP_CLIENT_ID = "bootstrap"


def _user_exists(state: StateMachine, access_key: str) -> bool:
    try:
        state.get_user(access_key)
    except UnknownAccessKey:
        return False
    return True
