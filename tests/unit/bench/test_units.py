"""Sizes and durations as typed on the command line."""

from __future__ import annotations

import pytest

from blobstore.bench.units import format_size, mb_per_s, parse_duration_s, parse_size_bytes
from blobstore.core.errors import Invalid


@pytest.mark.parametrize("text, expected", [
    ("4KiB", 4096), ("1MiB", 1 << 20), ("64MiB", 64 << 20), ("1GiB", 1 << 30),
    ("4kib", 4096), ("65536", 65536), ("100B", 100), ("1MB", 10**6), ("2kB", 2000),
    ("1.5MiB", 3 << 19), (" 8 KiB ", 8192), ("0", 0),
])
def test_parse_size_bytes(text, expected):
    assert parse_size_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "4XB", "-1", "4 Mi B", "1e6"])
def test_parse_size_bytes_refuses_nonsense(text):
    with pytest.raises(Invalid, match="size"):
        parse_size_bytes(text)


@pytest.mark.parametrize("text, expected", [
    ("10", 10.0), ("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5), ("1h", 3600.0),
])
def test_parse_duration_s(text, expected):
    assert parse_duration_s(text) == expected


def test_parse_duration_refuses_nonsense():
    with pytest.raises(Invalid, match="duration"):
        parse_duration_s("soon")


@pytest.mark.parametrize("size, text", [
    (4096, "4KiB"), (1 << 20, "1MiB"), (64 << 20, "64MiB"), (1 << 30, "1GiB"), (1000, "1000B"),
    (0, "0B"), (1536, "1536B"),
])
def test_format_size(size, text):
    assert format_size(size) == text


def test_mb_per_s_is_decimal():
    assert mb_per_s(10**6, 1.0) == 1.0
    assert mb_per_s(123, 0.0) == 0.0
