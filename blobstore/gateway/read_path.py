"""GetObject: manifest -> shards of each segment in the range -> verify -> stream out.

Rules:
- A healthy read fetches only the data shards that cover the requested bytes (zfec is
  systematic: they ARE the bytes) and checks each against the xxh3 recorded in meta, on
  top of the storage node's own check.
- A missing, unreachable or corrupt shard switches that segment to a degraded read: fetch
  other shards (parity included) until ``data_shards`` good ones are in hand, decode, and
  check the decoded segment against its content id before a byte of it leaves.
  The bad or missing shard is reported to meta for repair.
- Fewer than ``data_shards`` good shards: Unavailable (503), never wrong or short bytes.
- Up to ``READ_AHEAD_BYTES`` of segments (at least one) are fetched ahead of the one
  being sent.
- An inline object's bytes come with its record; their MD5 (the ETag) is checked before
  they are sent, as a segment's content id is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator

from blobstore.core import ec
from blobstore.core.digests import is_segment_content
from blobstore.core.ec import Buffer
from blobstore.core.errors import BlobstoreError, Corrupt, NoSuchShard, Unavailable
from blobstore.core.ids import shard_id
from blobstore.core.records import Manifest, Segment
from blobstore.gateway.state import READ_AHEAD_BYTES, GatewayState, segments_within

log = logging.getLogger(__name__)
SHARD_GET_TIMEOUT_S = 20.0


async def read_range(state: GatewayState, manifest: Manifest, first: int,
                     last: int) -> AsyncIterator[Buffer]:
    """Yield the object's bytes ``first..last`` (inclusive), verified, in order.

    Pieces are views of the shard payloads as they came from the nodes: a healthy read
    copies no byte between the storage node's response and the client's socket.
    """
    inline = manifest.version.inline
    if inline is not None:
        if hashlib.md5(inline, usedforsecurity=False).hexdigest() != manifest.version.etag:
            raise Corrupt(f"the inline bytes of {manifest.version.key!r} fail their MD5 check")
        yield inline[first:last + 1]
        return
    pieces: list[tuple[Segment, int, int]] = []
    for ref in manifest.version.segments:
        seg_first, seg_last = ref.offset, ref.offset + ref.length - 1
        if seg_last < first or seg_first > last:
            continue
        lo = max(first, seg_first) - ref.offset
        hi = min(last, seg_last) - ref.offset + 1
        pieces.append((manifest.segments[ref.id], lo, hi))
    loop = asyncio.get_running_loop()
    ahead = segments_within(READ_AHEAD_BYTES, state.config.segment_size_bytes, 1)
    pending: list[asyncio.Task[list[Buffer]]] = []
    try:
        for segment, lo, hi in pieces:
            pending.append(loop.create_task(read_segment(state, segment, lo, hi)))
            if len(pending) > ahead:
                for piece in await pending.pop(0):
                    yield piece
        while pending:
            for piece in await pending.pop(0):
                yield piece
    finally:
        for task in pending:
            task.cancel()


async def read_segment(state: GatewayState, segment: Segment, lo: int, hi: int) -> list[Buffer]:
    """Bytes ``lo..hi-1`` of one segment, as views of its shards (or of the decoded segment)."""
    policy = ec.EcPolicy(segment.data_shards, segment.parity_shards)
    size = policy.shard_size(segment.length)
    wanted = list(range(lo // size, (hi - 1) // size + 1))
    got = await asyncio.gather(*(_fetch(state, segment, i) for i in wanted))
    if all(payload is not None for payload in got):
        out: list[Buffer] = []
        for index, payload in zip(wanted, got, strict=True):
            start, end = max(lo - index * size, 0), min(hi - index * size, size)
            out.append(memoryview(payload)[start:end])  # type: ignore[arg-type]
        return out
    good = {i: p for i, p in zip(wanted, got, strict=True) if p is not None}
    whole = await _degraded(state, segment, policy, good, set(wanted))
    return [memoryview(whole)[lo:hi]]


async def _degraded(state: GatewayState, segment: Segment, policy: ec.EcPolicy,
                    good: dict[int, bytes], tried: set[int]) -> bytes:
    """Gather ``data_shards`` verified shards, decode, verify the content id."""
    others = [i for i in range(policy.total_shards) if i not in tried]
    while len(good) < policy.data_shards and others:
        batch, others = others[: policy.data_shards - len(good)], others[policy.data_shards - len(good):]
        results = await asyncio.gather(*(_fetch(state, segment, i) for i in batch))
        good.update({i: p for i, p in zip(batch, results, strict=True) if p is not None})
    if len(good) < policy.data_shards:
        raise Unavailable(f"segment {segment.id[:16]}: only {len(good)} of the "
                          f"{policy.data_shards} shards needed are readable")
    decoded = await state.run_in_pool(ec.decode, policy, good, segment.length)
    if not await state.run_in_pool(is_segment_content, [decoded], segment.id):
        raise Unavailable(f"segment {segment.id[:16]}: decoded bytes fail the content check")
    return decoded


async def _fetch(state: GatewayState, segment: Segment, index: int) -> bytes | None:
    """One verified shard payload, or None (and a report to meta) when it cannot be had."""
    node_id = segment.placement[index]
    if node_id is None:
        return None
    sid = shard_id(segment.id, index)
    try:
        payload = await state.storage.get_shard(await state.address_of(node_id), sid,
                                                timeout_s=SHARD_GET_TIMEOUT_S)
        ec.verify_shard(payload, segment.shard_xxh3[index], sid)
        return payload
    except (Corrupt, NoSuchShard) as exc:
        log.warning("shard %s on %s: %s", sid, node_id, exc.code)
        state.spawn(_report(state, segment.id, index, node_id, exc.code))
        return None
    except BlobstoreError as exc:
        log.info("shard %s on %s unavailable: %s", sid, node_id, exc.message)
        return None


async def _report(state: GatewayState, seg_id: str, index: int, node_id: str, reason: str) -> None:
    try:
        await state.meta.report_bad_shard(seg_id, index, node_id, reason)
    except BlobstoreError as exc:
        log.warning("could not report bad shard %s.%d: %s", seg_id, index, exc)
