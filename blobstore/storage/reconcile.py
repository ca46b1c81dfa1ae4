"""Make a shard store's index agree with its files (after a crash, a lost index, a bad disk).

The files are the truth (``shard_store.py`` rule 3). Reconcile walks both sides in shard-id
order and merges them, like a sorted-merge join, so it costs one directory listing per
fan-out directory plus one index page per ``4 * batch_size`` rows, and opens only files
that the index lacks:

- a file without a row: its header is read and checked (checksum, index, file length);
  good -> a row is added, bad -> the file is quarantined. Payloads are not re-hashed here:
  a complete file exists only after its fsync and rename, and every read and the scrubber
  verify the payload anyway;
- a row without a file: the row is dropped;
- a ``*.tmp.*`` file (a write that crashed before its rename) is deleted when older than
  ``temp_grace_s``; any other name that is not a shard id of its directory is quarantined.

Order of the walk: fan-out directories are two lowercase hex digits, visited in name
order, and the names in a leaf are sorted, so files come out in shard-id order, which is
LMDB's byte order of the ASCII keys. Changes are applied in batches, each under the lock
stripes of its shard ids (taken in stripe order, so never a deadlock with the one stripe a
put or delete holds), after re-checking the file under the lock: reconcile is safe to run
while the store serves requests.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from blobstore.core.errors import Corrupt, Invalid
from blobstore.core.ids import parse_shard_id
from blobstore.core.shard_format import HEADER_SIZE, unpack_header
from blobstore.rpc.wire import ShardInfo
from blobstore.runtime.fsutil import is_temp_name

if TYPE_CHECKING:
    from blobstore.storage.shard_index import ShardIndex
    from blobstore.storage.shard_store import ShardStore

_HEX2 = frozenset(f"{i:02x}" for i in range(256))
_FILE_ONLY = "file_only"
_ROW_ONLY = "row_only"


@dataclass(slots=True)
class ReconcileReport:
    files_seen: int = 0
    added: int = 0
    dropped: int = 0
    quarantined: int = 0
    temp_removed: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.dropped or self.quarantined or self.temp_removed)

    def __str__(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def reconcile(store: ShardStore, *, temp_grace_s: float, batch_size: int) -> ReconcileReport:
    report = ReconcileReport()
    files = _walk_files(store, temp_grace_s, report)
    rows = _walk_rows(store.index, page_size=4 * batch_size)
    file_only: list[str] = []
    row_only: list[str] = []
    for kind, shard_id in diff_sorted(files, rows):
        (file_only if kind == _FILE_ONLY else row_only).append(shard_id)
        if len(file_only) + len(row_only) >= batch_size:
            _apply(store, file_only, row_only, report)
            file_only, row_only = [], []
    _apply(store, file_only, row_only, report)
    return report


def diff_sorted(files: Iterator[str], rows: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Merge two ascending id streams; yield the ids found on one side only."""
    file_id, row_id = next(files, None), next(rows, None)
    while file_id is not None or row_id is not None:
        if row_id is None or (file_id is not None and file_id < row_id):
            yield _FILE_ONLY, file_id  # type: ignore[misc]
            file_id = next(files, None)
        elif file_id is None or row_id < file_id:
            yield _ROW_ONLY, row_id
            row_id = next(rows, None)
        else:
            file_id, row_id = next(files, None), next(rows, None)


def _walk_files(store: ShardStore, temp_grace_s: float, report: ReconcileReport) -> Iterator[str]:
    now_s = time.time()
    for top in _iter_sorted_dirs(store.shards_dir, _HEX2):
        for leaf in _iter_sorted_dirs(top, _HEX2):
            prefix = top.name + leaf.name
            with os.scandir(leaf) as entries:
                names = sorted(e.name for e in entries if e.is_file(follow_symlinks=False))
            for name in names:
                if is_temp_name(name):
                    _maybe_remove_temp(leaf / name, now_s, temp_grace_s, report)
                elif is_shard_id(name) and name.startswith(prefix):
                    report.files_seen += 1
                    yield name
                elif store.quarantine(name, leaf / name, None, "not a shard file name here"):
                    report.quarantined += 1


def is_shard_id(name: str) -> bool:
    try:
        parse_shard_id(name)
    except Invalid:
        return False
    return True


def _iter_sorted_dirs(path: Path, names_ok: frozenset[str]) -> Iterator[Path]:
    """Sub-directories of ``path`` whose names are in ``names_ok``, in name order."""
    with os.scandir(path) as entries:
        names = sorted(e.name for e in entries if e.name in names_ok and e.is_dir())
    for name in names:
        yield path / name


def _walk_rows(index: ShardIndex, page_size: int) -> Iterator[str]:
    after: str | None = None
    while True:
        ids = index.ids_after(after, page_size)
        yield from ids
        if len(ids) < page_size:
            return
        after = ids[-1]


def _maybe_remove_temp(path: os.PathLike[str], now_s: float, grace_s: float,
                       report: ReconcileReport) -> None:
    with contextlib.suppress(FileNotFoundError):
        if now_s - os.stat(path).st_mtime >= grace_s:
            os.unlink(path)
            report.temp_removed += 1


def _apply(store: ShardStore, file_only: list[str], row_only: list[str],
           report: ReconcileReport) -> None:
    if not file_only and not row_only:
        return
    with contextlib.ExitStack() as stack:
        for lock in store.locks_for([*file_only, *row_only]):
            stack.enter_context(lock)
        puts = []
        for shard_id in file_only:
            info = _info_from_file(store, shard_id, report)
            if info is not None and store.index.get(shard_id) is None:
                puts.append(info)
        drops = [s for s in row_only if not store.path_of(s).exists()]
        report.dropped += store.index.apply(puts=puts, drops=drops)
        report.added += len(puts)


def _info_from_file(store: ShardStore, shard_id: str, report: ReconcileReport) -> ShardInfo | None:
    """The row for a file the index lacks, or None (gone, or bad and now quarantined)."""
    path = store.path_of(shard_id)
    _, index = parse_shard_id(shard_id)
    try:
        with open(path, "rb", buffering=0) as file:
            status = os.fstat(file.fileno())
            raw_header = file.read(HEADER_SIZE) or b""
    except FileNotFoundError:
        return None
    try:
        header = unpack_header(raw_header)
        if header.index != index:
            raise Corrupt(f"header says index {header.index}")
        if status.st_size != HEADER_SIZE + header.payload_length:
            raise Corrupt(f"file is {status.st_size} bytes, header says "
                          f"{HEADER_SIZE} + {header.payload_length}")
    except Corrupt as exc:
        if store.quarantine(shard_id, path, (status.st_dev, status.st_ino), exc.message):
            report.quarantined += 1
        return None
    return ShardInfo(shard_id=shard_id, payload_length=header.payload_length,
                     xxh3=header.payload_xxh3, segment_length=header.segment_length,
                     data_shards=header.data_shards, parity_shards=header.parity_shards,
                     mtime_ns=status.st_mtime_ns)
