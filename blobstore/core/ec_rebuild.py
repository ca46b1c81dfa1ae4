"""Rebuilding chosen shards of a segment from any ``data_shards`` of its others (zfec).

``core/ec.py`` decodes whole segments (the read path) and re-encodes them whole. A repair
needs less: the ``data_shards`` primary blocks, then only the shards it lost.

- ``primary_blocks``: the data blocks, as they are when shards ``0..k-1`` are all in hand
  (zfec is systematic: no arithmetic at all), else decoded from any k shards.
- ``encode_shards``: the wanted shards from the primary blocks: data shards are the blocks
  themselves, parity shards computed (`ec.parity_shards`: ISA-L or zfec) and the wanted kept.
- ``holds_segment``: whether the blocks hold the segment its content id names, the padding
  of the last block excluded. A repair checks it whenever it had to decode; with every data
  shard verified against its recorded xxh3 the blocks ARE the segment.

Parameters are named as everywhere (``data_shards``, ``total_shards``); zfec's own ``m`` is
the total.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

import zfec

from blobstore.core.digests import is_segment_content
from blobstore.core.ec import Buffer, EcPolicy, parity_shards
from blobstore.core.errors import Invalid, Unavailable


@functools.lru_cache(maxsize=16)
def _decoder(data_shards: int, total_shards: int) -> zfec.Decoder:
    return zfec.Decoder(data_shards, total_shards)


def is_systematic(policy: EcPolicy, indexes: Iterable[int]) -> bool:
    """Whether these shards include every data shard (nothing to decode)."""
    return set(range(policy.data_shards)) <= set(indexes)


def primary_blocks(policy: EcPolicy, shards: Mapping[int, Buffer],
                   segment_length: int) -> Sequence[Buffer]:
    """The ``data_shards`` data blocks from any ``data_shards`` of the shards."""
    size = policy.shard_size(segment_length)
    if len(shards) < policy.data_shards:
        raise Unavailable(f"only {len(shards)} of the {policy.data_shards} shards needed")
    for index, payload in shards.items():
        if not 0 <= index < policy.total_shards or len(payload) != size:
            raise Invalid(f"shard {index} has {len(payload)} bytes, expected {size}")
    if is_systematic(policy, shards):
        return [shards[i] for i in range(policy.data_shards)]
    chosen = sorted(shards)[: policy.data_shards]
    return _decoder(policy.data_shards, policy.total_shards).decode(
        [shards[i] for i in chosen], chosen)


def encode_shards(policy: EcPolicy, blocks: Sequence[Buffer],
                  indexes: Iterable[int]) -> dict[int, Buffer]:
    """Shards ``indexes`` from the primary blocks; parity computed only for those wanted."""
    wanted = sorted(set(indexes))
    if any(not 0 <= i < policy.total_shards for i in wanted):
        raise Invalid(f"shard indexes {wanted} out of range for {policy}")
    out: dict[int, Buffer] = {i: blocks[i] for i in wanted if i < policy.data_shards}
    parity = [i for i in wanted if i >= policy.data_shards]
    if parity:
        encoded = parity_shards(policy, blocks)
        out.update((i, encoded[i - policy.data_shards]) for i in parity)
    return out


def holds_segment(blocks: Sequence[Buffer], segment_length: int, segment_id: str) -> bool:
    """True if the first ``segment_length`` bytes of the blocks have content id ``segment_id``."""
    parts = []
    remaining = segment_length
    for block in blocks:
        view = memoryview(block)[:remaining]
        parts.append(view)
        remaining -= len(view)
    return is_segment_content(parts, segment_id)
