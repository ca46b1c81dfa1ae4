"""The propose path and the reads of a single meta replica.

``propose(envelope)`` is how every state change happens: the envelope is appended to the
command log and applied by the state machine in ONE LMDB write transaction, and the
environment is opened with ``sync=True``, so the commit is fsync'd before the caller gets
its answer. An answered command therefore survives a crash, and a crash before the commit
leaves neither the entry nor its effects (the client retries with the same sequence).

Proposals are serialised by an ``asyncio.Lock`` (one writer at a time, as LMDB requires) and
run in a small thread pool together with the reads, so blocking LMDB work and fsyncs never
stall the event loop. ``recover()`` applies any logged entry above ``last_applied``: none
with the single replica's one-transaction propose, but the rule that makes replay exact.

What Raft will change (a later issue): ``propose`` on the leader appends the entry to the
Raft log (``meta/raft_log.py``), fsyncs it (group commit: one fsync per batch), replicates it,
and waits until a majority has it (committed); the Ready loop then applies committed entries
in index order through the same ``StateMachine.apply``, which records ``last_applied`` and
the client session in the state's transaction. The log and the state then commit
separately, so ``recover()`` does real work after a crash; followers apply the same entries
and answer nothing but redirects; reads go through ReadIndex or a leader lease.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import lmdb

from blobstore.core.errors import InsufficientStorage
from blobstore.meta import schema
from blobstore.meta.commands import CommandEnvelope, Outcome, decode_envelope, encode_envelope
from blobstore.meta.log_store import LogStore
from blobstore.meta.state_machine import StateMachine

MAP_SIZE_BYTES = 64 * 1024**3  # address space only: LMDB's file grows as data is written
LOG_RETAIN_ENTRIES = 100_000
LMDB_THREADS = 4
MAX_READERS = 256
T = TypeVar("T")


def open_env(path: str | Path, map_size_bytes: int = MAP_SIZE_BYTES) -> lmdb.Environment:
    """Open (creating) the meta LMDB environment: a directory, durable commits."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return lmdb.open(str(path), map_size=map_size_bytes, max_dbs=schema.MAX_DBS,
                     max_readers=MAX_READERS, subdir=True, sync=True, metasync=True,
                     readahead=False)


class MetaService:
    """One meta replica: durable log + state machine, driven from asyncio."""

    def __init__(self, env: lmdb.Environment, *,
                 log_retain_entries: int = LOG_RETAIN_ENTRIES) -> None:
        self.env = env
        self.state = StateMachine(env)
        self.log = LogStore(self.state.dbs)
        self.log_retain_entries = log_retain_entries
        self._write_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=LMDB_THREADS,
                                            thread_name_prefix="meta-lmdb")

    @classmethod
    def open(cls, path: str | Path, *, map_size_bytes: int = MAP_SIZE_BYTES,
             log_retain_entries: int = LOG_RETAIN_ENTRIES) -> MetaService:
        return cls(open_env(path, map_size_bytes), log_retain_entries=log_retain_entries)

    async def propose(self, envelope: CommandEnvelope) -> tuple[int, Outcome]:
        """Log, apply and fsync one command; its log index and outcome."""
        async with self._write_lock:
            return await self.run(self.propose_sync, envelope)

    def propose_sync(self, envelope: CommandEnvelope) -> tuple[int, Outcome]:
        entry = encode_envelope(envelope)
        try:
            with self.env.begin(write=True) as txn:
                index = max(self.log.last_index(txn), self.state.last_applied_in(txn)) + 1
                self.log.append(txn, index, entry)
                outcome = self.state.apply_in(txn, index, envelope)
                self.log.compact(txn, self.log_retain_entries)
        except lmdb.MapFullError as exc:
            raise InsufficientStorage("the metadata database is full") from exc
        return index, outcome

    def recover(self) -> int:
        """Apply logged entries above last_applied (after a crash); how many."""
        applied = 0
        with self.env.begin(write=True) as txn:
            after = self.state.last_applied_in(txn)
            for index, entry in list(self.log.entries(txn, after)):
                self.state.apply_in(txn, index, decode_envelope(entry))
                applied += 1
        return applied

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """Run blocking LMDB work in the service's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    def close(self) -> None:
        """Wait for running LMDB work, then close the environment."""
        self._executor.shutdown(wait=True)
        self.env.close()
