"""Shard header: a pinned golden vector, round trips, and every damaged header is refused."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blobstore.core import shard_format as sf
from blobstore.core.errors import Corrupt, Invalid

# Pinned: changing any of these bytes changes the on-disk format, which needs a new version.
GOLDEN_FIELDS = dict(data_shards=4, parity_shards=2, index=5, segment_length=4 * 1024 * 1024,
                     payload_length=1024 * 1024, payload_xxh3_hex="9555e8555c62dcfd")
GOLDEN_HEADER = bytes.fromhex(
    "42535348"            # magic BSSH
    "0100"                # format version 1
    "04" "02" "05"        # data_shards, parity_shards, index
    "00000000000000"      # reserved
    "0000400000000000"    # segment_length 4 MiB
    "0000100000000000"    # payload_length 1 MiB
    "fddc625c55e85595"    # payload xxh3 0x9555e8555c62dcfd
    "ad42900c33c81216"    # xxh3 of the 40 bytes above
)


def test_payload_xxh3_is_16_hex_digits_of_xxh3_64():
    assert sf.payload_xxh3(b"hello") == "9555e8555c62dcfd"
    assert sf.payload_xxh3(memoryview(b"hello")) == "9555e8555c62dcfd"
    assert sf.payload_xxh3(b"") == "2d06800538d394c2"


def test_golden_vector():
    assert sf.HEADER_SIZE == 48
    assert sf.pack_header(**GOLDEN_FIELDS) == GOLDEN_HEADER
    header = sf.unpack_header(GOLDEN_HEADER)
    assert header == sf.ShardHeader(data_shards=4, parity_shards=2, index=5,
                                    segment_length=4 * 1024 * 1024, payload_length=1024 * 1024,
                                    payload_xxh3="9555e8555c62dcfd", format_version=1)
    assert header.total_shards == 6


def test_unpack_ignores_the_payload_after_the_header():
    assert sf.unpack_header(GOLDEN_HEADER + b"payload").index == 5


@pytest.mark.parametrize("position", range(sf.HEADER_SIZE))
def test_every_flipped_bit_of_the_golden_header_is_detected(position):
    for mask in range(1, 256):
        damaged = bytearray(GOLDEN_HEADER)
        damaged[position] ^= mask
        with pytest.raises(Corrupt):
            sf.unpack_header(bytes(damaged))


headers = st.builds(
    dict,
    data_shards=st.integers(1, 255),
    parity_shards=st.integers(0, 255),
    index_fraction=st.floats(0, 1, exclude_max=True),
    segment_length=st.integers(0, 2**64 - 1),
    payload_length=st.integers(0, 2**64 - 1),
    payload_xxh3_hex=st.integers(0, 2**64 - 1).map(lambda n: f"{n:016x}"),
)


def _fields(draw: dict) -> dict:
    fields = dict(draw)
    total = min(fields["data_shards"] + fields["parity_shards"], 256)
    fields["index"] = int(fields.pop("index_fraction") * total)
    return fields


@settings(max_examples=300, deadline=None)
@given(draw=headers)
def test_round_trip(draw):
    fields = _fields(draw)
    packed = sf.pack_header(**fields)
    assert len(packed) == sf.HEADER_SIZE
    header = sf.unpack_header(packed)
    assert (header.data_shards, header.parity_shards, header.index, header.segment_length,
            header.payload_length, header.payload_xxh3) == (
        fields["data_shards"], fields["parity_shards"], fields["index"],
        fields["segment_length"], fields["payload_length"], fields["payload_xxh3_hex"])


@settings(max_examples=300, deadline=None)
@given(draw=headers, position=st.integers(0, sf.HEADER_SIZE - 1), mask=st.integers(1, 255))
def test_any_flipped_byte_is_detected(draw, position, mask):
    damaged = bytearray(sf.pack_header(**_fields(draw)))
    damaged[position] ^= mask
    with pytest.raises(Corrupt):
        sf.unpack_header(bytes(damaged))


@pytest.mark.parametrize("length", [0, 1, 4, 47])
def test_short_input_is_corrupt(length):
    with pytest.raises(Corrupt, match="truncated"):
        sf.unpack_header(GOLDEN_HEADER[:length])


def test_bad_magic_and_unknown_version_are_named():
    with pytest.raises(Corrupt, match="magic"):
        sf.unpack_header(b"XXXX" + GOLDEN_HEADER[4:])
    with pytest.raises(Corrupt, match="version"):
        sf.unpack_header(GOLDEN_HEADER[:4] + b"\x02\x00" + GOLDEN_HEADER[6:])


@pytest.mark.parametrize("change", [
    dict(data_shards=0),
    dict(data_shards=256),
    dict(parity_shards=-1),
    dict(parity_shards=256),
    dict(index=6),
    dict(index=-1),
    dict(segment_length=-1),
    dict(payload_length=2**64),
    dict(payload_xxh3_hex="9555E8555C62DCFD"),
    dict(payload_xxh3_hex="9555e8555c62dcf"),
    dict(payload_xxh3_hex="../../etc/passwd"),
])
def test_pack_refuses_values_the_format_cannot_hold(change):
    with pytest.raises(Invalid):
        sf.pack_header(**{**GOLDEN_FIELDS, **change})


def test_validate_xxh3_hex():
    assert sf.validate_xxh3_hex("0123456789abcdef") == "0123456789abcdef"
    for bad in ["", "0123456789abcdeg", "0123456789abcdef0", None, 12]:
        with pytest.raises(Invalid):
            sf.validate_xxh3_hex(bad)  # type: ignore[arg-type]
