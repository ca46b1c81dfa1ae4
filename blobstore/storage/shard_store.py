"""The only code that opens shard files: layout, durable writes, verified reads, quarantine.

Layout under ``data_dir``::

    shards/<2 hex>/<2 hex>/<shard id>   header (core/shard_format.py) + payload
    quarantine/<name>.<ns>              files that failed verification, kept for forensics
    index.lmdb/                         ShardIndex: what is held, for list/HEAD/stats
    store.lock                          flock: one process per data dir

The two fan-out levels are the first four hex digits of the segment id (uniform, since
segment ids are SHA-256), so no directory holds more than a few thousand files.

Rules:

1. A shard id is validated (``core.ids.parse_shard_id``) before it is used to build a path:
   ``../../x`` never reaches the file system.
2. ``put`` verifies the payload against the caller's xxh3 BEFORE writing anything
   (mismatch: Invalid, nothing written), refuses with InsufficientStorage when the write
   would leave less than the reserve free, writes header + payload with
   ``runtime.fsutil.write_atomic``, then records the row in the index.
3. The files are the truth and the index follows them: put writes the file then the row,
   delete removes the file then the row. A crash in between leaves a file without a row or
   a row without a file; ``reconcile`` (run by ``open``) repairs both, and reads of a row
   whose file is gone drop the row.
4. ``get`` reads the whole file and verifies the header checksum, the header's index, the
   length and the payload's xxh3 on EVERY read. A file that fails is moved to
   ``quarantine/``, dropped from the index, and Corrupt is raised: it is never served.
5. Mutations of one shard id (put, delete, quarantine, reconcile fixes) hold that id's lock
   stripe, so the file and its row change together. Concurrent puts of one id are safe
   anyway (both files have identical content by content addressing; the last rename wins);
   the lock keeps a delete or quarantine from interleaving with them. Quarantine moves a
   file only if it is still the very file (device, inode) that was read and found bad.
6. ``delete_if_older`` (the garbage collector's and inventory's delete) checks the file's
   mtime and removes it under the same lock stripe, so a shard rewritten after the cut-off
   (a re-upload of the same content-addressed segment, a repair) is never removed by a
   collector that decided on the old one.

Every method blocks (disk I/O, fsync): the app calls them from a bounded thread pool.
Any thread may call any method; LMDB serialises index writers.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from blobstore.core.errors import Corrupt, InsufficientStorage, Invalid, NoSuchShard, Unavailable
from blobstore.core.ids import parse_shard_id
from blobstore.core.shard_format import (
    HEADER_SIZE,
    ShardHeader,
    chunks_xxh3,
    pack_header,
    payload_xxh3,
    unpack_header,
    validate_xxh3_hex,
)
from blobstore.rpc.wire import ShardInfo
from blobstore.runtime.fsutil import disk_usage, fsync_dir, make_dirs, write_atomic
from blobstore.storage import reconcile as _reconcile
from blobstore.storage.reconcile import is_shard_id
from blobstore.storage.shard_index import GIB, ShardIndex

log = logging.getLogger(__name__)
MIB = 1024 * 1024
Buffer = bytes | bytearray | memoryview
_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


@dataclass(frozen=True, slots=True)
class ShardStoreSettings:
    """Every bound of the store, with its default (the simulator may shrink them)."""

    reserve_bytes: int = 64 * MIB  # writes are refused when less than this would stay free
    reserve_fraction: float = 0.01  # ... or less than this fraction of the capacity
    index_map_size_bytes: int = 4 * GIB  # LMDB map (sparse; ~25M shards)
    max_list_limit: int = 10_000  # largest page of list()
    temp_grace_s: float = 3600.0  # reconcile removes temp files older than this
    reconcile_batch: int = 256  # index changes per reconcile transaction
    lock_stripes: int = 256  # per-shard-id lock stripes


@dataclass(frozen=True, slots=True)
class StoreStats:
    shard_count: int
    payload_bytes: int  # sum of the payload lengths of the held shards
    capacity_bytes: int  # of the file system, as usable by this process
    used_bytes: int  # of the file system (all files, not only shards)


class ShardStore:
    """Shard files of one storage node. Use ``ShardStore.open``; call ``close`` when done."""

    def __init__(self, data_dir: str | os.PathLike[str],
                 settings: ShardStoreSettings | None = None) -> None:
        self.settings = settings or ShardStoreSettings()
        self.data_dir = Path(data_dir)
        self.shards_dir = self.data_dir / "shards"
        self.quarantine_dir = self.data_dir / "quarantine"
        make_dirs(self.shards_dir)
        make_dirs(self.quarantine_dir)
        self._lock_file = _lock_data_dir(self.data_dir / "store.lock")
        try:
            self.index = ShardIndex(self.data_dir / "index.lmdb",
                                    map_size_bytes=self.settings.index_map_size_bytes)
        except BaseException:
            os.close(self._lock_file)
            raise
        self._stripes = [threading.RLock() for _ in range(self.settings.lock_stripes)]
        self._closed = False

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str],
             settings: ShardStoreSettings | None = None) -> ShardStore:
        """Open the store and reconcile the index with the files before anyone uses it."""
        store = cls(data_dir, settings)
        try:
            report = store.reconcile(temp_grace_s=0.0)
        except BaseException:
            store.close()
            raise
        if report.changed:
            log.warning("reconciled shard index of %s: %s", data_dir, report)
        return store

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.index.close()
            os.close(self._lock_file)

    def __enter__(self) -> ShardStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- paths and locks ---------------------------------------------------------------

    def path_of(self, shard_id: str) -> Path:
        """The file of ``shard_id``; Invalid for anything that is not a shard id."""
        segment_id, _ = parse_shard_id(shard_id)
        return self.shards_dir / segment_id[:2] / segment_id[2:4] / shard_id

    def lock_for(self, name: str) -> threading.RLock:
        """The lock stripe of a shard id (or of any file name under ``shards/``)."""
        return self._stripes[self._stripe(name)]

    def locks_for(self, names: Iterable[str]) -> list[threading.RLock]:
        """The stripes of several names, once each, in the one global order (no deadlock)."""
        return [self._stripes[i] for i in sorted({self._stripe(name) for name in names})]

    def _stripe(self, name: str) -> int:
        return zlib.crc32(name.encode()) % len(self._stripes)

    # -- the shard API -------------------------------------------------------------------

    def put(self, shard_id: str, payload: Buffer | Sequence[Buffer], data_shards: int,
            parity_shards: int, segment_length: int, xxh3_hex: str) -> ShardInfo:
        """Store one shard durably; see rule 2. Returns its index row.

        ``payload`` may be the chunks it arrived in: they are hashed and written (one
        writev) as they are, never joined.
        """
        path = self.path_of(shard_id)
        _, index = parse_shard_id(shard_id)
        validate_xxh3_hex(xxh3_hex)
        chunks = [payload] if isinstance(payload, bytes | bytearray | memoryview) else payload
        payload_length = sum(len(chunk) for chunk in chunks)
        header = pack_header(data_shards=data_shards, parity_shards=parity_shards, index=index,
                             segment_length=segment_length, payload_length=payload_length,
                             payload_xxh3_hex=xxh3_hex)
        actual = chunks_xxh3(chunks)
        if actual != xxh3_hex:
            raise Invalid(f"shard {shard_id}: payload xxh3 is {actual}, not {xxh3_hex}")
        self._check_space(HEADER_SIZE + payload_length)
        with self.lock_for(shard_id):
            try:
                make_dirs(path.parent)
                write_atomic(path, [header, *chunks])
                mtime_ns = os.stat(path).st_mtime_ns
            except OSError as exc:
                raise _os_error(exc, f"writing shard {shard_id}") from exc
            info = ShardInfo(shard_id=shard_id, payload_length=payload_length, xxh3=xxh3_hex,
                             segment_length=segment_length, data_shards=data_shards,
                             parity_shards=parity_shards, mtime_ns=mtime_ns)
            self.index.put(info)
        return info

    def get(self, shard_id: str, start: int | None = None,
            end: int | None = None) -> tuple[ShardHeader, bytes]:
        """Read and verify the whole shard (rule 4), then return ``payload[start:end]``.

        A range is non-empty and starts inside the payload (``0 <= start < length``,
        ``end > start``); ``end`` is clamped to the length. Otherwise Invalid.
        """
        path = self.path_of(shard_id)
        _, index = parse_shard_id(shard_id)
        try:
            raw_header, payload, identity = _read_file(path)
        except FileNotFoundError:
            self.forget_if_missing(shard_id)
            raise NoSuchShard(f"shard {shard_id} is not on this node") from None
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise _os_error(exc, f"reading shard {shard_id}") from exc
            self.quarantine(shard_id, path, None, f"read error: {exc}")
            raise Corrupt(f"shard {shard_id}: read error, quarantined") from exc
        try:
            header = verify_shard_bytes(index, raw_header, payload)
        except Corrupt as exc:
            self.quarantine(shard_id, path, identity, exc.message)
            raise Corrupt(f"shard {shard_id}: {exc.message}; quarantined") from exc
        return header, _slice(payload, start, end)

    def head(self, shard_id: str) -> ShardInfo:
        """The index row of a shard whose file exists; NoSuchShard otherwise."""
        path = self.path_of(shard_id)
        info = self.index.get(shard_id)
        if info is None or not path.exists():
            if info is not None:
                self.forget_if_missing(shard_id)
            raise NoSuchShard(f"shard {shard_id} is not on this node")
        return info

    def delete(self, shard_id: str) -> bool:
        """Remove a shard (file, then row). Idempotent; True if a file was removed."""
        path = self.path_of(shard_id)
        with self.lock_for(shard_id):
            try:
                path.unlink()
                fsync_dir(path.parent)
                removed = True
            except FileNotFoundError:
                removed = False
            except OSError as exc:
                raise _os_error(exc, f"deleting shard {shard_id}") from exc
            self.index.drop(shard_id)
        return removed

    def delete_if_older(self, shard_id: str, older_than_ns: int) -> bool | None:
        """Remove a shard only if its file was written before ``older_than_ns`` (rule 6).

        True: removed; False: there was none; None: kept, the file is that new or newer.
        """
        path = self.path_of(shard_id)
        with self.lock_for(shard_id):
            try:
                if os.stat(path).st_mtime_ns >= older_than_ns:
                    return None
            except FileNotFoundError:
                self.index.drop(shard_id)
                return False
            except OSError as exc:
                raise _os_error(exc, f"checking shard {shard_id}") from exc
            return self.delete(shard_id)

    def list(self, after: str = "", limit: int = 1000) -> tuple[list[ShardInfo], str | None]:
        """Index rows with shard id > ``after`` in shard-id order, and the next ``after``."""
        if not 1 <= limit <= self.settings.max_list_limit:
            raise Invalid(f"limit must be 1..{self.settings.max_list_limit}, not {limit}")
        if not isinstance(after, str) or len(after) > 128 or not after.isascii():
            raise Invalid("after must be a shard id (ASCII, at most 128 characters)")
        rows = self.index.page(after, limit + 1)
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].shard_id
        return rows, None

    def stats(self) -> StoreStats:
        capacity_bytes, used_bytes = disk_usage(self.data_dir)
        return StoreStats(shard_count=self.index.count(), payload_bytes=self.index.payload_bytes(),
                          capacity_bytes=capacity_bytes, used_bytes=used_bytes)

    # -- repair of the index and quarantine ----------------------------------------------

    def reconcile(self, *, temp_grace_s: float | None = None) -> _reconcile.ReconcileReport:
        """Make the index match the files; see ``storage/reconcile.py``.

        ``temp_grace_s`` (default: the setting) spares younger temporary files, which may
        belong to puts in flight; ``open`` passes 0 because nothing is in flight yet.
        """
        grace = self.settings.temp_grace_s if temp_grace_s is None else temp_grace_s
        return _reconcile.reconcile(self, temp_grace_s=grace,
                                    batch_size=self.settings.reconcile_batch)

    def quarantine(self, name: str, path: Path, identity: tuple[int, int] | None,
                   reason: str) -> bool:
        """Move ``path`` to quarantine and drop ``name``'s row; False if it was replaced.

        With ``identity`` (st_dev, st_ino) the file is moved only if it is still that file:
        a put that replaced a bad file with a good one must not lose the good one.
        """
        with self.lock_for(name):
            try:
                status = os.stat(path)
                if identity is not None and (status.st_dev, status.st_ino) != identity:
                    return False
                target = self.quarantine_dir / f"{name}.{time.time_ns()}"
                os.rename(path, target)
            except FileNotFoundError:
                return False
            fsync_dir(path.parent)
            fsync_dir(self.quarantine_dir)
            if is_shard_id(name):
                self.index.drop(name)
        log.warning("quarantined %s to %s: %s", path, target, reason)
        return True

    def forget_if_missing(self, shard_id: str) -> None:
        """Drop the row of a shard whose file is gone (checked again under its lock)."""
        path = self.path_of(shard_id)
        if self.index.get(shard_id) is None:  # the common case: no write transaction
            return
        with self.lock_for(shard_id):
            if not path.exists():
                self.index.drop(shard_id)

    def _check_space(self, needed_bytes: int) -> None:
        capacity_bytes, used_bytes = disk_usage(self.data_dir)
        reserve = max(self.settings.reserve_bytes,
                      int(capacity_bytes * self.settings.reserve_fraction))
        free_bytes = capacity_bytes - used_bytes
        if free_bytes - needed_bytes < reserve:
            raise InsufficientStorage(
                f"{free_bytes} bytes free, {needed_bytes} needed, {reserve} kept in reserve")


def verify_shard_bytes(index: int, raw_header: bytes, payload: bytes) -> ShardHeader:
    """Check a shard file's parts against each other; Corrupt names the first failure."""
    header = unpack_header(raw_header)
    if header.index != index:
        raise Corrupt(f"header says index {header.index}, the file name says {index}")
    if header.payload_length != len(payload):
        raise Corrupt(f"payload is {len(payload)} bytes, header says {header.payload_length}")
    actual = payload_xxh3(payload)
    if actual != header.payload_xxh3:
        raise Corrupt(f"payload xxh3 is {actual}, header says {header.payload_xxh3}")
    return header


def _read_file(path: Path) -> tuple[bytes, bytes, tuple[int, int]]:
    """(header bytes, payload bytes, (st_dev, st_ino)) of one shard file."""
    with open(path, "rb", buffering=0) as file:
        status = os.fstat(file.fileno())
        raw_header = file.read(HEADER_SIZE) or b""
        payload = file.read() or b""
    return raw_header, payload, (status.st_dev, status.st_ino)


def _slice(payload: bytes, start: int | None, end: int | None) -> bytes:
    if start is None and end is None:
        return payload
    first = 0 if start is None else start
    if not 0 <= first < len(payload) or (end is not None and end <= first):
        raise Invalid(f"range [{start}, {end}) is not satisfiable: payload is {len(payload)} bytes")
    return payload[first:end]


def _os_error(exc: OSError, what: str) -> Exception:
    if exc.errno in _NO_SPACE_ERRNOS:
        return InsufficientStorage(f"{what}: {exc.strerror}")
    return Unavailable(f"{what}: {exc!r}")


def _lock_data_dir(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Unavailable(f"{path.parent} is in use by another shard store") from None
    return fd
