"""What ``cp``, ``ls``, ``rm`` and ``rb --force`` do, over an :class:`S3Client`.

Rules:
- Downloads to a local file go to a temporary file in the same directory, renamed over the
  target only once every byte has arrived and matched its ETag: a failed download never
  leaves a partial file under the target's name.
- A recursive download refuses keys that would escape the target directory (``..``, absolute
  paths, empty components) and skips directory markers (keys ending in ``/``).
- A recursive upload walks the directory in sorted order and follows no symlinked
  directories; the key is the destination prefix + the path relative to the source, with
  ``/`` separators.
- Nothing here prints: each finished transfer is passed to ``report`` and the byte count of
  each running one to the progress callback the caller's ``ProgressFactory`` gives.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from blobstore.client.locations import (
    LocalLocation,
    Location,
    S3Location,
    UsageProblem,
    check_copy,
    require_object,
)
from blobstore.client.s3 import ObjectEntry, Progress, S3Client

ProgressFactory = Callable[[str, "int | None"], AbstractContextManager["Progress | None"]]
"""(label, total bytes or None) -> a context giving the progress callback of one transfer."""

Report = Callable[[str], None]


def no_progress(label: str, total: int | None) -> AbstractContextManager[Progress | None]:
    return contextlib.nullcontext(None)


@dataclass(frozen=True, slots=True)
class Streams:
    """The process's binary stdin and stdout (replaceable in tests)."""

    stdin: BinaryIO
    stdout: BinaryIO

    @classmethod
    def system(cls) -> Streams:
        return cls(sys.stdin.buffer, sys.stdout.buffer)


def copy(client: S3Client, source: Location, destination: Location, recursive: bool,
         report: Report, progress: ProgressFactory = no_progress,
         streams: Streams | None = None) -> int:
    """Copy between local paths and S3; returns how many objects or files were copied."""
    check_copy(source, destination, recursive)
    streams = streams or Streams.system()
    if isinstance(source, LocalLocation):
        assert isinstance(destination, S3Location)
        if source.is_std_stream:
            with progress(f"- -> {destination}", None) as callback:
                client.put_stream(destination.bucket, destination.key, streams.stdin, callback)
            return 1
        return _upload(client, Path(source.path), destination, recursive, report, progress)
    if isinstance(destination, LocalLocation):
        if destination.is_std_stream:
            client.get_object(source.bucket, source.key, streams.stdout)
            streams.stdout.flush()
            return 1
        return _download(client, source, destination.path, recursive, report, progress)
    return _copy_remote(client, source, destination, recursive, report)


def _upload(client: S3Client, root: Path, destination: S3Location, recursive: bool,
            report: Report, progress: ProgressFactory) -> int:
    if not root.exists():
        raise UsageProblem(f"{root}: no such file or directory")
    if not recursive:
        if root.is_dir():
            raise UsageProblem(f"{root} is a directory (use -r)")
        target = destination.child(root.name) if destination.is_prefix else destination
        _upload_one(client, root, target, report, progress)
        return 1
    if not root.is_dir():
        raise UsageProblem(f"{root} is not a directory")
    prefix = destination.as_directory()
    count = 0
    for path in _walk_files(root):
        relative = path.relative_to(root).as_posix()
        _upload_one(client, path, S3Location(destination.bucket, prefix + relative), report,
                    progress)
        count += 1
    return count


def _upload_one(client: S3Client, path: Path, target: S3Location, report: Report,
                progress: ProgressFactory) -> None:
    with progress(f"{path} -> {target}", path.stat().st_size) as callback:
        client.put_file(target.bucket, target.key, path, callback)
    report(f"upload: {path} to {target}")


def _walk_files(root: Path) -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory) / name
            if path.is_file():
                yield path


def _download(client: S3Client, source: S3Location, target_text: str, recursive: bool,
              report: Report, progress: ProgressFactory) -> int:
    target = Path(target_text)
    if not recursive:
        require_object(source)
        if target.is_dir() or target_text.endswith(os.sep):
            target = target / PurePosixPath(source.key).name
        _download_one(client, source, target, report, progress)
        return 1
    prefix = source.as_directory()
    count = 0
    for entry in client.iter_objects(source.bucket, prefix):
        if entry.key.endswith("/"):
            continue
        path = target.joinpath(*_safe_parts(entry.key[len(prefix):], entry.key))
        _download_one(client, S3Location(source.bucket, entry.key), path, report, progress,
                      entry.size)
        count += 1
    return count


def _safe_parts(relative: str, key: str) -> list[str]:
    parts = relative.split("/")
    if not relative or any(part in ("", ".", "..") for part in parts) or "\0" in relative:
        raise UsageProblem(f"key {key!r} cannot be stored as a local file safely")
    return parts


def _download_one(client: S3Client, source: S3Location, target: Path, report: Report,
                  progress: ProgressFactory, size: int | None = None) -> None:
    if size is None:
        size = client.head_object(source.bucket, source.key).size  # for the progress bar
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(temporary, "wb") as sink, progress(f"{source} -> {target}", size) as callback:
            client.get_object(source.bucket, source.key, sink, callback)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    report(f"download: {source} to {target}")


def _copy_remote(client: S3Client, source: S3Location, destination: S3Location,
                 recursive: bool, report: Report) -> int:
    if not recursive:
        target = (destination.child(PurePosixPath(source.key).name) if destination.is_prefix
                  else destination)
        client.copy_object(source.bucket, source.key, target.bucket, target.key)
        report(f"copy: {source} to {target}")
        return 1
    prefix, target_prefix = source.as_directory(), destination.as_directory()
    count = 0
    for entry in client.iter_objects(source.bucket, prefix):
        target = S3Location(destination.bucket, target_prefix + entry.key[len(prefix):])
        client.copy_object(source.bucket, entry.key, target.bucket, target.key)
        report(f"copy: {S3Location(source.bucket, entry.key)} to {target}")
        count += 1
    return count


def remove(client: S3Client, location: S3Location, recursive: bool, report: Report) -> int:
    """Delete one object, or (recursive) the key itself and everything under ``key/``."""
    if not recursive:
        require_object(location)
        client.delete_object(location.bucket, location.key)
        report(f"delete: {location}")
        return 1
    directory = location.as_directory()
    doomed = [entry.key for entry in client.iter_objects(location.bucket, location.key)
              if entry.key == location.key or entry.key.startswith(directory)]
    for key in doomed:
        client.delete_object(location.bucket, key)
        report(f"delete: {S3Location(location.bucket, key)}")
    return len(doomed)


def remove_bucket(client: S3Client, bucket: str, force: bool, report: Report) -> None:
    """Delete a bucket; with ``force``, delete every object in it first."""
    if force:
        remove(client, S3Location(bucket, ""), True, report)
    client.delete_bucket(bucket)
    report(f"remove_bucket: {bucket}")


@dataclass(frozen=True, slots=True)
class ListedPrefix:
    prefix: str


def list_location(client: S3Client, location: S3Location,
                  recursive: bool) -> Iterator[ObjectEntry | ListedPrefix]:
    """A bucket's objects under the key as prefix: with ``/`` as delimiter unless recursive."""
    delimiter = "" if recursive else "/"
    for page in client.iter_pages(location.bucket, location.key, delimiter):
        for prefix in page.common_prefixes:
            yield ListedPrefix(prefix)
        yield from page.entries
