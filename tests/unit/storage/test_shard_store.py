"""ShardStore on a real directory: durable put, verified get, quarantine, reconcile, paging."""

import errno
import os
import random
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from blobstore.core.errors import Corrupt, InsufficientStorage, Invalid, NoSuchShard, Unavailable
from blobstore.core.shard_format import HEADER_SIZE, pack_header, payload_xxh3, unpack_header
from blobstore.runtime import fsutil
from blobstore.storage import shard_store as shard_store_module
from blobstore.storage.shard_store import ShardStore, ShardStoreSettings

SEGMENT = "5e" * 32
SEED = 20240611


def shard(index: int, segment: str = SEGMENT) -> str:
    return f"{segment}.{index}"


def payload_for(shard_id: str, size: int = 1000) -> bytes:
    return random.Random(f"{SEED}:{shard_id}").randbytes(size)


def put(store: ShardStore, shard_id: str, payload: bytes | None = None):
    payload = payload_for(shard_id) if payload is None else payload
    return store.put(shard_id, payload, 4, 2, 4 * len(payload), payload_xxh3(payload))


@pytest.fixture
def store(tmp_path):
    with ShardStore.open(tmp_path / "node") as opened:
        yield opened


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_put_get_head_delete(store):
    sid = shard(3)
    data = payload_for(sid)
    info = put(store, sid, data)
    assert (info.shard_id, info.payload_length, info.xxh3) == (sid, 1000, payload_xxh3(data))
    assert (info.data_shards, info.parity_shards, info.segment_length) == (4, 2, 4000)
    header, got = store.get(sid)
    assert got == data
    assert (header.index, header.payload_length, header.payload_xxh3) == (3, 1000, info.xxh3)
    assert store.head(sid) == info
    path = store.path_of(sid)
    assert path == store.data_dir / "shards" / "5e" / "5e" / sid
    assert path.stat().st_size == HEADER_SIZE + len(data)
    assert store.delete(sid) is True
    assert store.delete(sid) is False  # idempotent
    for call in (store.get, store.head):
        with pytest.raises(NoSuchShard):
            call(sid)
    assert store.list() == ([], None)


def test_ranges_are_sliced_after_the_whole_file_is_verified(store):
    sid = shard(0)
    data = payload_for(sid)
    put(store, sid, data)
    assert store.get(sid, 10, 20)[1] == data[10:20]
    assert store.get(sid, start=990)[1] == data[990:]
    assert store.get(sid, end=5)[1] == data[:5]
    assert store.get(sid, 995, 10_000)[1] == data[995:]  # end is clamped
    for start, end in [(1000, None), (-1, 5), (5, 5), (6, 5), (None, 0)]:
        with pytest.raises(Invalid):
            store.get(sid, start, end)


def test_empty_payload_round_trips(store):
    put(store, shard(1), b"")
    assert store.get(shard(1))[1] == b""


def test_wrong_xxh3_is_refused_and_nothing_is_written(store):
    sid = shard(2)
    data = payload_for(sid)
    with pytest.raises(Invalid, match="xxh3"):
        store.put(sid, data, 4, 2, 4000, payload_xxh3(data + b"!"))
    with pytest.raises(Invalid):
        store.put(sid, data, 4, 2, 4000, "not-hex")
    assert files_under(store.shards_dir) == []
    assert store.list() == ([], None)


@pytest.mark.parametrize("data_shards, parity_shards", [(0, 2), (2, 1), (256, 0), (4, -1)])
def test_impossible_policies_are_refused(store, data_shards, parity_shards):
    data = b"abc"
    with pytest.raises(Invalid):
        store.put(shard(3), data, data_shards, parity_shards, 12, payload_xxh3(data))


