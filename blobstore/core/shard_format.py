"""The on-disk shard file header: a fixed 48-byte prefix in front of the shard payload.

A shard file is ``header || payload``. The header says what the payload is (which shard of
which EC policy, how long the segment was) and carries two checksums, so that a reader can
tell a healthy file from a damaged one without any other source of truth:

- the payload's xxh3-64, checked on every read of the payload;
- the header's own xxh3-64 over the 40 bytes before it, so a flipped bit in the header (in a
  length, in the EC parameters, in the payload checksum itself) is detected too rather than
  silently misinterpreting the payload.

Layout, format version 1, every integer little-endian (``struct`` format ``<4sHBBB7sQQQQ``):

=======  =====  ===============  ====================================================
offset   size   field            meaning
=======  =====  ===============  ====================================================
0        4      magic            ``b"BSSH"`` (BlobStore SHard)
4        2      format_version   ``1``; a reader refuses versions it does not know
6        1      data_shards      k of the segment's k+m policy, 1..255
7        1      parity_shards    m of the policy, 0..255
8        1      index            this shard's index, ``< data_shards + parity_shards``
9        7      reserved         zero in version 1 (a non-zero byte is corruption)
16       8      segment_length   length in bytes of the whole segment (before padding)
24       8      payload_length   length in bytes of the payload that follows the header
32       8      payload_xxh3     xxh3-64 of the payload, as an integer
40       8      header_xxh3      xxh3-64 of bytes 0..39 of this header
=======  =====  ===============  ====================================================

Rules:

- ``pack_header`` refuses values that cannot be encoded or that contradict each other
  (Invalid): a header that cannot describe its payload is never written.
- ``unpack_header`` raises Corrupt for a short input, a bad magic, an unknown version, a
  checksum mismatch, non-zero reserved bytes or impossible field values. It checks the
  header only; the caller checks the payload against ``payload_xxh3``.
- Checksums travel as 16 lowercase hex digits (``xxhash.xxh3_64_hexdigest``); the header
  stores the same value as a u64, so hex <-> int is exact.

Pure: bytes in, values out. No files here; ``storage/shard_store.py`` does the I/O.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import xxhash

from blobstore.core.errors import Corrupt, Invalid

MAGIC = b"BSSH"
FORMAT_VERSION = 1
_BODY = struct.Struct("<4sHBBB7sQQQ")  # everything the header checksum covers
_CHECKSUM = struct.Struct("<Q")
HEADER_SIZE = _BODY.size + _CHECKSUM.size
assert HEADER_SIZE == 48, HEADER_SIZE
_RESERVED = bytes(7)
_U8_MAX = 0xFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_HEX16_RE = re.compile(r"[0-9a-f]{16}")

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class ShardHeader:
    """The decoded header. ``payload_xxh3`` is 16 lowercase hex digits."""

    data_shards: int
    parity_shards: int
    index: int
    segment_length: int
    payload_length: int
    payload_xxh3: str
    format_version: int = FORMAT_VERSION

    @property
    def total_shards(self) -> int:
        return self.data_shards + self.parity_shards


def payload_xxh3(data: Buffer) -> str:
    """xxh3-64 of a shard payload as 16 lowercase hex digits (the wire and header form)."""
    return xxhash.xxh3_64_hexdigest(data)


def chunks_xxh3(chunks: Iterable[Buffer]) -> str:
    """``payload_xxh3`` of the concatenation of ``chunks``, without concatenating them."""
    hasher = xxhash.xxh3_64()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()


def validate_xxh3_hex(value: str) -> str:
    """Return ``value`` if it is 16 lowercase hex digits; Invalid otherwise."""
    if not isinstance(value, str) or not _HEX16_RE.fullmatch(value):
        raise Invalid(f"xxh3 must be 16 lowercase hex digits, not {value!r}")
    return value


def pack_header(*, data_shards: int, parity_shards: int, index: int, segment_length: int,
                payload_length: int, payload_xxh3_hex: str) -> bytes:
    """Encode a version-1 header; Invalid for values the format cannot hold."""
    _check_fields(data_shards, parity_shards, index, segment_length, payload_length,
                  error=Invalid)
    checksum = int(validate_xxh3_hex(payload_xxh3_hex), 16)
    body = _BODY.pack(MAGIC, FORMAT_VERSION, data_shards, parity_shards, index, _RESERVED,
                      segment_length, payload_length, checksum)
    return body + _CHECKSUM.pack(xxhash.xxh3_64_intdigest(body))


def unpack_header(data: Buffer) -> ShardHeader:
    """Decode and verify the header at the start of ``data`` (extra bytes are ignored)."""
    if len(data) < HEADER_SIZE:
        raise Corrupt(f"shard header truncated: {len(data)} of {HEADER_SIZE} bytes")
    view = memoryview(data)[:HEADER_SIZE]
    (magic, version, data_shards, parity_shards, index, reserved, segment_length,
     payload_length, checksum) = _BODY.unpack(view[: _BODY.size])
    if magic != MAGIC:
        raise Corrupt(f"not a shard file: magic {magic!r}")
    if version != FORMAT_VERSION:
        raise Corrupt(f"unknown shard format version {version}")
    (stored_header_checksum,) = _CHECKSUM.unpack(view[_BODY.size:])
    if xxhash.xxh3_64_intdigest(view[: _BODY.size]) != stored_header_checksum:
        raise Corrupt("shard header checksum mismatch")
    if reserved != _RESERVED:
        raise Corrupt("shard header reserved bytes are not zero")
    _check_fields(data_shards, parity_shards, index, segment_length, payload_length,
                  error=Corrupt)
    return ShardHeader(data_shards=data_shards, parity_shards=parity_shards, index=index,
                       segment_length=segment_length, payload_length=payload_length,
                       payload_xxh3=f"{checksum:016x}", format_version=version)


def _check_fields(data_shards: int, parity_shards: int, index: int, segment_length: int,
                  payload_length: int, *, error: type[Invalid] | type[Corrupt]) -> None:
    if not 1 <= data_shards <= _U8_MAX or not 0 <= parity_shards <= _U8_MAX:
        raise error(f"EC policy {data_shards}+{parity_shards} does not fit the shard header")
    if not 0 <= index < min(data_shards + parity_shards, _U8_MAX + 1):
        raise error(f"shard index {index} is outside the {data_shards}+{parity_shards} policy")
    if not 0 <= segment_length <= _U64_MAX or not 0 <= payload_length <= _U64_MAX:
        raise error(f"lengths out of range: segment {segment_length}, payload {payload_length}")
