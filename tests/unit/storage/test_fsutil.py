"""runtime.fsutil: atomic replace, no temp file left on failure, disk usage."""

import os

import pytest

from blobstore.runtime import fsutil


def test_write_atomic_writes_all_chunks_and_leaves_no_temp(tmp_path):
    target = tmp_path / "file"
    fsutil.write_atomic(target, [b"ab", memoryview(b"cd"), bytearray(b"ef"), b""])
    assert target.read_bytes() == b"abcdef"
    fsutil.write_atomic(str(target), [b"new"])
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["file"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "file"
    target.write_bytes(b"old")

    def chunks():
        yield b"partial"
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        fsutil.write_atomic(target, chunks())
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file"]


def test_write_atomic_into_a_missing_directory_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        fsutil.write_atomic(tmp_path / "missing" / "file", [b"x"])


def test_make_dirs_and_fsync_dir(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    fsutil.make_dirs(deep)
    fsutil.make_dirs(deep)  # idempotent
    assert deep.is_dir()
    fsutil.fsync_dir(deep)


def test_temp_names():
    assert fsutil.is_temp_name("abc.0.tmp.0123456789abcdef")
    assert not fsutil.is_temp_name("abc.0")


def test_disk_usage_is_what_this_process_can_use(tmp_path):
    capacity, used = fsutil.disk_usage(tmp_path)
    stat = os.statvfs(tmp_path)
    assert 0 < used < capacity
    free = stat.f_bavail * stat.f_frsize
    assert abs((capacity - used) - free) < 256 * 1024 * 1024  # other writers share the disk
