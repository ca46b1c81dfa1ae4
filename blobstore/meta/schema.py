"""The LMDB layout of the metadata service: sub-databases, key encodings, value codecs.

One LMDB environment (``data_dir/meta.lmdb``) holds everything; a command's state changes,
its client session and ``last_applied`` are written in one transaction.

| sub-db            | key                                         | value                        |
|-------------------|---------------------------------------------|------------------------------|
| ``meta``          | ``b"last_applied"``                         | u64 BE                       |
| ``buckets``       | bucket name (UTF-8)                         | Bucket (msgpack)             |
| ``objects``       | object key, see below                       | ObjectVersion (msgpack)      |
| ``segments``      | segment id (32 raw bytes)                   | Segment (msgpack)            |
| ``repair_queue``  | healthy shard count (u16 BE) + segment id   | RepairTask (msgpack)         |
| ``repair_index``  | segment id                                  | its healthy count (u16 BE)   |
| ``degraded``      | segment id                                  | empty: placement has a None  |
| ``gc``            | segment id                                  | empty: refcount is 0, or a GcMark (meta/heal.py) |
| ``repair_leases`` | segment id                                  | RepairLease (meta/heal.py)   |
| ``users``         | access key (UTF-8)                          | User (msgpack)               |
| ``members``       | node id (UTF-8)                             | Member (meta/membership.py)  |
| ``moves``         | segment id                                  | MoveTask (meta/membership.py)|
| ``sessions``      | client id + NUL + sequence (u64 BE)         | Outcome (msgpack)            |
| ``session_heads`` | client id                                   | SessionHead (msgpack)        |
| ``session_idle``  | last index (u64 BE) + client id             | empty: expiry order          |
| ``log``           | unused since Raft (the log is ``raft.lmdb``, ``meta/raft_log.py``); |
|                   | kept so that environments written before open unchanged             |

Object keys: ``bucket + NUL + key`` in UTF-8. Bucket names hold no NUL and NUL is the
smallest byte, so a bucket's objects are one contiguous run ordered by the key's UTF-8
bytes: S3's listing order is LMDB's key order. LMDB keys are at most 511 bytes but S3 keys
may have 1024, so an encoding longer than ``INLINE_KEY_BYTES`` is stored as its first
``INLINE_KEY_BYTES`` bytes + 16 bytes of the SHA-256 of the whole. Order is still right
between keys that differ in their first ``INLINE_KEY_BYTES`` bytes; long keys that share
them (a "group") are contiguous and are sorted by their full key, read from the value, by
``meta/object_scan.py``. A group is held in memory while it is listed, so its size is bounded
only by how many keys share a ~470-byte prefix: pathological, and documented here.

The repair queue's key starts with the healthy shard count, so key order is the repair
order: the most endangered segments (fewest healthy shards) first, then by segment id.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import TypeVar

import lmdb
import msgspec

from blobstore.core.errors import Invalid
from blobstore.core.ids import validate_segment_id
from blobstore.core.records import Bucket, ObjectSummary, ObjectVersion, RepairTask, Segment

DB_NAMES = ("meta", "buckets", "objects", "segments", "repair_queue", "repair_index",
            "degraded", "gc", "users", "sessions", "session_heads", "session_idle", "log",
            "repair_leases", "uploads", "upload_index", "parts", "members", "moves")
MAX_DBS = 32  # room for the sub-dbs of later issues (leases, raft state)
LAST_APPLIED_KEY = b"last_applied"
INLINE_KEY_BYTES = 480  # + 16 hash bytes stays under LMDB's 511-byte key limit
HASHED_SUFFIX_BYTES = 16
MAX_OBJECT_KEY_BYTES = 1024  # S3's limit
MAX_BUCKET_NAME_CHARS = 255
MAX_CLIENT_ID_CHARS = 128
_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_ACCESS_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
_CLIENT_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")
T = TypeVar("T")


class User(msgspec.Struct, frozen=True):
    access_key: str
    secret_key: str
    name: str = ""


class SessionHead(msgspec.Struct, frozen=True):
    """A client session: results below ``floor`` are forgotten; ``count`` are stored."""

    floor: int = 0
    count: int = 0
    last_index: int = 0


@dataclass(frozen=True, slots=True)
class Dbs:
    """Handles of the sub-databases, by the names of ``DB_NAMES``."""

    meta: lmdb._Database
    buckets: lmdb._Database
    objects: lmdb._Database
    segments: lmdb._Database
    repair_queue: lmdb._Database
    repair_index: lmdb._Database
    degraded: lmdb._Database
    gc: lmdb._Database
    users: lmdb._Database
    sessions: lmdb._Database
    session_heads: lmdb._Database
    session_idle: lmdb._Database
    log: lmdb._Database
    repair_leases: lmdb._Database
    uploads: lmdb._Database
    upload_index: lmdb._Database
    parts: lmdb._Database
    members: lmdb._Database
    moves: lmdb._Database


def open_dbs(env: lmdb.Environment) -> Dbs:
    """Open (creating if needed) every sub-database of the layout."""
    return Dbs(**{name: env.open_db(name.encode()) for name in DB_NAMES})


# ---- validation of the names that become keys -------------------------------------------


def check_bucket_name(name: str) -> str:
    """Refuse a bucket name that could break a key or a URL path (S3 rules live in core/s3)."""
    if not isinstance(name, str) or not _BUCKET_RE.fullmatch(name):
        raise Invalid(f"invalid bucket name {name!r}")
    return name


def is_valid_bucket_name(name: str) -> bool:
    return isinstance(name, str) and _BUCKET_RE.fullmatch(name) is not None


def check_object_key(key: str) -> bytes:
    """The key's UTF-8 bytes; Invalid if empty, not encodable or longer than S3 allows."""
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(f"object key is not valid UTF-8: {key!r}") from exc
    if not 0 < len(encoded) <= MAX_OBJECT_KEY_BYTES:
        raise Invalid(f"object key must be 1..{MAX_OBJECT_KEY_BYTES} bytes of UTF-8")
    return encoded