BAD_IDS = ["../../x", "..", "", f"{SEGMENT}", f"{SEGMENT}.", f"{SEGMENT}.256", f"{SEGMENT}.01",
           f"{SEGMENT}.-1", f"{SEGMENT.upper()}.0", f"../{SEGMENT}.0", f"{SEGMENT}.0/../../x",
           f"{SEGMENT[:-1]}.0", f"{SEGMENT}.0\x00", "5e/5e/x.0"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_bad_shard_ids_are_refused_before_touching_a_path(store, tmp_path, bad_id):
    data = b"payload"
    before = files_under(tmp_path)
    with pytest.raises(Invalid):
        store.put(bad_id, data, 4, 2, 28, payload_xxh3(data))
    for call in (store.get, store.head, store.delete, store.path_of):
        with pytest.raises(Invalid):
            call(bad_id)
    assert files_under(tmp_path) == before


def _damage(path: Path, position: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("position", [HEADER_SIZE, HEADER_SIZE + 500, -1, 7, 20, 35, 44])
def test_flipped_byte_is_corrupt_and_quarantined(store, position):
    sid = shard(4)
    put(store, sid)
    path = store.path_of(sid)
    _damage(path, position)
    with pytest.raises(Corrupt, match="quarantined"):
        store.get(sid)
    assert not path.exists()
    quarantined = list(store.quarantine_dir.iterdir())
    assert [p.name.rsplit(".", 1)[0] for p in quarantined] == [sid]
    assert store.list() == ([], None)
    with pytest.raises(NoSuchShard):
        store.get(sid)
    put(store, sid)  # a repair can write it again
    assert store.get(sid)[1] == payload_for(sid)


def test_truncated_file_and_misplaced_file_are_corrupt(store):
    put(store, shard(0))
    path = store.path_of(shard(0))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(Corrupt):
        store.get(shard(0))
    put(store, shard(1))
    os.rename(store.path_of(shard(1)), store.path_of(shard(2)))  # header says index 1
    with pytest.raises(Corrupt, match="index"):
        store.get(shard(2))
    assert len(list(store.quarantine_dir.iterdir())) == 2


def test_quarantine_spares_a_file_replaced_since_it_was_read(store):
    sid = shard(5)
    put(store, sid)
    path = store.path_of(sid)
    stale = path.stat()
    put(store, sid)  # a new file (new inode) now holds the name
    assert not store.quarantine(sid, path, (stale.st_dev, stale.st_ino), "test")
    assert store.get(sid)[1] == payload_for(sid)


def test_list_pages_in_shard_id_order(store):
    segments = [f"{i:02x}" * 32 for i in (0x10, 0x01, 0xff, 0x7a)]
    ids = [shard(i, seg) for seg in segments for i in range(6)]
    for sid in ids:
        put(store, sid, sid.encode())
    seen, after, pages = [], "", 0
    while True:
        rows, after = store.list(after=after, limit=7)
        seen += [r.shard_id for r in rows]
        pages += 1
        if after is None:
            break
        assert len(rows) == 7 and after == rows[-1].shard_id
    assert seen == sorted(ids) and pages == 4
    assert store.list(limit=24) == (store.list(limit=24)[0], None)
    assert [r.shard_id for r in store.list(after=sorted(ids)[5] + "x", limit=3)[0]] == \
        sorted(ids)[6:9]
    for bad in [0, -1, 10_001]:
        with pytest.raises(Invalid):
            store.list(limit=bad)
    with pytest.raises(Invalid):
        store.list(after="x" * 200)


def test_stats_count_shards_and_payload_bytes(store):
    put(store, shard(0), b"a" * 100)
    put(store, shard(1), b"b" * 50)
    put(store, shard(1), b"b" * 50)  # a rewrite does not count twice
    stats = store.stats()
    assert (stats.shard_count, stats.payload_bytes) == (2, 150)
    assert stats.capacity_bytes > stats.used_bytes > 0
    store.delete(shard(0))
    assert (store.stats().shard_count, store.stats().payload_bytes) == (1, 50)


def test_writes_are_refused_under_the_reserve_but_deletes_work(tmp_path):
    with ShardStore.open(tmp_path / "node") as roomy:
        put(roomy, shard(0))
    full = ShardStoreSettings(reserve_bytes=1 << 62)
    with ShardStore.open(tmp_path / "node", full) as store:
        with pytest.raises(InsufficientStorage):
            put(store, shard(1))
        assert not store.path_of(shard(1)).exists()
        assert store.get(shard(0))[1] == payload_for(shard(0))
        assert store.delete(shard(0))
    with ShardStore.open(tmp_path / "other", ShardStoreSettings(reserve_fraction=1.0)) as store:
        with pytest.raises(InsufficientStorage):
            put(store, shard(1))


def test_enospc_while_writing_is_insufficient_storage(store, monkeypatch):
    def no_space(path, chunks):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shard_store_module, "write_atomic", no_space)
    with pytest.raises(InsufficientStorage):
        put(store, shard(0))
    assert store.list() == ([], None)


def test_a_data_dir_is_held_by_one_store(store):
    with pytest.raises(Unavailable, match="in use"):
        ShardStore.open(store.data_dir)


# -- reconcile: the index follows the files after a crash ---------------------------------


def _crash_left_file(store: ShardStore, sid: str, data: bytes) -> None:
    """What a crash between the file's rename and the index commit leaves behind."""
    path = store.path_of(sid)
    fsutil.make_dirs(path.parent)
    header = pack_header(data_shards=4, parity_shards=2, index=int(sid.rsplit(".", 1)[1]),
                         segment_length=4 * len(data), payload_length=len(data),
                         payload_xxh3_hex=payload_xxh3(data))
    fsutil.write_atomic(path, [header, data])


def test_reconcile_adds_crash_left_files_and_drops_rows_of_vanished_files(tmp_path):
    with ShardStore.open(tmp_path) as store:
        put(store, shard(0))
        put(store, shard(1))
        _crash_left_file(store, shard(2), payload_for(shard(2)))
        store.path_of(shard(1)).unlink()  # a delete that crashed before its index commit
        temp = store.path_of(shard(3)).with_name(shard(3) + ".tmp.0123456789abcdef")
        temp.write_bytes(b"half a write")
        junk = store.path_of(shard(4)).with_name("not-a-shard")
        junk.write_bytes(b"?")
        assert store.reconcile().temp_removed == 0  # a young temp file may be a put in flight
        assert temp.exists()
    with ShardStore.open(tmp_path) as store:  # open reconciles with no grace
        assert [r.shard_id for r in store.list()[0]] == [shard(0), shard(2)]
        assert store.head(shard(2)).xxh3 == payload_xxh3(payload_for(shard(2)))
        assert store.get(shard(2))[1] == payload_for(shard(2))
        assert not temp.exists() and not junk.exists()
        assert [p.name.startswith("not-a-shard.") for p in store.quarantine_dir.iterdir()] == [True]
        assert not store.reconcile().changed


def test_reconcile_quarantines_crash_left_files_that_are_damaged(tmp_path):
    with ShardStore.open(tmp_path) as store:
        _crash_left_file(store, shard(0), b"x" * 100)
        _damage(store.path_of(shard(0)), 3)
        _crash_left_file(store, shard(1), b"y" * 100)
        path = store.path_of(shard(1))
        path.write_bytes(path.read_bytes()[:-1])
        report = store.reconcile()
        assert (report.added, report.quarantined) == (0, 2)
        assert store.list() == ([], None)


def test_reconcile_rebuilds_a_lost_index(tmp_path):
    settings = ShardStoreSettings(reconcile_batch=3)  # several batches and index pages
    segments = [f"{i:02x}" * 32 for i in range(0, 256, 37)]
    ids = sorted(shard(i, seg) for seg in segments for i in range(3))
    with ShardStore.open(tmp_path, settings) as store:
        for sid in ids:
            put(store, sid)
        expected = store.list()[0]
        payload_bytes = store.stats().payload_bytes
    shutil.rmtree(tmp_path / "index.lmdb")
    with ShardStore.open(tmp_path, settings) as store:
        assert store.list()[0] == expected
        assert store.stats().payload_bytes == payload_bytes
        for sid in ids[::5]:
            store.path_of(sid).unlink()
        report = store.reconcile()
        assert (report.dropped, report.added) == (len(ids[::5]), 0)
        assert [r.shard_id for r in store.list()[0]] == [s for s in ids if s not in ids[::5]]


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_puts_gets_and_deletes_keep_files_and_index_in_step(store):
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    ids = [shard(i, seg) for seg in ("aa" * 32, "ab" * 32) for i in range(4)]
    operations = [(rng.choice(["put", "put", "get", "delete"]), rng.choice(ids))
                  for _ in range(400)]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(operation: tuple[str, str]) -> None:
        kind, sid = operation
        try:
            if kind == "put":
                put(store, sid)
            elif kind == "delete":
                store.delete(sid)
            else:
                assert store.get(sid)[1] == payload_for(sid)
        except NoSuchShard:
            pass
        except BaseException as exc:  # collected: a worker thread must not hide a failure
            with lock:
                errors.append(exc)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(run, operations))
    assert errors == []
    files = sorted(p.name for p in store.shards_dir.rglob("*") if p.is_file())
    assert [r.shard_id for r in store.list()[0]] == files
    assert not any(fsutil.is_temp_name(name) for name in files)
    for sid in files:
        assert unpack_header(store.path_of(sid).read_bytes()).index == int(sid[-1])
        assert store.get(sid)[1] == payload_for(sid)
    assert not store.reconcile().changed
