"""The state machine's LMDB environment as the Raft driver and the readers share it.

``StateStore`` owns ``data_dir/meta.lmdb`` (layout: ``meta/schema.py``) and its
``StateMachine``. Three kinds of work touch it:

- reads (``read``), on a small thread pool, many at once;
- applying committed Raft entries (``apply_entries``), by the driver only, in ONE write
  transaction per Ready (the environment commits with fsync, so one fsync per batch);
- snapshots: ``take_snapshot`` copies the environment, ``restore`` replaces it.

Rules:

1. ``last_applied`` (in the same environment, same transaction as the effects) is the index
   of the last applied Raft entry of any kind: commands through ``StateMachine.apply_in``,
   NOOP and CONF_CHANGE entries through ``advance_in``. Entries at or below it are skipped,
   so a replay after a crash is exact.
2. Snapshot data is ``env.copy(compact=True)`` taken inside one read transaction, so it is
   exactly the state at the ``last_applied`` read in that transaction, while applies go on.
   The copy is read back whole into memory: fine up to a few hundred MiB of metadata (a
   snapshot travels as one message and is stored as one LMDB value); past that, snapshots
   should be streamed in chunks (not done).
3. ``restore(data)`` waits for every running read to finish and holds new ones back (a
   readers-writer gate), writes the bytes as ``meta.lmdb.restore/data.mdb`` (fsync'd),
   closes the environment, renames ``meta.lmdb`` -> ``meta.lmdb.old`` and
   ``meta.lmdb.restore`` -> ``meta.lmdb`` (fsync of the parent), deletes the old one and
   reopens. A crash between the two renames is repaired at the next open
   (``recover_swap``): the fsync'd restore directory is complete, so it wins.
4. A read holds the gate until its thread has finished (not merely until its awaiting task
   is cancelled), so the environment is never closed under a running read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgspec

from blobstore.core.errors import InsufficientStorage, Invalid
from blobstore.meta import schema
from blobstore.meta.commands import Outcome, decode_envelope
from blobstore.meta.state_machine import StateMachine
from blobstore.raft.messages import Entry, EntryKind

log = logging.getLogger(__name__)
MAP_SIZE_BYTES = 64 * 1024**3  # address space only: LMDB's file grows as data is written
LMDB_THREADS = 4
MAX_READERS = 256
T = TypeVar("T")


def open_env(path: str | Path, map_size_bytes: int = MAP_SIZE_BYTES) -> lmdb.Environment:
    """Open (creating) the meta LMDB environment: a directory, durable commits."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return lmdb.open(str(path), map_size=map_size_bytes, max_dbs=schema.MAX_DBS,
                     max_readers=MAX_READERS, subdir=True, sync=True, metasync=True,
                     readahead=False)


