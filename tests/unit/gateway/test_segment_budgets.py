"""The gateway's in-flight budgets are bytes of segment data: at 4 MiB segments they give
the counts that were measured and tuned (3 per upload, 12 per gateway, 2 read ahead), and
a large segment size never takes a budget below its floor."""

from __future__ import annotations

from blobstore.gateway.state import (
    READ_AHEAD_BYTES,
    SEGMENT_BYTES_IN_FLIGHT_PER_GATEWAY,
    SEGMENT_BYTES_IN_FLIGHT_PER_REQUEST,
    segments_within,
)

MIB = 1024 * 1024


def test_four_mib_segments_keep_the_tuned_counts() -> None:
    assert segments_within(SEGMENT_BYTES_IN_FLIGHT_PER_REQUEST, 4 * MIB, 2) == 3
    assert segments_within(SEGMENT_BYTES_IN_FLIGHT_PER_GATEWAY, 4 * MIB, 2) == 12
    assert segments_within(READ_AHEAD_BYTES, 4 * MIB, 1) == 2


def test_large_segments_stop_at_the_floor() -> None:
    assert segments_within(SEGMENT_BYTES_IN_FLIGHT_PER_REQUEST, 64 * MIB, 2) == 2
    assert segments_within(READ_AHEAD_BYTES, 256 * MIB, 1) == 1
    assert segments_within(SEGMENT_BYTES_IN_FLIGHT_PER_GATEWAY, 8 * MIB, 2) == 6
