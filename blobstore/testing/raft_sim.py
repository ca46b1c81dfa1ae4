"""A seeded, deterministic simulator of a Raft group (etcd's rafttest, TigerBeetle's VOPR).

One ``random.Random(seed)`` drives everything: the network (drop, delay, duplicate,
reorder, partitions that heal), the disk (a crash loses whatever was not fsync'd, and may
keep a torn prefix of the unsynced writes), crashes and restarts, and the clients. The same
seed replays the same run; ``SimResult.trace_hash`` hashes one line per event to prove it.

Time: ``units_per_tick`` time units make one raft tick. Messages are delivered after a
random delay in units (so several round trips fit in a tick, and delays reorder them).

Each node is a ``RaftNode`` over a ``SimDisk`` plus a KV state machine (put/get). The driver
handles a Ready exactly as docs/raft.md says: write snapshot, entries, hard state; fsync;
send; restore + apply; release reads; advance. A crash between the writes and the fsync loses
the unsynced writes (a random prefix may survive) and the Ready's messages.

Clients (one outstanding operation each) send put(key, value) as a proposal and get(key)
through ReadIndex to the node they believe is the leader, and record invoke/complete events
with logical times in a history. An operation whose node crashed or that timed out is
recorded with an unknown outcome (``complete=None``).

Checkers, after every input (a tick or a message) to a node:
- election safety: at most one leader per term, ever;
- log matching: an entry (index, term) always has the same content and the same previous
  term, in every log (by induction: equal (index, term) means equal prefixes);
- leader completeness: an entry committed in term T (the term of the leader that committed
  it; the checker uses the term of the first node seen applying it, an upper bound that is
  exact for the committing leader, which applies first) is in the log of every leader of a
  term after T: checked when a leader is elected and when an entry becomes known committed;
- state machine safety: no two nodes apply different entries at one index;
- each node's own field invariants (``RaftNode.check_invariants``).
At the end, the network heals and crashed nodes restart; the run must converge (liveness):
a leader is elected within ``converge_ticks_max``, then clients run for half of
``heal_ticks`` and must complete at least one operation, every operation finishes, and every
voter applies the leader's commit index.
Then the history must be linearizable per key.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from blobstore.raft import (
    ConfChange,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    Message,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    RaftNode,
    Ready,
    Snapshot,
    Storage,
    decode_conf_change,
)
from blobstore.raft.errors import Compacted, Unavailable
from blobstore.testing.linearizability import Operation, check_history

NodeFactory = Callable[[RaftConfig, Storage, random.Random, int], RaftNode]


@dataclass(frozen=True)
class SimConfig:
    """Knobs of one simulation; the fault rates are per message or per tick."""

    node_count: int = 3
    ticks: int = 400  # safety phase: faults on
    heal_ticks: int = 150  # liveness phase (faults off) once a leader is elected
    converge_ticks_max: int = 1000  # liveness: a leader must be elected within this
    units_per_tick: int = 10
    drop_rate: float = 0.05
    duplicate_rate: float = 0.03
    max_delay_units: int = 8
    slow_rate: float = 0.03  # a message delayed by up to 3 ticks
    partition_rate: float = 0.02  # per tick, when the network is whole
    partition_ticks: tuple[int, int] = (10, 60)
    crash_rate: float = 0.015  # per tick per node
    down_ticks: tuple[int, int] = (3, 40)
    torn_write_rate: float = 0.5  # a crash that happens in the middle of a Ready
    transfer_rate: float = 0.01  # per tick: ask a node to transfer leadership
    conf_change_rate: float = 0.01  # per tick: the leader removes or re-adds a voter
    clients: int = 3
    keys: int = 2
    op_rate: float = 0.3  # per idle client per tick
    get_fraction: float = 0.4
    client_timeout_ticks: int = 30
    snapshot_every_entries: int = 25
    election_tick: int = 10
    heartbeat_tick: int = 2
    pre_vote: bool = True
    check_quorum: bool = True
    max_inflight_msgs: int = 4
    max_size_per_msg_bytes: int = 300
    trace_tail_lines: int = 60
    planted_bug: str | None = None  # "forget_vote" | "send_before_fsync"


PROFILES: dict[str, dict[str, object]] = {
    # the production knobs (pre-vote, check-quorum) under every fault
    "default": {},
    # elections race: short timeouts, long delays, frequent short crashes
    "storm": {"election_tick": 4, "heartbeat_tick": 1, "max_delay_units": 25,
              "crash_rate": 0.05, "down_ticks": (1, 4)},
    # a bad network: many drops, duplicates and late messages
    "lossy": {"drop_rate": 0.25, "duplicate_rate": 0.1, "slow_rate": 0.1},
    # rare paths every time: one entry per message, a window of one, constant compaction
    "tiny": {"max_inflight_msgs": 1, "max_size_per_msg_bytes": 1, "snapshot_every_entries": 4},
    # the protocol without its liveness helpers: disruptive candidates, stale leaders.
    # No membership changes: without pre-vote and the lease, a removed node that never
    # learns of its removal disrupts the group forever (thesis §4.2.3), a liveness failure
    # by design.
    "bare": {"pre_vote": False, "check_quorum": False, "partition_rate": 0.05,
             "partition_ticks": (5, 30), "conf_change_rate": 0.0},
}


def config_for_seed(seed: int, node_count: int, **overrides: object) -> SimConfig:
    """The seed picks a fault profile too, so a seed names a whole run."""
    names = sorted(PROFILES)
    profile = PROFILES[names[seed % len(names)]]
    return SimConfig(node_count=node_count, **{**profile, **overrides})  # type: ignore[arg-type]


class SimulationFailure(AssertionError):
    """A checker found a violation; the message names it and the trace tail."""


# -- the disk --


class SimDisk:
    """Stable storage with a page cache: writes are visible at once, durable after fsync."""

    def __init__(self, conf: ConfState) -> None:
        self.durable = MemoryStorage(conf)
        self.volatile = self.durable.clone()
        self.unsynced: list[tuple[str, object]] = []

    def write(self, kind: str, value: object) -> None:
        self._apply(self.volatile, kind, value)
        self.unsynced.append((kind, value))

    def fsync(self) -> None:
        for kind, value in self.unsynced:
            self._apply(self.durable, kind, value)
        self.unsynced = []

    def crash(self, rng: random.Random) -> None:
        """Lose the unsynced writes, except a random prefix of them (a torn write)."""
        keep = rng.randrange(len(self.unsynced) + 1) if self.unsynced else 0
        for kind, value in self.unsynced[:keep]:
            self._apply(self.durable, kind, value)
        self.unsynced = []
        self.volatile = self.durable.clone()

    @staticmethod
    def _apply(storage: MemoryStorage, kind: str, value: object) -> None:
        if kind == "snapshot":
            assert isinstance(value, Snapshot)
            storage.apply_snapshot(value)
        elif kind == "entries":
            assert isinstance(value, list)
            storage.append(value)
        else:
            assert isinstance(value, HardState)
            storage.set_hard_state(value)

    def snapshot_and_compact(self, index: int, conf: ConfState, data: bytes, keep: int) -> None:
        """The application's compaction: durable at once on both views (fsync'd file)."""
        for storage in (self.volatile, self.durable):
            storage.create_snapshot(index, conf, data)
            if index - keep >= storage.first_index():
                storage.compact(index - keep)


# -- the state machine and clients --


class Command(msgspec.Struct, frozen=True):
    """A put, as the entry data."""

    client: int
    seq: int
    key: str
    value: str


_encode = msgspec.json.encode
_decode_command = msgspec.json.Decoder(Command).decode
_decode_kv = msgspec.json.Decoder(dict[str, str]).decode


@dataclass
class PendingOp:
    """A client operation in flight."""

    client: int
    seq: int
    kind: str
    key: str
    value: str | None
    invoke: int
    node: str
    invoked_tick: int
    read_index: int | None = None


@dataclass
class SimNode:
    """A node: raft + disk + KV state, and the client operations it holds."""

    id: str
    disk: SimDisk
    raft: RaftNode | None = None
    kv: dict[str, str] = field(default_factory=dict)
    puts: dict[tuple[int, int], PendingOp] = field(default_factory=dict)
    reads: dict[bytes, PendingOp] = field(default_factory=dict)
    restart_tick: int = 0


@dataclass(frozen=True)
class SimResult:
    """What a run produced."""

    seed: int
    trace_hash: str
    history: list[Operation]
    stats: dict[str, int]


@dataclass
class Client:
    """A client with at most one operation in flight."""

    id: int
    seq: int = 0
    pending: PendingOp | None = None
    leader_hint: str | None = None


def _describe(m: Message) -> str:
    extra = f" e{m.entries[0].index}-{m.entries[-1].index}" if m.entries else ""
    if m.snapshot is not None:
        extra += f" snap{m.snapshot.meta.index}"
    reject = " reject" if m.reject else ""
    return (f"{m.src}->{m.dst} {m.type.name} t{m.term} i{m.index} lt{m.log_term} "
            f"c{m.commit}{extra}{reject}")


class Simulation:
    """One seeded run; ``run()`` returns a SimResult or raises SimulationFailure."""

    def __init__(self, seed: int, config: SimConfig | None = None,
                 node_factory: NodeFactory | None = None) -> None:
        self.seed = seed
        self.config = config or SimConfig()
        self.rng = random.Random(seed)
        self.node_factory: NodeFactory = node_factory or RaftNode
        self.ids = [f"n{i + 1}" for i in range(self.config.node_count)]
        conf = ConfState(voters=tuple(self.ids))
        self.nodes = {i: SimNode(id=i, disk=SimDisk(conf)) for i in self.ids}
        self.clients = [Client(id=c) for c in range(self.config.clients)]
        self.now = 0
        self.tick_no = 0
        self.faults = True
        self.clients_active = True
        self.queue: list[tuple[int, int, Message]] = []
        self.seq = 0
        self.partition: dict[str, int] | None = None
        self.heal_tick = 0
        self.crash_pending: set[str] = set()
        self.history: list[Operation] = []
        self.history_clock = 0
        self.hasher = hashlib.sha256()
        self.tail: deque[str] = deque(maxlen=self.config.trace_tail_lines)
        self.stats: dict[str, int] = {}
        self.leaders: dict[int, str] = {}
        self.leaders_checked: set[int] = set()
        self.entries_seen: dict[tuple[int, int], tuple[EntryKind, bytes, int]] = {}
        self.committed: dict[int, tuple[int, EntryKind, bytes]] = {}
        self.commit_term: dict[int, int] = {}
        for node_id in self.ids:
            self._start(self.nodes[node_id])

    # -- bookkeeping --

    def trace(self, line: str) -> None:
        self.hasher.update(line.encode())
        self.hasher.update(b"\n")
        self.tail.append(f"[{self.now:>6}] {line}")

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    def fail(self, what: str) -> None:
        tail = "\n".join(self.tail)
        raise SimulationFailure(f"seed {self.seed}: {what}\n--- last events ---\n{tail}")

    def _event_time(self) -> int:
        self.history_clock += 1
        return self.history_clock

    # -- the run --

    def run(self) -> SimResult:
        for _ in range(self.config.ticks):
            self._run_tick()
        self._heal()
        self.clients_active = False
        for _ in range(self.config.converge_ticks_max):
            if self._has_current_leader():
                break
            self._run_tick()
        else:
            self.fail(f"liveness: no leader {self.config.converge_ticks_max} ticks after healing")
        for i in range(self.config.heal_ticks):
            self.clients_active = i < self.config.heal_ticks // 2
            self._run_tick()
        self._check_liveness()
        result = check_history(self.history)
        if not result.ok:
            self.fail("history is not linearizable\n" + result.explain())
        return SimResult(seed=self.seed, trace_hash=self.hasher.hexdigest(),
                         history=list(self.history), stats=dict(sorted(self.stats.items())))

    def _run_tick(self) -> None:
        self.trace(f"tick {self.tick_no}")
        if self.faults:
            self._inject_faults()
        for node_id in self.ids:
            node = self.nodes[node_id]
            if node.raft is None:
                if node.restart_tick <= self.tick_no and node_id not in self.crash_pending:
                    self._start(node)
                continue
            node.raft.tick()
            self._process(node)
        if self.clients_active:
            for client in self.clients:
                self._client_act(client)
        end = (self.tick_no + 1) * self.config.units_per_tick
        while self.queue and self.queue[0][0] < end:
            self.now, _, message = heapq.heappop(self.queue)
            self._deliver(message)
        self.now = end
        for node_id in sorted(self.crash_pending):
            self._crash(self.nodes[node_id], torn=False)
        self._expire_client_ops()
        self.tick_no += 1

    def _has_current_leader(self) -> bool:
        rafts = [n.raft for n in self.nodes.values() if n.raft is not None]
        top = max(r.term for r in rafts)
        return any(r.role == "leader" and r.term == top for r in rafts)

    def _heal(self) -> None:
        self.trace("heal")
        self.faults = False
        self.partition = None
        for node in self.nodes.values():
            if node.raft is None:
                self._start(node)

    # -- faults --

    def _inject_faults(self) -> None:
        cfg, rng = self.config, self.rng
        if self.partition is not None and self.tick_no >= self.heal_tick:
            self.partition = None
            self.trace("partition healed")
        elif self.partition is None and rng.random() < cfg.partition_rate:
            sides = {i: rng.randrange(2) for i in self.ids}
            self.partition = sides
            self.heal_tick = self.tick_no + rng.randrange(*cfg.partition_ticks)
            self.count("partitions")
            self.trace(f"partition {sorted(sides.items())} until tick {self.heal_tick}")
        for node_id in self.ids:
            node = self.nodes[node_id]
            if node.raft is not None and rng.random() < cfg.crash_rate:
                self.crash_pending.add(node_id)
        if rng.random() < cfg.transfer_rate:
            self._transfer_leadership()
        if rng.random() < cfg.conf_change_rate:
            self._change_membership()

    def _alive_leader(self) -> SimNode | None:
        leaders = [n for n in self.nodes.values() if n.raft is not None and n.raft.role == "leader"]
        return max(leaders, key=lambda n: n.raft.term if n.raft else 0, default=None)

    def _transfer_leadership(self) -> None:
        alive = [i for i in self.ids if self.nodes[i].raft is not None]
        if not alive:
            return
        node = self.nodes[self.rng.choice(alive)]
        target = self.rng.choice(self.ids)
        assert node.raft is not None
        try:
            node.raft.transfer_leadership(target)
        except NotLeader:
            return
        self.count("transfers")
        self.trace(f"{node.id} asked to transfer leadership to {target}")
        self._process(node)

    def _change_membership(self) -> None:
        node = self._alive_leader()
        if node is None or node.raft is None:
            return
        voters = node.raft.voters
        absent = [i for i in self.ids if i not in voters]
        minimum = max(2, self.config.node_count - 2)
        if absent and (len(voters) <= minimum or self.rng.random() < 0.5):
            change = ConfChange(kind="add", node_id=self.rng.choice(absent))
        elif len(voters) > minimum:
            change = ConfChange(kind="remove", node_id=self.rng.choice(voters))
        else:
            return
        try:
            node.raft.propose_conf_change(change)
        except ProposalDropped as e:
            self.trace(f"{node.id} refused {change}: {e}")
            return
        self.count("conf_changes")
        self.trace(f"{node.id} proposes {change.kind} {change.node_id}")
        self._process(node)

    def _send(self, m: Message) -> None:
        cfg, rng = self.config, self.rng
        if self.faults and rng.random() < cfg.drop_rate:
            self.trace(f"drop {_describe(m)}")
            return
        copies = 2 if self.faults and rng.random() < cfg.duplicate_rate else 1
        for _ in range(copies):
            max_delay = cfg.max_delay_units if self.faults else cfg.units_per_tick // 2
            delay = 1 + rng.randrange(max_delay)
            if self.faults and rng.random() < cfg.slow_rate:
                delay += rng.randrange(3 * cfg.units_per_tick)
            self.seq += 1
            heapq.heappush(self.queue, (self.now + delay, self.seq, m))

    def _deliver(self, m: Message) -> None:
        node = self.nodes[m.dst]
        if node.raft is None:
            return
        if self.partition is not None and self.partition[m.src] != self.partition[m.dst]:
            return
        self.count("delivered")
        self.trace(f"deliver {_describe(m)}")
        node.raft.step(m)
        self._process(node)

    def _crash(self, node: SimNode, torn: bool) -> None:
        self.crash_pending.discard(node.id)
        lost = len(node.disk.unsynced)
        node.disk.crash(self.rng)
        self.count("crashes")
        if torn:
            self.count("torn_crashes")
        self.trace(f"crash {node.id} torn={torn} unsynced={lost}")
        node.raft = None
        node.kv = {}
        for op in list(node.puts.values()) + list(node.reads.values()):
            self._finish(op, None, known=False)
        node.puts.clear()
        node.reads.clear()
        node.restart_tick = self.tick_no + self.rng.randrange(*self.config.down_ticks)

    def _start(self, node: SimNode) -> None:
        storage = node.disk.volatile
        snapshot = storage.snapshot()
        node.kv = _decode_kv(snapshot.data) if snapshot.data else {}
        cfg = self.config
        config = RaftConfig(id=node.id, election_tick=cfg.election_tick,
                            heartbeat_tick=cfg.heartbeat_tick,
                            pre_vote=cfg.pre_vote, check_quorum=cfg.check_quorum,
                            max_inflight_msgs=cfg.max_inflight_msgs,
                            max_size_per_msg_bytes=cfg.max_size_per_msg_bytes)
        rng = random.Random(self.rng.randrange(1 << 32))
        node.raft = self.node_factory(config, storage, rng, snapshot.meta.index)
        self.trace(f"start {node.id} snapshot={snapshot.meta.index} "
                   f"last={storage.last_index()} hs={storage.hard_state()}")
        self._process(node)

    # -- the application: handling a Ready --

    def _process(self, node: SimNode) -> None:
        while node.raft is not None and node.raft.has_ready():
            if not self._handle_ready(node, node.raft.ready()):
                return
            self._check_node(node)

    def _handle_ready(self, node: SimNode, rd: Ready) -> bool:
        """docs/raft.md's order; returns False if the node crashed in the middle."""
        raft, disk = node.raft, node.disk
        assert raft is not None
        bug = self.config.planted_bug
        if rd.snapshot is not None:
            disk.write("snapshot", rd.snapshot)
            self._check_snapshot(rd.snapshot)
        if rd.entries:
            disk.write("entries", list(rd.entries))
            self._check_log_matching(node, rd.entries)
        if rd.hard_state is not None:
            hs = rd.hard_state
            if bug == "forget_vote":
                hs = HardState(term=hs.term, vote=None, commit=hs.commit)
            disk.write("hard_state", hs)
        if bug == "send_before_fsync":
            for m in rd.messages:
                self._send(m)
        if node.id in self.crash_pending and self.rng.random() < self.config.torn_write_rate:
            self._crash(node, torn=True)
            return False
        disk.fsync()
        if bug != "send_before_fsync":
            for m in rd.messages:
                self._send(m)
        if rd.snapshot is not None:
            node.kv = _decode_kv(rd.snapshot.data) if rd.snapshot.data else {}
            self.count("snapshots_installed")
            self.trace(f"{node.id} restored snapshot {rd.snapshot.meta.index}")
        for entry in rd.committed_entries:
            self._apply(node, entry)
        for rs in rd.read_states:
            op = node.reads.get(rs.context)
            if op is not None:
                op.read_index = rs.index
        raft.advance(rd)
        self._serve_reads(node)
        self._maybe_compact(node)
        return True

    def _apply(self, node: SimNode, entry: Entry) -> None:
        self._check_state_machine_safety(node, entry)
        assert node.raft is not None
        if entry.kind is EntryKind.CONF_CHANGE:
            conf = node.raft.apply_conf_change(decode_conf_change(entry.data))
            self.trace(f"{node.id} applied conf change at {entry.index}: {conf.voters}")
            return
        if entry.kind is not EntryKind.NORMAL:
            return
        command = _decode_command(entry.data)
        node.kv[command.key] = command.value
        op = node.puts.pop((command.client, command.seq), None)
        if op is not None:
            self._finish(op, command.value, known=True)

    def _serve_reads(self, node: SimNode) -> None:
        assert node.raft is not None
        applied = node.raft.log.applied
        for context, op in list(node.reads.items()):
            if op.read_index is not None and op.read_index <= applied:
                del node.reads[context]
                self._finish(op, node.kv.get(op.key), known=True)

    def _maybe_compact(self, node: SimNode) -> None:
        assert node.raft is not None
        applied = node.raft.log.applied
        disk = node.disk
        if applied - disk.volatile.snapshot().meta.index < self.config.snapshot_every_entries:
            return
        keep = self.rng.randrange(5)
        conf = ConfState(voters=node.raft.voters)
        disk.snapshot_and_compact(applied, conf, _encode(node.kv), keep)
        self.count("compactions")
        self.trace(f"{node.id} compacted to {applied - keep} (snapshot {applied})")

    # -- clients --

    def _client_act(self, client: Client) -> None:
        cfg, rng = self.config, self.rng
        if client.pending is not None or rng.random() >= cfg.op_rate:
            return
        alive = [i for i in self.ids if self.nodes[i].raft is not None]
        if not alive:
            return
        target = client.leader_hint
        if target not in alive or rng.random() < 0.2:
            target = rng.choice(alive)
        node = self.nodes[target]
        raft = node.raft
        assert raft is not None
        client.seq += 1
        key = f"k{rng.randrange(cfg.keys)}"
        is_get = rng.random() < cfg.get_fraction
        value = None if is_get else f"c{client.id}.{client.seq}"
        op = PendingOp(client=client.id, seq=client.seq, kind="get" if is_get else "put",
                       key=key, value=value, invoke=self._event_time(), node=target,
                       invoked_tick=self.tick_no)
        try:
            if op.value is None:
                context = f"c{client.id}.{client.seq}".encode()
                raft.read_index(context)
                node.reads[context] = op
            else:
                command = Command(client=client.id, seq=client.seq, key=key, value=op.value)
                raft.propose(_encode(command))
                node.puts[(client.id, client.seq)] = op
        except NotLeader as e:
            client.leader_hint = e.leader
            self.trace(f"client {client.id} {op.kind} {key} at {target}: not leader")
            return
        except ProposalDropped:
            self.trace(f"client {client.id} {op.kind} {key} at {target}: dropped")
            return
        client.pending = op
        self.trace(f"client {client.id} invokes {op.kind} {key} {value} at {target}")
        self._process(node)

    def _finish(self, op: PendingOp, value: str | None, known: bool) -> None:
        client = self.clients[op.client]
        if client.pending is not op:
            return
        client.pending = None
        if known:
            client.leader_hint = op.node
            self.count(f"{op.kind}s_completed")
            if not self.faults:
                self.count("healed_ops")
            self.trace(f"client {op.client} {op.kind} {op.key} -> {value}")
            self.history.append(Operation(client=op.client, kind=op.kind,  # type: ignore[arg-type]
                                          key=op.key, value=value, invoke=op.invoke,
                                          complete=self._event_time()))
        elif op.kind == "put":
            self.count("puts_unknown")
            self.trace(f"client {op.client} put {op.key} {op.value}: outcome unknown")
            self.history.append(Operation(client=op.client, kind="put", key=op.key,
                                          value=op.value, invoke=op.invoke, complete=None))

    def _expire_client_ops(self) -> None:
        for client in self.clients:
            op = client.pending
            if op is None or self.tick_no - op.invoked_tick < self.config.client_timeout_ticks:
                continue
            node = self.nodes[op.node]
            node.puts.pop((op.client, op.seq), None)
            node.reads.pop(f"c{op.client}.{op.seq}".encode(), None)
            self._finish(op, None, known=False)

    # -- checkers --

    def _check_node(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None
        try:
            raft.check_invariants()
        except AssertionError as e:
            self.fail(f"{node.id} field invariant: {e}")
        if raft.role != "leader":
            return
        first = self.leaders.setdefault(raft.term, node.id)
        if first != node.id:
            self.fail(f"election safety: {first} and {node.id} both leaders of term {raft.term}")
        if raft.term not in self.leaders_checked:
            self.leaders_checked.add(raft.term)
            self.count("elections")
            self.trace(f"{node.id} is leader of term {raft.term}")
            for index, (term, _kind, _data) in self.committed.items():
                if self.commit_term[index] < raft.term:
                    self._check_leader_has(node, index, term)

    def _check_leader_has(self, node: SimNode, index: int, term: int) -> None:
        """Leader completeness for one committed entry."""
        assert node.raft is not None
        log = node.raft.log
        if index < log.first_index():
            return  # covered by the leader's snapshot
        try:
            ours = log.term(index)
        except (Compacted, Unavailable):
            ours = -1
        if ours != term:
            self.fail(f"leader completeness: leader {node.id} of term {node.raft.term} has "
                      f"term {ours} at index {index}, committed with term {term}")

    def _check_log_matching(self, node: SimNode, entries: list[Entry]) -> None:
        try:
            prev_term = node.disk.volatile.term(entries[0].index - 1)
        except (Compacted, Unavailable):
            prev_term = -1
        for entry in entries:
            seen = self.entries_seen.setdefault((entry.index, entry.term),
                                                (entry.kind, entry.data, prev_term))
            if seen[:2] != (entry.kind, entry.data) or (prev_term >= 0 and seen[2] >= 0
                                                         and seen[2] != prev_term):
                self.fail(f"log matching: {node.id} has a different entry at index "
                          f"{entry.index} term {entry.term} (or a different history before it)")
            prev_term = entry.term

    def _check_snapshot(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        known = self.committed.get(meta.index)
        if known is not None and known[0] != meta.term:
            self.fail(f"snapshot at {meta.index} has term {meta.term}, committed {known[0]}")

    def _check_state_machine_safety(self, node: SimNode, entry: Entry) -> None:
        record = (entry.term, entry.kind, entry.data)
        known = self.committed.setdefault(entry.index, record)
        if known != record:
            self.fail(f"state machine safety: {node.id} applies term {entry.term} at index "
                      f"{entry.index}, another node applied term {known[0]}")
        assert node.raft is not None
        if known is record:  # newly known committed: every later leader must hold it
            self.commit_term[entry.index] = node.raft.term
            for other in self.nodes.values():
                if (other.raft is not None and other.raft.role == "leader"
                        and other.raft.term > node.raft.term):
                    self._check_leader_has(other, entry.index, entry.term)
        else:
            self.commit_term[entry.index] = min(self.commit_term[entry.index], node.raft.term)

    def _check_liveness(self) -> None:
        stuck = [c.id for c in self.clients if c.pending is not None]
        if stuck:
            self.fail(f"liveness: clients {stuck} still have operations pending")
        rafts = [n.raft for n in self.nodes.values() if n.raft is not None]
        leaders = [r for r in rafts if r.role == "leader"]
        top = max(r.term for r in rafts)
        if not leaders or leaders[0].term != top:
            self.fail(f"liveness: no leader at term {top} after healing")
        commit = leaders[0].log.committed
        voters = leaders[0].voters
        behind = {r.id: r.log.applied for r in rafts
                  if r.id in voters and r.log.applied != commit}
        if behind:
            self.fail(f"liveness: nodes {behind} have not applied the leader's commit {commit}")
        if not self.stats.get("healed_ops"):
            self.fail("liveness: no client operation completed after healing")


def run_seed(seed: int, config: SimConfig | None = None,
             node_factory: NodeFactory | None = None) -> SimResult:
    """Run one seed (raises SimulationFailure naming the seed on a violation)."""
    return Simulation(seed, config, node_factory).run()
