"""The scrubber finds every corrupt shard, quarantines and reports it, and nothing else."""

from __future__ import annotations

import asyncio
import os
import random

from blobstore.core import ec
from blobstore.core.digests import segment_id
from blobstore.core.ids import shard_id
from blobstore.storage.scrubber import Scrubber
from blobstore.storage.shard_store import ShardStore


def fill(store: ShardStore, segments: int) -> list[str]:
    policy = ec.EcPolicy(4, 2)
    ids = []
    for _ in range(segments):
        data = os.urandom(10_000)
        seg = segment_id(data)
        for index, payload in enumerate(ec.encode(policy, data)):
            sid = shard_id(seg, index)
            store.put(sid, bytes(payload), 4, 2, len(data), ec.shard_checksum(payload))
            ids.append(sid)
    return ids


def test_one_pass_finds_exactly_the_flipped_shards(tmp_path):
    store = ShardStore.open(tmp_path)
    try:
        ids = fill(store, 10)
        victims = sorted(random.Random(7).sample(ids, 5))
        for sid in victims:
            path = store.path_of(sid)
            raw = bytearray(path.read_bytes())
            raw[-1 - random.Random(sid).randrange(100)] ^= 0x10
            path.write_bytes(bytes(raw))
        reported: list[tuple[str, int, str]] = []

        async def call(fn, *args):
            return await asyncio.to_thread(fn, *args)

        async def report(seg: str, index: int, reason: str) -> None:
            reported.append((seg, index, reason))

        scrubber = Scrubber(store, call, report, interval_s=3600, rate_bytes_per_s=0)
        status = asyncio.run(scrubber.run_once())
        assert status.passes_completed == 1 and not status.pass_running
        assert status.shards_checked == len(ids)
        assert status.corrupt_found == 5
        assert sorted(f"{seg}.{index}" for seg, index, _ in reported) == victims
        assert all(not store.path_of(sid).exists() for sid in victims)
        assert len(list((tmp_path / "quarantine").iterdir())) == 5
        # A second pass finds nothing more: bad shards are out of service.
        reported.clear()
        status = asyncio.run(scrubber.run_once())
        assert reported == [] and status.shards_checked == len(ids) - 5
    finally:
        store.close()
