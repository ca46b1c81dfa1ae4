"""Object content derived from (seed, key, generation): every byte of every read can be
checked against what some write put there, without keeping the bytes.

The first 32 bytes are a readable tag (``gen=<n> key-hash=<h>``) so that a wrong read says
which write it came from; the rest is a seeded pseudo-random stream.
"""

from __future__ import annotations

import hashlib
import random

TAG_BYTES = 32


def object_bytes(seed: int, key: str, generation: int, size: int) -> bytes:
    key_hash = hashlib.sha256(key.encode()).hexdigest()[:12]
    tag = f"gen={generation} key={key_hash}".encode().ljust(TAG_BYTES, b".")[:TAG_BYTES]
    stream_seed = int.from_bytes(
        hashlib.sha256(f"{seed}/{key}/{generation}".encode()).digest()[:8], "big")
    body = random.Random(stream_seed).randbytes(max(0, size - TAG_BYTES))
    return (tag + body)[:size]


def object_digest(seed: int, key: str, generation: int, size: int) -> str:
    return hashlib.sha256(object_bytes(seed, key, generation, size)).hexdigest()
