"""Durable file writes, written once: every caller that must not lose or tear a file uses these.

Rules (the order is the point; each step is what makes the next one safe):

1. ``write_atomic`` writes the new content to ``<path>.tmp.<16 random hex>`` in the SAME
   directory (a rename is only atomic within one file system), created with ``O_EXCL`` so
   two writers of the same path never share a temporary file;
2. fsyncs the temporary file, so its bytes are on disk before any name points at them;
3. renames it over ``path`` (atomic: a reader sees the old file or the new one, never a
   mix; when two writers race, the last rename wins whole);
4. fsyncs the directory, so the rename itself survives a power loss.

A crash before step 3 leaves only a ``*.tmp.*`` file, which owners of a directory may delete
on start (``is_temp_name``); a crash after step 3 leaves the complete new file.
``make_dirs`` creates missing directories and fsyncs each parent, for the same reason as
step 4: a file in a directory whose own entry was lost is lost too.

All functions block; async callers run them in a thread (``asyncio.to_thread`` or a bounded
executor). ``disk_usage`` reports what THIS process can use (see its docstring).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterable

from blobstore.runtime import metrics

TEMP_MARKER = ".tmp."
Buffer = bytes | bytearray | memoryview
StrPath = str | os.PathLike[str]


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file that ``write_atomic`` left behind."""
    return TEMP_MARKER in name


def write_atomic(path: StrPath, chunks: Iterable[Buffer], *, mode: int = 0o644) -> None:
    """Replace ``path`` with the concatenation of ``chunks``, durably and atomically.

    Raises OSError (ENOSPC, EDQUOT, EIO, ...) with the temporary file removed; ``path`` is
    then unchanged.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    temp = f"{path}{TEMP_MARKER}{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            _writev_all(fd, chunks)
            _timed_fsync(fd, "file")
            # The bytes are on disk now: drop them from the page cache (as Swift's object
            # server does). Kept, gigabytes of written shards crowd memory and the kernel
            # makes later writers reclaim it: storage CPU per 64 MiB PUT rose 307 -> 379 ->
            # 503 ms over three 12 s runs; with this it stays at ~295 ms.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(directory)


def _writev_all(fd: int, chunks: Iterable[Buffer]) -> None:
    """Write every chunk, in order, in as few writev calls as the kernel allows.

    A shard arrives as tens of socket-sized chunks; writing them as they are (rather than
    joining them first) saves a copy of every byte.
    """
    views = [memoryview(chunk).cast("B") for chunk in chunks if len(chunk)]
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first:first + _IOV_MAX])
        while written and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def fsync_dir(path: StrPath) -> None:
    """fsync a directory, making the creation, rename or removal of its entries durable."""
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _timed_fsync(fd, "dir")
    finally:
        os.close(fd)


def make_dirs(path: StrPath) -> None:
    """``mkdir -p`` that fsyncs the parent of every directory it creates."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        make_dirs(parent)
    with contextlib.suppress(FileExistsError):  # a concurrent make_dirs won the race
        os.mkdir(path)
    fsync_dir(parent)


def disk_usage(path: StrPath) -> tuple[int, int]:
    """``(capacity_bytes, used_bytes)`` of the file system holding ``path``.

    Capacity counts only the blocks an unprivileged process may use (blocks reserved for
    root are left out), so ``capacity_bytes - used_bytes`` is exactly the space left for
    our writes: the number a reserve check and the placement of new shards need.
    """
    stat = os.statvfs(os.fspath(path))
    used_bytes = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    return used_bytes + stat.f_bavail * stat.f_frsize, used_bytes


def _timed_fsync(fd: int, kind: str) -> None:
    started = time.perf_counter()
    os.fsync(fd)
    metrics.observe_fsync(time.perf_counter() - started, kind)
