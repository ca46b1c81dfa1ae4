"""A tiny synchronous network of RaftNodes over MemoryStorage for the paper-rule tests.

``Cluster.stabilize()`` handles every Ready exactly as docs/raft.md says (persist, send,
apply, advance) and delivers messages until nothing moves; links can be cut and messages
filtered, so a test can build any interleaving by hand.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from blobstore.raft import (
    ConfState,
    Entry,
    EntryKind,
    MemoryStorage,
    Message,
    RaftConfig,
    RaftNode,
    ReadState,
    decode_conf_change,
)

Filter = Callable[[Message], bool]


class Cluster:
    """Nodes, their storages and what they applied; a network that can cut links."""

    def __init__(self, ids: list[str], seed: int = 0, node_class: type[RaftNode] = RaftNode,
                 genesis: list[str] | None = None, **config: object) -> None:
        self.ids = list(ids)
        self.genesis = ConfState(voters=tuple(sorted(genesis or ids)))
        self.config = config
        self.node_class = node_class
        self.rng = random.Random(seed)
        self.storages: dict[str, MemoryStorage] = {}
        self.nodes: dict[str, RaftNode] = {}
        self.applied: dict[str, list[Entry]] = {}
        self.read_states: dict[str, list[ReadState]] = {}
        self.queue: list[Message] = []
        self.cut: set[frozenset[str]] = set()
        self.drop: Filter | None = None
        self.sent: list[Message] = []
        self.down: set[str] = set()
        for i in ids:
            self.add_node(i)

    def add_node(self, node_id: str) -> RaftNode:
        self.storages[node_id] = MemoryStorage(self.genesis)
        self.applied[node_id] = []
        self.read_states[node_id] = []
        return self._boot(node_id, applied=0)

    def _boot(self, node_id: str, applied: int) -> RaftNode:
        if node_id not in self.ids:
            self.ids.append(node_id)
        config = RaftConfig(id=node_id, **self.config)  # type: ignore[arg-type]
        node = self.node_class(config, self.storages[node_id],
                               random.Random(self.rng.randrange(1 << 30)), applied)
        self.nodes[node_id] = node
        return node

    def restart(self, node_id: str) -> RaftNode:
        """A crash after a fully handled Ready loses nothing: rebuild from storage."""
        self.down.discard(node_id)
        snapshot_index = self.storages[node_id].snapshot().meta.index
        self.applied[node_id] = [e for e in self.applied[node_id] if e.index <= snapshot_index]
        return self._boot(node_id, applied=snapshot_index)

    # -- network --

    def isolate(self, node_id: str) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut.add(frozenset((node_id, other)))

    def heal(self) -> None:
        self.cut.clear()
        self.drop = None

    def _blocked(self, m: Message) -> bool:
        if m.dst in self.down or m.src in self.down:
            return True
        if frozenset((m.src, m.dst)) in self.cut:
            return True
        return self.drop is not None and self.drop(m)

    # -- driving --

    def handle_ready(self, node_id: str) -> bool:
        node = self.nodes[node_id]
        if node_id in self.down or not node.has_ready():
            return False
        rd = node.ready()
        storage = self.storages[node_id]
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        self.queue.extend(rd.messages)
        self.sent.extend(rd.messages)
        if rd.snapshot is not None:
            self.applied[node_id] = []
        for entry in rd.committed_entries:
            self.applied[node_id].append(entry)
            if entry.kind is EntryKind.CONF_CHANGE:
                node.apply_conf_change(decode_conf_change(entry.data))
        self.read_states[node_id].extend(rd.read_states)
        node.advance(rd)
        return True

    def deliver_one_round(self) -> bool:
        moved = False
        for node_id in list(self.ids):
            while self.handle_ready(node_id):
                moved = True
        queue, self.queue = self.queue, []
        for m in queue:
            moved = True
            if not self._blocked(m) and m.dst in self.nodes:
                self.nodes[m.dst].step(m)
        return moved

    def stabilize(self, max_rounds: int = 200) -> None:
        for _ in range(max_rounds):
            if not self.deliver_one_round():
                return
        raise AssertionError("the cluster did not stabilize")

    def tick(self, n: int = 1, only: list[str] | None = None) -> None:
        for _ in range(n):
            for node_id in only or self.ids:
                if node_id not in self.down:
                    self.nodes[node_id].tick()
            self.stabilize()

    def elect(self, node_id: str) -> RaftNode:
        self.nodes[node_id].campaign()
        self.stabilize()
        assert self.nodes[node_id].role == "leader", self.nodes[node_id].status()
        return self.nodes[node_id]

    def leader(self) -> str | None:
        leaders = [i for i in self.ids if i not in self.down and self.nodes[i].role == "leader"]
        return max(leaders, key=lambda i: self.nodes[i].term, default=None)

    def propose(self, node_id: str, data: bytes) -> int:
        index = self.nodes[node_id].propose(data)
        self.stabilize()
        return index

    def data_applied(self, node_id: str) -> list[bytes]:
        return [e.data for e in self.applied[node_id] if e.kind is EntryKind.NORMAL]


@pytest.fixture
def make_cluster() -> Callable[..., Cluster]:
    return Cluster