def recover_swap(path: Path) -> None:
    """Finish or undo a restore that a crash interrupted (rule 3)."""
    restoring = path.with_name(path.name + ".restore")
    old = path.with_name(path.name + ".old")
    if not path.exists():
        if (restoring / "data.mdb").exists():
            os.rename(restoring, path)
            log.warning("finished an interrupted snapshot restore of %s", path)
        elif old.exists():
            os.rename(old, path)
            log.warning("rolled back an interrupted snapshot restore of %s", path)
    shutil.rmtree(restoring, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Gate:
    """Readers-writer gate on the event loop: many readers, or one restore (rule 4)."""

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False
        self._changed = asyncio.Event()

    async def acquire_shared(self) -> None:
        while self._writer:
            self._changed.clear()
            await self._changed.wait()
        self._readers += 1

    def release_shared(self) -> None:
        self._readers -= 1
        self._changed.set()

    async def acquire_exclusive(self) -> None:
        while self._writer:
            self._changed.clear()
            await self._changed.wait()
        self._writer = True  # new readers wait from here on
        while self._readers:
            self._changed.clear()
            await self._changed.wait()

    def release_exclusive(self) -> None:
        self._writer = False
        self._changed.set()


class StateStore:
    """meta.lmdb + StateMachine: reads, batched applies, snapshots and restores."""

    def __init__(self, path: str | Path, *, map_size_bytes: int = MAP_SIZE_BYTES) -> None:
        self.path = Path(path)
        self.map_size_bytes = map_size_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        recover_swap(self.path)
        self.env = open_env(self.path, map_size_bytes)
        self.state = StateMachine(self.env)
        self._gate: _Gate | None = None
        self._executor = ThreadPoolExecutor(max_workers=LMDB_THREADS,
                                            thread_name_prefix="meta-lmdb")

    def _the_gate(self) -> _Gate:
        if self._gate is None:  # created on first use, inside the running loop
            self._gate = _Gate()
        return self._gate

    # ---- reads -------------------------------------------------------------------------

    async def read(self, function: Callable[..., T], *args: Any) -> T:
        """``function(state_machine, *args)`` on the pool, never across a restore."""
        gate = self._the_gate()
        await gate.acquire_shared()
        loop = asyncio.get_running_loop()
        try:
            future = self._executor.submit(function, self.state, *args)
        except BaseException:
            gate.release_shared()
            raise

        def done(_: concurrent.futures.Future[T]) -> None:
            try:
                loop.call_soon_threadsafe(gate.release_shared)
            except RuntimeError:  # the loop is closed: nothing waits on the gate any more
                pass

        future.add_done_callback(done)
        return await asyncio.wrap_future(future)

    def last_applied(self) -> int:
        return self.state.last_applied()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Blocking work on the pool that does not read the state (or holds its own gate)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    # ---- applying (the driver only) ----------------------------------------------------

    def apply_entries(self, entries: list[Entry]) -> list[tuple[Entry, Outcome | None]]:
        """Apply committed entries in one write transaction (rule 1); outcome per entry.

        The outcome is None for entries holding no command. A NORMAL entry whose bytes do
        not decode (never proposed by this code) is decided as Invalid, like any failure.
        """
        results: list[tuple[Entry, Outcome | None]] = []
        state = self.state
        try:
            with self.env.begin(write=True) as txn:
                last = state.last_applied_in(txn)
                for entry in entries:
                    if entry.index <= last:
                        continue
                    outcome: Outcome | None = None
                    if entry.kind == EntryKind.NORMAL and entry.data:
                        try:
                            envelope = decode_envelope(entry.data)
                        except (msgspec.DecodeError, msgspec.ValidationError):
                            state.advance_in(txn, entry.index)
                            outcome = Outcome.failure(Invalid("undecodable command entry"))
                        else:
                            outcome = state.apply_in(txn, entry.index, envelope)
                    else:
                        state.advance_in(txn, entry.index)
                    results.append((entry, outcome))
                    last = entry.index
        except lmdb.MapFullError as exc:
            raise InsufficientStorage("the metadata database is full") from exc
        return results

    # ---- snapshots ---------------------------------------------------------------------

    def snapshot_sync(self) -> tuple[int, bytes]:
        """(last_applied, a compacted copy of the environment at exactly that index)."""
        work = Path(tempfile.mkdtemp(prefix=self.path.name + ".snap-", dir=self.path.parent))
        try:
            with self.env.begin() as txn:
                index = self.state.last_applied_in(txn)
                self.env.copy(str(work), compact=True, txn=txn)
            return index, (work / "data.mdb").read_bytes()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def take_snapshot(self) -> tuple[int, bytes]:
        """``snapshot_sync`` on the pool, holding the gate (no restore meanwhile)."""
        return await self.read(lambda _state: self.snapshot_sync())

    async def restore(self, data: bytes) -> int:
        """Replace the whole state by snapshot bytes (rule 3); the new last_applied."""
        gate = self._the_gate()
        await gate.acquire_exclusive()
        try:
            return await asyncio.to_thread(self.restore_sync, data)
        finally:
            gate.release_exclusive()

    def restore_sync(self, data: bytes) -> int:
        """The blocking part of ``restore``; only with no read running (or at startup)."""
        restoring = self.path.with_name(self.path.name + ".restore")
        old = self.path.with_name(self.path.name + ".old")
        shutil.rmtree(restoring, ignore_errors=True)
        restoring.mkdir()
        if data:
            with open(restoring / "data.mdb", "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        else:  # the empty snapshot of a fresh log: an empty state
            open_env(restoring, self.map_size_bytes).close()
        _fsync_dir(restoring)
        self.env.close()
        shutil.rmtree(old, ignore_errors=True)
        os.rename(self.path, old)
        os.rename(restoring, self.path)
        _fsync_dir(self.path.parent)
        shutil.rmtree(old, ignore_errors=True)
        self.env = open_env(self.path, self.map_size_bytes)
        self.state = StateMachine(self.env)
        return self.state.last_applied()

    def close(self) -> None:
        """Wait for running LMDB work, then close the environment."""
        self._executor.shutdown(wait=True)
        self.env.close()
