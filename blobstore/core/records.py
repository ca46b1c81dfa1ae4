"""The records the metadata service keeps, as msgspec structs (one schema for LMDB and wire).

Invariants:
- ``Segment.shard_xxh3`` and ``Segment.placement`` have exactly ``total_shards`` entries.
- ``placement[i]`` is the node holding shard ``i``, or ``None`` while that shard is missing
  (queued for repair); no node appears twice in one placement.
- ``ObjectVersion.segments`` cover ``[0, size)`` in order without gaps, or, for a small
  object stored inline (``inline`` is not None), there are no segments and
  ``len(inline) == size``.
"""

from __future__ import annotations

import enum

import msgspec

# Hard cap on an inline object (gateways choose their own limit below it, cluster.toml
# ``inline_max_bytes``): records are read whole and live in Raft entries and snapshots.
MAX_INLINE_BYTES = 256 * 1024


class NodeRole(enum.StrEnum):
    META = "meta"
    STORAGE = "storage"
    GATEWAY = "gateway"


class NodeState(enum.StrEnum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"
    DRAINING = "draining"
    REMOVED = "removed"


class Bucket(msgspec.Struct, frozen=True):
    name: str
    created_ns: int


class Segment(msgspec.Struct, frozen=True):
    id: str  # SHA-256 hex of the plaintext segment
    length: int
    data_shards: int
    parity_shards: int
    shard_xxh3: list[str]  # xxh3-64 hex of each shard payload, index order
    placement: list[str | None]  # node id per shard index; None = missing
    refcount: int = 0

    @property
    def total_shards(self) -> int:
        return self.data_shards + self.parity_shards


class SegmentRef(msgspec.Struct, frozen=True):
    id: str
    offset: int  # offset of this segment within the object
    length: int


class ObjectVersion(msgspec.Struct, frozen=True):
    bucket: str
    key: str
    version_id: str
    size: int
    etag: str  # hex MD5 for single-part objects (no quotes)
    created_ns: int
    segments: list[SegmentRef]
    content_type: str = "application/octet-stream"
    user_metadata: dict[str, str] = {}
    checksums: dict[str, str] = {}  # e.g. {"crc32": base64}
    headers: dict[str, str] = {}  # other stored headers: cache-control, content-encoding, ...
    # A small object's bytes, kept in the record itself (replicated by the meta quorum)
    # instead of as erasure-coded shards: one Raft commit per PUT, no storage round trips.
    inline: bytes | None = None


class Manifest(msgspec.Struct, frozen=True):
    """An object version together with the segment records it references (read path)."""

    version: ObjectVersion
    segments: dict[str, Segment]


class ObjectSummary(msgspec.Struct, frozen=True):
    key: str
    size: int
    etag: str
    created_ns: int


class ListPage(msgspec.Struct, frozen=True):
    entries: list[ObjectSummary]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str | None = None  # last key or prefix returned, for the next page


class NodeView(msgspec.Struct, frozen=True):
    """One node as the cluster map shows it."""

    id: str
    role: NodeRole
    address: str
    zone: str
    weight: float
    state: NodeState
    capacity_bytes: int = 0
    used_bytes: int = 0
    shard_count: int = 0
    payload_bytes: int = 0  # of the shards held (used_bytes is the whole file system's)
    last_heartbeat_ns: int = 0


class ClusterMap(msgspec.Struct, frozen=True):
    epoch: int
    data_shards: int
    parity_shards: int
    nodes: list[NodeView]

    def storage_nodes(self) -> list[NodeView]:
        return [n for n in self.nodes if n.role == NodeRole.STORAGE]


class RepairTask(msgspec.Struct, frozen=True):
    segment_id: str
    missing: list[int]  # shard indexes known missing or bad
    reason: str


class Upload(msgspec.Struct, frozen=True):
    """A multipart upload in progress: what CreateMultipartUpload fixed for the object."""

    bucket: str
    key: str
    upload_id: str
    created_ns: int
    content_type: str = "binary/octet-stream"
    user_metadata: dict[str, str] = {}
    headers: dict[str, str] = {}


class Part(msgspec.Struct, frozen=True):
    """One uploaded part; its segment refs' offsets are relative to the part's start."""

    number: int
    etag: str  # hex MD5 of the part's bytes
    size: int
    created_ns: int
    segments: list[SegmentRef]
