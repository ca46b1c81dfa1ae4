"""Identifiers and their validation.

A segment id is the lowercase hex SHA-256 of the segment's plaintext (content addressing:
identical segments share one id and are stored once). A shard id is ``<segment id>.<index>``
with a decimal index below 256. Ids are validated here, before any of them is used to build
a file path or a database key, so ``../../x`` can never reach the disk.
"""

from __future__ import annotations

import re

from blobstore.core.errors import Invalid

SEGMENT_ID_LENGTH = 64
MAX_SHARD_INDEX = 255
_SEGMENT_RE = re.compile(r"[0-9a-f]{64}")
_SHARD_RE = re.compile(r"([0-9a-f]{64})\.(0|[1-9][0-9]{0,2})")
_NODE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def validate_segment_id(segment_id: str) -> str:
    if not isinstance(segment_id, str) or not _SEGMENT_RE.fullmatch(segment_id):
        raise Invalid(f"invalid segment id {segment_id!r}")
    return segment_id


def shard_id(segment_id: str, index: int) -> str:
    validate_segment_id(segment_id)
    if not 0 <= index <= MAX_SHARD_INDEX:
        raise Invalid(f"invalid shard index {index}")
    return f"{segment_id}.{index}"


def parse_shard_id(value: str) -> tuple[str, int]:
    """Split a shard id into (segment id, index); Invalid for anything else."""
    match = _SHARD_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(f"invalid shard id {value!r}")
    index = int(match.group(2))
    if index > MAX_SHARD_INDEX:
        raise Invalid(f"invalid shard index in {value!r}")
    return match.group(1), index


def validate_node_id(node_id: str) -> str:
    if not isinstance(node_id, str) or not _NODE_RE.fullmatch(node_id):
        raise Invalid(f"invalid node id {node_id!r}: lowercase letters, digits, - and _")
    return node_id
