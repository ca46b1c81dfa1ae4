"""Background healing work of the meta leader: declaring storage nodes down.

The failure detector (``meta/failure_detector.py``) judges each storage node from its
heartbeats: up, suspect, down after ``down_after_s``. This task turns a DOWN verdict into
durable state: it proposes ``mark_node_down`` (``meta/heal.py``), which clears the node
from every live segment's placement and queues those segments for repair, most
endangered first; the storage nodes' repairers then rebuild the shards elsewhere.

Rules:

1. Only the leader declares nodes down, and a NEW leader waits one ``down_after_s`` from
   the moment it saw itself leader before it declares anyone down: its detector may not
   have heard every node yet (a process that just started has heard no one).
2. A node is marked once per outage: the walk completes (all pages), then the node is
   remembered in the heal board until it is seen UP again. A restarted meta process
   forgets and marks again: the command is idempotent.
3. The proposal goes through the ordinary command path (``POST /v1/command`` via a
   MetaClient, this node's address first), so it is replicated and applied like any
   command, on whatever replication the meta service has.
4. Never dies of an error: a failed round is logged (at most once a minute) and retried
   at the next tick. Ticks are ``interval_s`` apart.

A second task runs on EVERY replica: ``MemberSync`` copies the replicated node table
(``meta/membership.py``) from the local state into the replica's failure detector every
``MEMBER_SYNC_S``, so the cluster map shows nodes added at run time, draining and removed
ones, and a detector made anew (a new leader's) has the table within one period.

Start them from the meta app's ``cleanup_ctx`` AFTER the service context (so they stop first):

    app.cleanup_ctx.append(heal_tasks.context_for_app(config, node))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.errors import BlobstoreError
from blobstore.core.records import ClusterMap, NodeRole, NodeState
from blobstore.meta.heal_board import HEAL_BOARD, HealBoard
from blobstore.meta.membership import Member
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.heal_client import HealClient
from blobstore.rpc.meta_client import MetaClient

log = logging.getLogger(__name__)
INTERVAL_S = 1.0
WARN_EVERY_S = 60.0
MEMBER_SYNC_S = 0.25


class DownMarker:
    """One tick: compare the detector's verdicts with what is marked; mark the new downs."""

    name = "down-marker"

    def __init__(self, heal: HealClient, board: HealBoard, *, down_after_s: float,
                 is_leader: Callable[[], bool], cluster_map: Callable[[], ClusterMap],
                 monotonic: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.heal = heal
        self.board = board
        self.down_after_s = down_after_s
        self.is_leader = is_leader
        self.cluster_map = cluster_map
        self.monotonic = monotonic
        self.wall_ns = wall_ns
        self.leader_since_s: float | None = None
        self._last_warning_s: float | None = None

    async def run(self, interval_s: float = INTERVAL_S) -> None:
        while True:
            try:
                await self.run_once()
            except BlobstoreError as exc:
                self._maybe_warn(f"marking nodes down failed: {exc}")
            await asyncio.sleep(interval_s)

    async def run_once(self) -> list[str]:
        """Mark the nodes that are newly down; returns them."""
        if not self.is_leader():
            self.leader_since_s = None
            self.board.pending_down = []
            return []
        now_s = self.monotonic()
        if self.leader_since_s is None:
            self.leader_since_s = now_s
        storage = [view for view in self.cluster_map().nodes if view.role == NodeRole.STORAGE]
        for view in storage:
            if view.state == NodeState.UP:
                self.board.marked_down.pop(view.id, None)
        down = sorted(view.id for view in storage if view.state == NodeState.DOWN)
        self.board.down = down
        self.board.pending_down = [node for node in down if node not in self.board.marked_down]
        if now_s - self.leader_since_s < self.down_after_s:
            return []  # rule 1: a new leader waits one down_after
        marked = []
        for node_id in list(self.board.pending_down):
            cleared = await self.heal.mark_node_down(node_id, self.wall_ns())
            log.warning("storage node %s is down: %d segments queued for repair", node_id,
                        cleared)
            self.board.marked_down[node_id] = self.wall_ns()
            self.board.pending_down.remove(node_id)
            marked.append(node_id)
        return marked

    def _maybe_warn(self, message: str) -> None:
        now_s = self.monotonic()
        if self._last_warning_s is None or now_s - self._last_warning_s >= WARN_EVERY_S:
            self._last_warning_s = now_s
            log.warning(message)


def down_marker_context(config: ClusterConfig, node: NodeConfig,
                        is_leader: Callable[[web.Application], bool],
                        cluster_map: Callable[[web.Application], ClusterMap], *,
                        interval_s: float = INTERVAL_S,
                        ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry that runs the DownMarker while the app runs.

    ``is_leader(app)``: whether this replica leads now; ``cluster_map(app)``: its failure
    detector's map. Needs ``add_heal_routes(app)`` (the heal board) at app creation.
    """

    async def context(app: web.Application) -> AsyncIterator[None]:
        metas = [n.address for n in config.by_role(NodeRole.META)]
        addresses = [node.address, *(a for a in metas if a != node.address)]
        session = new_session(limit_per_host=2)
        meta = MetaClient(RpcClient(session, config.secret), addresses,
                          client_id=f"{node.id}-down-marker-{time.time_ns()}")
        board = app.get(HEAL_BOARD) or HealBoard()  # add_heal_routes shares it with status
        marker = DownMarker(HealClient(meta), board, down_after_s=config.down_after_s,
                            is_leader=lambda: is_leader(app),
                            cluster_map=lambda: cluster_map(app))
        task = asyncio.create_task(marker.run(interval_s), name=f"{node.id}-down-marker")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await session.close()

    return context


class MemberSync:
    """Copy the node table into the failure detector (module docstring)."""

    def __init__(self, read_members: Callable[[], Awaitable[list[Member] | None]],
                 apply: Callable[[list[Member]], None]) -> None:
        self.read_members = read_members
        self.apply = apply

    async def run_once(self) -> None:
        members = await self.read_members()
        if members is not None:
            self.apply(members)

    async def run(self, interval_s: float = MEMBER_SYNC_S) -> None:
        while True:
            try:
                await self.run_once()
            except (BlobstoreError, OSError) as exc:  # the store is being restored, say
                log.debug("member sync: %s", exc)
            await asyncio.sleep(interval_s)


def member_sync_context(read_members: Callable[[web.Application],
                                               Awaitable[list[Member] | None]],
                        apply: Callable[[web.Application, list[Member]], None], *,
                        interval_s: float = MEMBER_SYNC_S,
                        ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        sync = MemberSync(lambda: read_members(app), lambda members: apply(app, members))
        task = asyncio.create_task(sync.run(interval_s), name="member-sync")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context


def context_for_app(config: ClusterConfig,
                    node: NodeConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """``down_marker_context`` and ``member_sync_context`` for ``meta/app.py``: its RUNTIME
    says who leads and holds the replica's failure detector and state."""
    from blobstore.meta import app as meta_app  # here: app.py imports this module
    from blobstore.meta.membership import list_members

    def is_leader(app: web.Application) -> bool:
        return bool(app[meta_app.RUNTIME].is_leader())

    def cluster_map(app: web.Application) -> ClusterMap:
        return app[meta_app.RUNTIME].detector.cluster_map(time.monotonic())

    async def read_members(app: web.Application) -> list[Member] | None:
        service = app[meta_app.RUNTIME].service
        store = service.store if service is not None else None
        if store is None:
            return None
        return await store.read(lambda state: list_members(state.env, state.dbs))

    def apply(app: web.Application, members: list[Member]) -> None:
        app[meta_app.RUNTIME].detector.set_members(members, time.monotonic())

    marker = down_marker_context(config, node, is_leader, cluster_map)
    sync = member_sync_context(read_members, apply)

    async def both(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(contextlib.asynccontextmanager(sync)(app))
            await stack.enter_async_context(contextlib.asynccontextmanager(marker)(app))
            yield

    return both
