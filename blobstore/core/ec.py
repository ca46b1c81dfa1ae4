"""Reed-Solomon erasure coding of one segment (zfec), and its verification.

Parity is computed by ISA-L when libisal is installed (``core/isal.py``: the same code,
byte for byte, several times faster); decoding is always zfec.

A segment of ``length`` bytes is cut into ``data_shards`` equal shards of
``ceil(length / data_shards)`` bytes (the last one zero-padded) and ``parity_shards``
parity shards of the same size. zfec is systematic: shards ``0..k-1`` are the segment's
bytes themselves, so a healthy read concatenates them and never decodes. Any ``k`` of the
``k+m`` shards rebuild the segment.

zfec's ``Encoder(k, m)`` takes the TOTAL as ``m``: our k+m policy is ``Encoder(k, k+m)``.
That confusion is why the parameters are always named ``data_shards``, ``parity_shards``
and ``total_shards`` here and nowhere called k or m in code.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import xxhash
import zfec

from blobstore.core import isal
from blobstore.core.errors import Corrupt, Invalid, Unavailable

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class EcPolicy:
    data_shards: int
    parity_shards: int

    def __post_init__(self) -> None:
        if not 1 <= self.data_shards <= 128 or not 0 <= self.parity_shards <= 127:
            raise Invalid(f"unsupported EC policy {self.data_shards}+{self.parity_shards}")

    @property
    def total_shards(self) -> int:
        return self.data_shards + self.parity_shards

    def shard_size(self, segment_length: int) -> int:
        return -(-segment_length // self.data_shards) if segment_length else 0

    @classmethod
    def parse(cls, text: str) -> EcPolicy:
        """``"4+2"`` -> EcPolicy(4, 2)."""
        data, plus, parity = text.partition("+")
        if not plus or not data.strip().isdigit() or not parity.strip().isdigit():
            raise Invalid(f"EC policy must look like 4+2, not {text!r}")
        return cls(int(data), int(parity))

    def __str__(self) -> str:
        return f"{self.data_shards}+{self.parity_shards}"


@functools.lru_cache(maxsize=16)
def _encoder(data_shards: int, total_shards: int) -> zfec.Encoder:
    return zfec.Encoder(data_shards, total_shards)


@functools.lru_cache(maxsize=16)
def _decoder(data_shards: int, total_shards: int) -> zfec.Decoder:
    return zfec.Decoder(data_shards, total_shards)


def shard_checksum(payload: Buffer) -> str:
    """xxh3-64 of one shard payload, 16 hex digits."""
    return xxhash.xxh3_64_hexdigest(payload)


def encode(policy: EcPolicy, segment: Buffer) -> list[Buffer]:
    """Split and encode one segment into ``total_shards`` equal-length shards.

    Data shards are zero-copy views of ``segment`` where no padding is needed.
    """
    if not segment:
        raise Invalid("cannot encode an empty segment")
    size = policy.shard_size(len(segment))
    view = memoryview(segment).cast("B")
    padded_length = size * policy.data_shards
    if padded_length != len(view):
        padded = bytearray(padded_length)
        padded[: len(view)] = view
        view = memoryview(padded)
    data = [view[i * size:(i + 1) * size] for i in range(policy.data_shards)]
    if not policy.parity_shards:
        return list(data)
    return [*data, *parity_shards(policy, data)]


def parity_shards(policy: EcPolicy, blocks: Sequence[Buffer]) -> list[Buffer]:
    """Every parity shard of the ``data_shards`` equal-length blocks: ISA-L if present, else zfec."""
    if isal.available():
        return list(isal.encode_parity(policy.data_shards, policy.total_shards, blocks,
                                       len(blocks[0])))
    parity_numbers = list(range(policy.data_shards, policy.total_shards))
    return _encoder(policy.data_shards, policy.total_shards).encode(list(blocks), parity_numbers)


def decode(policy: EcPolicy, shards: Mapping[int, Buffer], segment_length: int) -> bytes:
    """Rebuild a segment from any ``data_shards`` of its shards (index -> payload).

    Raises Unavailable with fewer than ``data_shards`` shards and Invalid when the shards
    do not have the size this segment length implies.
    """
    size = policy.shard_size(segment_length)
    if len(shards) < policy.data_shards:
        raise Unavailable(
            f"only {len(shards)} of the {policy.data_shards} shards needed to decode")
    for index, payload in shards.items():
        if not 0 <= index < policy.total_shards or len(payload) != size:
            raise Invalid(f"shard {index} has {len(payload)} bytes, expected {size}")
    chosen = sorted(shards)[: policy.data_shards]
    if chosen == list(range(policy.data_shards)):
        blocks: Sequence[Buffer] = [shards[i] for i in chosen]
    else:
        blocks = _decoder(policy.data_shards, policy.total_shards).decode(
            [shards[i] for i in chosen], chosen)
    return b"".join(blocks)[:segment_length]


def rebuild_shards(policy: EcPolicy, segment: Buffer, indexes: Sequence[int]) -> dict[int, Buffer]:
    """The shards ``indexes`` of an already decoded segment (repair writes these)."""
    all_shards = encode(policy, segment)
    return {i: all_shards[i] for i in indexes}


def verify_shard(payload: Buffer, expected_xxh3: str, what: str = "shard") -> None:
    if shard_checksum(payload) != expected_xxh3:
        raise Corrupt(f"{what}: checksum mismatch")
