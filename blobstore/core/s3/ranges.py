"""The ``Range`` request header -> one inclusive byte range, as S3 reads RFC 7233.

Rules, in the order they apply:
1. No header, or a header that is not exactly one syntactically valid byte range, is
   ignored and the whole object is served (``None``). This covers other units, junk,
   ``bytes=5-3`` (last < first is invalid syntax, RFC 7233 §2.1) and *several* ranges
   (``bytes=0-1,5-6``): S3 does not serve multipart/byteranges, it ignores the header.
2. A valid range that selects no byte of the object is an error, ``InvalidRange`` (416):
   a first byte at or past the end (``start >= size``), a zero-length suffix
   (``bytes=-0``), and any range at all on an empty object.
3. Otherwise the last byte is clamped to ``size - 1``, and a suffix ``bytes=-n`` means the
   last ``min(n, size)`` bytes.

The answer is ``(first, last)``, both inclusive, ``0 <= first <= last < size``; the
``Content-Range`` is ``bytes {first}-{last}/{size}``.
"""

from __future__ import annotations

import re

from blobstore.core.s3.errors import InvalidRange

# Digits beyond this many are semantically "huge": int() of thousands of digits would raise
# ValueError (Python's int digit limit), so longer numbers are treated as this bound.
_MAX_DIGITS = 30
_HUGE = 10**_MAX_DIGITS
_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII | re.IGNORECASE)


def _number(digits: str) -> int:
    return _HUGE if len(digits) > _MAX_DIGITS else int(digits)


def _unsatisfiable(header: str, size: int) -> InvalidRange:
    return InvalidRange(
        extra=(("RangeRequested", header), ("ActualObjectSize", str(size))),
    )


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte range to serve, or None for the whole object."""
    assert size >= 0, size
    if not header:
        return None
    text = header.strip()
    match = _RANGE_RE.fullmatch(text)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        suffix = _number(last_text)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(text, size)
        return max(size - suffix, 0), size - 1
    first = _number(first_text)
    last = _number(last_text) if last_text else _HUGE
    if last < first:
        return None
    if first >= size:
        raise _unsatisfiable(text, size)
    return first, min(last, size - 1)


def content_range(first: int, last: int, size: int) -> str:
    """The ``Content-Range`` header value of a 206 answer."""
    return f"bytes {first}-{last}/{size}"
