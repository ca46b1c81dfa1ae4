"""What one gateway process shares between requests: clients, the thread pool for
hashing and coding, and cached views of meta (cluster map, S3 secrets).

The cluster map is refreshed in the background every ``MAP_REFRESH_S``; placement uses the
cached map, so a write never waits on meta to learn where shards go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from blobstore.config import MIB, ClusterConfig, NodeConfig
from blobstore.core.ec import EcPolicy
from blobstore.core.errors import BlobstoreError, Unavailable
from blobstore.core.placement import Candidate
from blobstore.core.records import ClusterMap, NodeRole, NodeState
from blobstore.gateway.admission import Admission
from blobstore.rpc.client import RpcClient
from blobstore.rpc.meta_client import MetaClient
from blobstore.rpc.storage_client import StorageClient

log = logging.getLogger(__name__)
MAP_REFRESH_S = 1.0
SECRET_CACHE_TTL_S = 60.0
# Budgets in bytes of segment data, so that they hold whatever the cluster's segment size
# (at 8 MiB: 2 segments per upload, 6 per gateway, 1 read ahead; at 4 MiB: 3, 12, 2). A
# segment in flight costs ~1.5 times its size (data and parity).
SEGMENT_BYTES_IN_FLIGHT_PER_REQUEST = 12 * MIB
# Across all requests: four uploads' worth keeps both cores busy; more in flight only adds
# memory and contention (64 MiB PUT at c=32 ran ~8% slower than at c=4 without this bound).
SEGMENT_BYTES_IN_FLIGHT_PER_GATEWAY = 48 * MIB
READ_AHEAD_BYTES = 8 * MIB


def segments_within(budget_bytes: int, segment_size_bytes: int, at_least: int) -> int:
    """How many segments a byte budget allows, and never fewer than ``at_least``."""
    return max(at_least, budget_bytes // segment_size_bytes)


@dataclass
class GatewayState:
    config: ClusterConfig
    node: NodeConfig
    rpc: RpcClient
    meta: MetaClient
    storage: StorageClient
    executor: ThreadPoolExecutor
    policy: EcPolicy
    cluster_map: ClusterMap | None = None
    map_fetched_at: float = 0.0
    secrets: dict[str, tuple[str, float]] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    admission: Admission = field(default_factory=Admission)
    segment_slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.segment_slots = asyncio.Semaphore(segments_within(
            SEGMENT_BYTES_IN_FLIGHT_PER_GATEWAY, self.config.segment_size_bytes, 2))

    async def run_in_pool(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def current_map(self) -> ClusterMap:
        if self.cluster_map is None or time.monotonic() - self.map_fetched_at > 5 * MAP_REFRESH_S:
            await self.refresh_map()
        assert self.cluster_map is not None
        return self.cluster_map

    async def refresh_map(self) -> None:
        self.cluster_map = await self.meta.cluster_map()
        self.map_fetched_at = time.monotonic()

    async def refresh_map_forever(self) -> None:
        while True:
            try:
                await self.refresh_map()
            except BlobstoreError as exc:
                log.warning("cluster map refresh failed: %s", exc)
            await asyncio.sleep(MAP_REFRESH_S)

    async def address_of(self, node_id: str) -> str:
        for node in (await self.current_map()).nodes:
            if node.id == node_id:
                return node.address
        raise Unavailable(f"node {node_id} is not in the cluster map")

    async def write_candidates(self) -> list[Candidate]:
        """Storage nodes a new shard may go to: those up now; suspect ones too when too few
        are up to place every shard (a failed put moves to a spare anyway, and a node that
        merely missed a heartbeat or two is usually fine)."""
        nodes = [n for n in (await self.current_map()).nodes if n.role == NodeRole.STORAGE]
        chosen = [n for n in nodes if n.state == NodeState.UP]
        if len(chosen) < self.policy.total_shards:
            chosen += [n for n in nodes if n.state == NodeState.SUSPECT]
        return [Candidate(n.id, n.zone, n.weight) for n in chosen]

    async def secret_for(self, access_key: str) -> str:
        cached = self.secrets.get(access_key)
        if cached and time.monotonic() - cached[1] < SECRET_CACHE_TTL_S:
            return cached[0]
        secret = await self.meta.get_user(access_key)
        self.secrets[access_key] = (secret, time.monotonic())
        return secret

    def spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        """Fire-and-forget work owned by the app (reports to meta); cancelled at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
