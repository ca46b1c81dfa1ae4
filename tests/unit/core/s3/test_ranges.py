"""Range headers: a table from RFC 7233 and S3 behaviour, and a property against a model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blobstore.core.s3 import errors, ranges

SERVED = [
    (None, 10, None),
    ("", 10, None),
    ("bytes=0-0", 10, (0, 0)),
    ("bytes=0-9", 10, (0, 9)),
    ("bytes=2-5", 10, (2, 5)),
    ("bytes=5-", 10, (5, 9)),
    ("bytes=0-", 10, (0, 9)),
    ("bytes=9-", 10, (9, 9)),
    ("bytes=5-100", 10, (5, 9)),
    ("bytes=-3", 10, (7, 9)),
    ("bytes=-10", 10, (0, 9)),
    ("bytes=-100", 10, (0, 9)),
    ("BYTES=1-2", 10, (1, 2)),
    (" bytes=1-2 ", 10, (1, 2)),
    ("bytes=0-" + "9" * 40, 10, (0, 9)),
    # ignored: not one valid range
    ("bytes=5-3", 10, None),
    ("bytes=-", 10, None),
    ("bytes=a-b", 10, None),
    ("bytes=1-2,4-5", 10, None),
    ("bytes=0-0,-1", 10, None),
    ("items=0-1", 10, None),
    ("bytes 0-1", 10, None),
    ("bytes=1 -2", 10, None),
    ("bytes=١-٢", 10, None),
    ("bytes=5-3", 0, None),
]

UNSATISFIABLE = [
    ("bytes=10-", 10),
    ("bytes=10-20", 10),
    ("bytes=-0", 10),
    ("bytes=0-", 0),
    ("bytes=0-0", 0),
    ("bytes=-1", 0),
    ("bytes=" + "9" * 40 + "-", 10),
]


@pytest.mark.parametrize(("header", "size", "expected"), SERVED)
def test_served(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert ranges.parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), UNSATISFIABLE)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(errors.InvalidRange) as caught:
        ranges.parse_range(header, size)
    assert caught.value.status == 416
    assert dict(caught.value.extra)["ActualObjectSize"] == str(size)


def test_content_range() -> None:
    assert ranges.content_range(0, 9, 10) == "bytes 0-9/10"


def _model(first: int | None, last: int | None, size: int) -> tuple[int, int] | None | str:
    """The rules written the long way: 'ignore', 'unsatisfiable' or the range."""
    if first is None and last is None:
        return None
    if first is None:
        assert last is not None
        if last == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - last), size - 1)
    if last is not None and last < first:
        return None
    if first >= size:
        return "unsatisfiable"
    return (first, size - 1 if last is None else min(last, size - 1))


@given(
    first=st.none() | st.integers(0, 50),
    last=st.none() | st.integers(0, 50),
    size=st.integers(0, 40),
)
def test_matches_model(first: int | None, last: int | None, size: int) -> None:
    header = (
        "bytes=" + ("" if first is None else str(first)) + "-" + ("" if last is None else str(last))
    )
    expected = _model(first, last, size)
    if expected == "unsatisfiable":
        with pytest.raises(errors.InvalidRange):
            ranges.parse_range(header, size)
        return
    result = ranges.parse_range(header, size)
    assert result == expected
    if result is not None:
        assert 0 <= result[0] <= result[1] < size


@given(header=st.text(max_size=60), size=st.integers(0, 10**12))
def test_never_raises_anything_else(header: str, size: int) -> None:
    try:
        result = ranges.parse_range(header, size)
    except errors.InvalidRange:
        return
    if result is not None:
        assert 0 <= result[0] <= result[1] < size
