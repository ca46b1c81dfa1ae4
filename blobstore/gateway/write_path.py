"""PutObject: body -> segments -> hash and encode in the pool -> parallel shard puts -> commit.

Rules:
- Memory is bounded: the reader holds one segment being filled; at most
  ``SEGMENT_BYTES_IN_FLIGHT_PER_REQUEST`` of segments (never fewer than 2) are being
  encoded or written at once (and at most ``SEGMENT_BYTES_IN_FLIGHT_PER_GATEWAY`` over all
  requests), and the reader waits for a slot before cutting the next one.
- A segment already stored (same content id) is not written again (dedup); meta counts it.
- Shards go to the placement's nodes in parallel; a failed put moves that shard to the next
  spare node of the ranking. The segment is durable when at least the write quorum
  (default k+1) of distinct nodes fsync'd a shard; shards that could not be written are
  recorded as missing (None) and meta queues them for repair at commit.
- A body no longer than ``inline_max_bytes`` (when the caller allows it: PutObject does,
  parts do not, since a completed upload is made of segments) is not cut into shards at
  all: its bytes travel in the version record, so the PUT is one meta commit.
- The object exists only once meta commits the version (one command, atomically with the
  refcounts). Digests the client sent (signed SHA-256, Content-MD5, x-amz-checksum-*) are
  checked BEFORE that commit: a mismatch leaves nothing visible (written shards become
  orphans for the garbage collector).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from blobstore.core import ec
from blobstore.core.digests import BodyDigests, segment_id
from blobstore.core.errors import BlobstoreError, Unavailable
from blobstore.core.ids import shard_id
from blobstore.core.placement import Candidate, rank
from blobstore.core.records import ObjectVersion, Segment, SegmentRef
from blobstore.core.s3 import errors as s3e
from blobstore.core.segmenter import Segmenter
from blobstore.gateway.state import (
    SEGMENT_BYTES_IN_FLIGHT_PER_REQUEST,
    GatewayState,
    segments_within,
)

SHARD_PUT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ExpectedDigests:
    """What the client claims about the body; each is checked when present."""

    sha256_hex: str | None = None
    md5_b64: str | None = None
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64


@dataclass(frozen=True)
class ObjectAttributes:
    content_type: str = "application/octet-stream"
    user_metadata: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Prepared:
    offset: int
    length: int
    id: str
    shards: list[ec.Buffer]
    sums: list[str]


def _prepare(policy: ec.EcPolicy, offset: int, data: bytes) -> _Prepared:
    """CPU work of one segment, run in the pool (hashlib and zfec release the GIL)."""
    shards = ec.encode(policy, data)
    return _Prepared(offset, len(data), segment_id(data), shards,
                     [ec.shard_checksum(s) for s in shards])


@dataclass(frozen=True)
class WrittenBody:
    """A body whose segments are durable but not yet referenced by any committed record."""

    size: int
    etag: str  # hex MD5
    checksums: dict[str, str]  # verified client checksums, base64
    refs: list[SegmentRef]
    new_segments: list[Segment]
    inline: bytes | None = None  # the whole body, when it is small enough to keep in meta


async def write_body(state: GatewayState, body: AsyncIterator[bytes], content_length: int | None,
                     expected: ExpectedDigests, inline_max: int = 0) -> WrittenBody:
    """Cut, encode and store a body; verify the client's digests. Commits nothing.

    With ``inline_max`` a body of at most that many bytes is returned inline, unstored.
    """
    digests = BodyDigests(want_sha256=expected.sha256_hex is not None,
                          checksum_algorithms=expected.checksums.keys())
    if inline_max and (content_length is None or content_length <= inline_max):
        head, ended = await _take(body, inline_max)
        if ended:
            if content_length is not None and len(head) != content_length:
                raise s3e.IncompleteBody(
                    f"received {len(head)} of the {content_length} bytes announced")
            digests.update(head)
            checksums = _check_digests(digests, expected)
            return WrittenBody(len(head), digests.etag(), checksums, [], [], inline=head)
        body = _prefixed(head, body)
    segmenter = Segmenter(state.config.segment_size_bytes, expected_length=content_length)
    writer = _SegmentWriter(state)
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if content_length is not None and received > content_length:
                raise s3e.IncompleteBody("the body is longer than its Content-Length")
            for offset, data in segmenter.feed(chunk):
                await state.run_in_pool(digests.update, data)
                await writer.submit(offset, data)
        for offset, data in segmenter.finish():
            await state.run_in_pool(digests.update, data)
            await writer.submit(offset, data)
        if content_length is not None and digests.size != content_length:
            raise s3e.IncompleteBody(
                f"received {digests.size} of the {content_length} bytes announced")
        refs, new_segments = await writer.finish()
    except BaseException:
        await writer.cancel()
        raise
    checksums = _check_digests(digests, expected)
    return WrittenBody(digests.size, digests.etag(), checksums, refs, new_segments)


async def _take(body: AsyncIterator[bytes], limit: int) -> tuple[bytes, bool]:
    """The body's first bytes, up to just past ``limit``; whether the body ended there."""
    parts: list[bytes] = []
    size = 0
    async for chunk in body:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts), False
    return b"".join(parts), True


