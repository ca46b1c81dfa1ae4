"""Wiring of a storage node's healing workers: repairer, inventory, garbage collector.

``healing_context`` is one ``cleanup_ctx`` entry of the storage app, after the store
context (so the workers stop before the store closes). It opens one pooled HTTP session
for the three workers, one MetaClient (a client id unique to this process lifetime, as
apply-once sessions require), a StorageClient and a cached cluster map, builds the workers
from cluster.toml's knobs and runs each as one task until shutdown.

Start-up delays: every first pass waits one interval (a node that just started should not
judge anything before the cluster map settles): ``repair_poll_interval_s`` for the
repairer, whose pass is a cheap look at the backlog while there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from blobstore.config import ClusterConfig
from blobstore.core.records import NodeRole
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.heal_client import HealClient
from blobstore.rpc.heal_wire import WorkerStatus
from blobstore.rpc.meta_client import MetaClient
from blobstore.rpc.storage_client import StorageClient
from blobstore.runtime.workers import PeriodicWorker
from blobstore.storage.cluster_view import ClusterView
from blobstore.storage.collector import Collector, CollectorSettings
from blobstore.storage.inventory import Inventory, InventorySettings
from blobstore.storage.repairer import LocalShards, Repairer, RepairSettings

if TYPE_CHECKING:
    from blobstore.storage.app import StorageState

CONNECTIONS_PER_PEER = 16


def repair_settings(config: ClusterConfig) -> RepairSettings:
    return RepairSettings(concurrency=config.repair_concurrency, lease_s=config.repair_lease_s,
                          retry_s=config.repair_retry_s,
                          poll_interval_s=config.repair_poll_interval_s,
                          rate_bytes_per_s=config.repair_rate_bytes_per_s)


def inventory_settings(config: ClusterConfig) -> InventorySettings:
    return InventorySettings(interval_s=config.effective_inventory_interval_s,
                             grace_s=config.gc_grace_s)


def collector_settings(config: ClusterConfig) -> CollectorSettings:
    return CollectorSettings(interval_s=config.effective_gc_interval_s,
                             grace_s=config.gc_grace_s,
                             margin_s=config.effective_gc_delete_margin_s,
                             lease_s=max(60.0, 2 * config.effective_gc_interval_s))


async def healing_context(config: ClusterConfig, state: StorageState,
                          app: web.Application) -> AsyncIterator[None]:
    node_id = state.node.id
    session = new_session(limit_per_host=CONNECTIONS_PER_PEER)
    rpc = RpcClient(session, config.secret)
    meta = MetaClient(rpc, [n.address for n in config.by_role(NodeRole.META)],
                      client_id=f"{node_id}-heal-{time.time_ns()}")
    storage = StorageClient(rpc)
    view = ClusterView(meta)
    store = state.open_store

    async def local_get(sid: str) -> bytes:
        _header, payload = await state.call(store.get, sid)
        return payload  # type: ignore[no-any-return]

    async def local_put(sid: str, payload: bytes, data_shards: int, parity_shards: int,
                        segment_length: int, xxh3_hex: str) -> object:
        return await state.call(store.put, sid, payload, data_shards, parity_shards,
                                segment_length, xxh3_hex)

    async def report(segment_id: str, index: int, reason: str) -> object:
        return await meta.report_bad_shard(segment_id, index, node_id, reason)

    state.repairer = Repairer(node_id, meta, storage, view, state.call, repair_settings(config),
                              local=LocalShards(get=local_get, put=local_put))
    state.inventory = Inventory(node_id, store, state.call, HealClient(meta), report,
                                inventory_settings(config))
    state.collector = Collector(node_id, HealClient(meta), storage, view,
                                collector_settings(config))
    tasks = [asyncio.create_task(state.repairer.run(), name=f"{node_id}-repairer"),
             asyncio.create_task(state.inventory.run(), name=f"{node_id}-inventory"),
             asyncio.create_task(state.collector.run(), name=f"{node_id}-gc")]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        state.repairer = state.inventory = state.collector = None
        await session.close()


def worker_status(worker: PeriodicWorker) -> WorkerStatus:
    snapshot = worker.status()
    return WorkerStatus(name=snapshot.name, running=snapshot.running,
                        passes_completed=snapshot.passes_completed,
                        last_pass_completed_s=snapshot.last_pass_completed_s,
                        last_error=snapshot.last_error, counters=snapshot.counters)
