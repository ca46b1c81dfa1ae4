"""Wire types of the storage node's internal API (docs/internal-api.md, storage section).

Both sides import these: ``storage/app.py`` encodes them, ``rpc/storage_client.py`` decodes
them, so a field added or renamed changes both at once. Bodies are msgspec JSON; shard
metadata on PUT/GET/HEAD travels in ``X-Shard-*`` headers because the body is the payload.

Versioning rule: fields may be added with a default; a field is never removed or given a
new meaning under the same name (old peers ignore unknown fields, msgspec's default).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from blobstore.core.errors import Invalid

HEADER_DATA_SHARDS = "X-Shard-Data-Shards"
HEADER_PARITY_SHARDS = "X-Shard-Parity-Shards"
HEADER_SEGMENT_LENGTH = "X-Shard-Segment-Length"
HEADER_XXH3 = "X-Shard-Xxh3"
HEADER_PAYLOAD_LENGTH = "X-Shard-Payload-Length"
HEADER_MTIME_NS = "X-Shard-Mtime-Ns"


class ShardInfo(msgspec.Struct, frozen=True):
    """What a storage node holds for one shard (its index row)."""

    shard_id: str
    payload_length: int
    xxh3: str  # xxh3-64 of the payload, 16 lowercase hex digits
    segment_length: int
    data_shards: int
    parity_shards: int
    mtime_ns: int  # when the node wrote its file (wall clock of that node)


class ShardList(msgspec.Struct, frozen=True):
    """One page of ``GET /v1/shards``; ``next`` is the ``after`` of the next page, or None."""

    shards: list[ShardInfo]
    next: str | None = None


class StorageStatus(msgspec.Struct, frozen=True):
    """``GET /v1/status`` of a storage node; also the body of its heartbeat to meta."""

    node_id: str
    capacity_bytes: int
    used_bytes: int
    shard_count: int
    payload_bytes: int = 0  # of the shards held: what a drain must move
    scrub_passes_completed: int = 0
    scrub_shards_checked: int = 0
    scrub_shards_total: int = 0
    scrub_corrupt_found: int = 0
    scrub_last_pass_completed_s: float = 0.0


def shard_info_headers(info: ShardInfo) -> dict[str, str]:
    """The ``X-Shard-*`` headers that describe ``info`` (GET and HEAD responses)."""
    return {
        HEADER_DATA_SHARDS: str(info.data_shards),
        HEADER_PARITY_SHARDS: str(info.parity_shards),
        HEADER_SEGMENT_LENGTH: str(info.segment_length),
        HEADER_XXH3: info.xxh3,
        HEADER_PAYLOAD_LENGTH: str(info.payload_length),
        HEADER_MTIME_NS: str(info.mtime_ns),
    }


def header_int(headers: Mapping[str, str], name: str) -> int:
    """A non-negative decimal header; Invalid when missing or malformed."""
    value = _lookup(headers, name)
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
        raise Invalid(f"header {name} must be a non-negative integer, got {value!r}")
    return int(value)


def header_str(headers: Mapping[str, str], name: str) -> str:
    value = _lookup(headers, name)
    if value is None:
        raise Invalid(f"header {name} is missing")
    return value


def shard_info_from_headers(shard_id: str, headers: Mapping[str, str]) -> ShardInfo:
    """Inverse of ``shard_info_headers``."""
    return ShardInfo(shard_id=shard_id,
                     payload_length=header_int(headers, HEADER_PAYLOAD_LENGTH),
                     xxh3=header_str(headers, HEADER_XXH3),
                     segment_length=header_int(headers, HEADER_SEGMENT_LENGTH),
                     data_shards=header_int(headers, HEADER_DATA_SHARDS),
                     parity_shards=header_int(headers, HEADER_PARITY_SHARDS),
                     mtime_ns=header_int(headers, HEADER_MTIME_NS))


def _lookup(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works on plain dicts as well as CIMultiDicts."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None