def is_valid_access_key(access_key: str) -> bool:
    return isinstance(access_key, str) and _ACCESS_KEY_RE.fullmatch(access_key) is not None


def check_client_id(client_id: str) -> str:
    if not isinstance(client_id, str) or not _CLIENT_ID_RE.fullmatch(client_id):
        raise Invalid(f"client id must be 1..{MAX_CLIENT_ID_CHARS} printable ASCII characters")
    return client_id


# ---- key encodings --------------------------------------------------------------------


def u64(value: int) -> bytes:
    return _U64.pack(value)


def read_u64(data: bytes) -> int:
    return int(_U64.unpack(data)[0])


def bucket_key(name: str) -> bytes:
    return name.encode()


def object_head(bucket: str) -> bytes:
    """Every object key of ``bucket`` starts with these bytes."""
    return bucket.encode() + b"\x00"


def object_full_key(bucket: str, key: str) -> bytes:
    """The unbounded encoding ``bucket NUL key``: its order is the listing order."""
    return object_head(bucket) + key.encode("utf-8")


def object_key(bucket: str, key: str) -> bytes:
    """The LMDB key of one object (inline, or truncated + hashed when long)."""
    return stored_object_key(object_full_key(bucket, key))


def stored_object_key(full: bytes) -> bytes:
    if len(full) <= INLINE_KEY_BYTES:
        return full
    digest = hashlib.sha256(full).digest()[:HASHED_SUFFIX_BYTES]
    return full[:INLINE_KEY_BYTES] + digest


def is_hashed_object_key(stored: bytes) -> bool:
    return len(stored) > INLINE_KEY_BYTES


def object_seek_key(full: bytes) -> bytes:
    """Where a cursor must land to see every object whose full key is >= ``full``."""
    return full if len(full) <= INLINE_KEY_BYTES else full[:INLINE_KEY_BYTES]


def segment_key(segment_id: str) -> bytes:
    return bytes.fromhex(validate_segment_id(segment_id))


def segment_id_of(key: bytes) -> str:
    return key.hex()


def repair_queue_key(healthy: int, segment_id: str) -> bytes:
    return _U16.pack(healthy) + segment_key(segment_id)


def healthy_of_repair_key(key: bytes) -> int:
    return int(_U16.unpack(key[:2])[0])


def u16(value: int) -> bytes:
    return _U16.pack(value)


def read_u16(data: bytes) -> int:
    return int(_U16.unpack(data)[0])


def session_prefix(client_id: str) -> bytes:
    return client_id.encode() + b"\x00"


def session_key(client_id: str, sequence: int) -> bytes:
    return session_prefix(client_id) + u64(sequence)


def session_idle_key(last_index: int, client_id: str) -> bytes:
    return u64(last_index) + client_id.encode()


# ---- value codecs ---------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[type, msgspec.msgpack.Decoder] = {
    kind: msgspec.msgpack.Decoder(kind)
    for kind in (Bucket, ObjectVersion, ObjectSummary, Segment, RepairTask, User, SessionHead)
}


def encode(value: msgspec.Struct) -> bytes:
    return _encoder.encode(value)


def decode(kind: type[T], data: bytes) -> T:
    """Decode a stored value; ObjectSummary reads just its fields of an ObjectVersion."""
    decoder = _decoders.get(kind)
    if decoder is None:  # a record type of a later module (uploads, parts, leases)
        decoder = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    return decoder.decode(data)  # type: ignore[no-any-return]