async def _prefixed(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async for chunk in rest:
        yield chunk


async def write_object(state: GatewayState, bucket: str, key: str, body: AsyncIterator[bytes],
                       content_length: int | None, expected: ExpectedDigests,
                       attributes: ObjectAttributes) -> ObjectVersion:
    written = await write_body(state, body, content_length, expected,
                               inline_max=state.config.inline_max_bytes)
    version = ObjectVersion(
        bucket=bucket, key=key, version_id=secrets.token_hex(8), size=written.size,
        etag=written.etag, created_ns=time.time_ns(), segments=written.refs,
        content_type=attributes.content_type, user_metadata=attributes.user_metadata,
        checksums=written.checksums, headers=attributes.headers, inline=written.inline)
    await state.meta.put_object(version, written.new_segments)
    return version


def _check_digests(digests: BodyDigests, expected: ExpectedDigests) -> dict[str, str]:
    if expected.sha256_hex is not None:
        assert digests.sha256 is not None
        if digests.sha256.hexdigest() != expected.sha256_hex.lower():
            raise s3e.XAmzContentSHA256Mismatch(
                "The provided 'x-amz-content-sha256' header does not match what was computed.")
    if expected.md5_b64 is not None:
        try:
            claimed = base64.b64decode(expected.md5_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise s3e.InvalidDigest("The Content-MD5 you specified was invalid.") from exc
        if len(claimed) != 16:
            raise s3e.InvalidDigest("The Content-MD5 you specified was invalid.")
        if claimed != digests.md5.digest():
            raise s3e.BadDigest("The Content-MD5 you specified did not match what we received.")
    checksums: dict[str, str] = {}
    for algorithm, claimed_b64 in expected.checksums.items():
        actual = digests.checksum_b64(algorithm)
        if actual != claimed_b64:
            raise s3e.BadDigest(
                f"The {algorithm.upper()} you specified did not match the calculated checksum.")
        checksums[algorithm] = actual
    return checksums


class _SegmentWriter:
    """Runs up to N segments at once; keeps their refs in object order."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.slots = asyncio.Semaphore(segments_within(
            SEGMENT_BYTES_IN_FLIGHT_PER_REQUEST, state.config.segment_size_bytes, 2))
        self.tasks: list[asyncio.Task[tuple[SegmentRef, Segment | None]]] = []

    async def submit(self, offset: int, data: bytes) -> None:
        await self.slots.acquire()
        try:
            await self.state.segment_slots.acquire()  # the gateway-wide bound, after ours
        except BaseException:
            self.slots.release()
            raise
        for task in self.tasks:  # fail fast: do not read more body after a failed segment
            if task.done() and task.exception() is not None:
                self._release()
                raise task.exception()  # type: ignore[misc]
        task = asyncio.get_running_loop().create_task(self._store(offset, data))
        task.add_done_callback(lambda _: self._release())
        self.tasks.append(task)

    def _release(self) -> None:
        self.state.segment_slots.release()
        self.slots.release()

    async def _store(self, offset: int, data: bytes) -> tuple[SegmentRef, Segment | None]:
        state = self.state
        prepared = await state.run_in_pool(_prepare, state.policy, offset, data)
        ref = SegmentRef(id=prepared.id, offset=offset, length=prepared.length)
        known = await state.meta.lookup_segments([prepared.id])
        if prepared.id in known:
            return ref, None
        placement = await write_shards(state, prepared.id, prepared.shards, prepared.sums,
                                       prepared.length)
        segment = Segment(id=prepared.id, length=prepared.length,
                          data_shards=state.policy.data_shards,
                          parity_shards=state.policy.parity_shards,
                          shard_xxh3=prepared.sums, placement=placement)
        return ref, segment

    async def finish(self) -> tuple[list[SegmentRef], list[Segment]]:
        results = [await task for task in self.tasks]
        refs = [ref for ref, _ in results]
        new: dict[str, Segment] = {}
        for _, segment in results:
            if segment is not None and segment.id not in new:
                new[segment.id] = segment
        return refs, list(new.values())

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def write_shards(state: GatewayState, seg_id: str, shards: list[ec.Buffer],
                       sums: list[str], segment_length: int,
                       candidates: list[Candidate] | None = None) -> list[str | None]:
    """Put every shard on its node (spares on failure); the placement, or Unavailable."""
    policy = state.policy
    ranking = rank(seg_id, candidates if candidates is not None else await state.write_candidates())
    quorum = state.config.effective_write_quorum
    if len(ranking) < quorum:
        raise Unavailable(f"only {len(ranking)} storage nodes up; {quorum} needed to write")
    spares = [c.node_id for c in ranking[policy.total_shards:]]

    async def put_one(index: int, node_id: str) -> str | None:
        while True:
            try:
                await state.storage.put_shard(
                    await state.address_of(node_id), shard_id(seg_id, index), shards[index],
                    data_shards=policy.data_shards, parity_shards=policy.parity_shards,
                    segment_length=segment_length, xxh3_hex=sums[index],
                    timeout_s=SHARD_PUT_TIMEOUT_S)
                return node_id
            except BlobstoreError:
                if not spares:
                    return None
                node_id = spares.pop(0)

    targets = [c.node_id for c in ranking[: policy.total_shards]]
    placement: list[str | None] = list(await asyncio.gather(
        *(put_one(i, node) for i, node in enumerate(targets))))
    placement += [None] * (policy.total_shards - len(placement))
    written = sum(1 for node in placement if node is not None)
    if written < quorum:
        raise Unavailable(f"wrote {written} of {policy.total_shards} shards; {quorum} needed")
    return placement
