"""S3 object listing: prefix, delimiter, common prefixes and paging (pure).

The input is the bucket's objects as ``ObjectSummary`` values in key order. Key order is S3's:
the binary order of the keys' UTF-8 bytes, which for Python ``str`` of Unicode scalar values
is the same as ``str`` comparison (code point order), so this module compares ``str``.

Rules:

1. An entry is listed only if its key starts with ``prefix`` and sorts after ``start_after``.
   Keys that start with ``prefix`` form one contiguous run in key order, so the first key past
   the run ends the listing.
2. With a non-empty ``delimiter``, a key whose remainder after ``prefix`` contains the
   delimiter rolls up into the common prefix ``prefix + remainder[:end of first delimiter]``.
   A common prefix is one entry: it counts once toward ``max_keys`` and appears once.
3. A common prefix equal to ``start_after`` is not listed, and neither is any key under it:
   it was the last entry of the previous page. This is how paging continues after a page that
   ends in a common prefix. (A ``start_after`` strictly inside a common prefix, such as
   ``photos/b`` for ``photos/``, does list ``photos/`` once more if keys after the marker
   roll up into it: nothing after the marker is hidden.)
4. A page holds at most ``max_keys`` entries (keys plus common prefixes). It is truncated iff
   one more entry exists after its last one; ``next_marker`` is then that last entry (a key
   or a common prefix) and the next page is asked for with ``start_after=next_marker``.
   Concatenating the pages gives the unpaged listing, with nothing repeated.
5. ``max_keys == 0`` gives an empty page that is not truncated.

Skipping a rolled-up prefix: once a key has rolled up into a common prefix, every later key
under that prefix is redundant. :meth:`ListingBuilder.offer` returns that prefix, so a caller
with a seekable cursor can jump to :func:`prefix_successor` of its UTF-8 bytes (the smallest
byte string greater than every string that starts with the prefix) instead of reading the
keys one by one. The meta state machine does exactly that with ``Cursor.set_range`` on LMDB,
so a listing with a delimiter costs one seek per common prefix, not one read per key. A plain
iterable (:func:`list_page`) just goes on, and the builder ignores the redundant keys.
"""

from __future__ import annotations

from collections.abc import Iterable

from blobstore.core.errors import Invalid
from blobstore.core.records import ListPage, ObjectSummary

MAX_KEYS_LIMIT = 1000  # S3's page size ceiling; larger requests are clamped to it


class ListingBuilder:
    """Consumes summaries in key order and builds one page (h11-style: feed, then read).

    Invariants: ``len(entries) + len(common_prefixes) <= max_keys``; entries and prefixes are
    each strictly increasing; ``is_truncated`` implies ``next_marker`` is the last entry.
    """

    def __init__(self, *, prefix: str = "", delimiter: str = "", start_after: str = "",
                 max_keys: int = MAX_KEYS_LIMIT) -> None:
        if max_keys < 0:
            raise Invalid(f"max_keys must be >= 0, not {max_keys}")
        self.prefix = prefix
        self.delimiter = delimiter
        self.start_after = start_after
        self.max_keys = min(max_keys, MAX_KEYS_LIMIT)
        self._entries: list[ObjectSummary] = []
        self._common_prefixes: list[str] = []
        self._last_entry: str | None = None
        self._last_prefix: str | None = None
        self._truncated = False
        self._exhausted = self.max_keys == 0

    @property
    def done(self) -> bool:
        """True once no further summary can change the page; the caller stops feeding."""
        return self._truncated or self._exhausted

    def first_key(self) -> str:
        """The smallest key worth reading; the caller may start its scan here."""
        return max(self.prefix, self.start_after)

    def offer(self, summary: ObjectSummary) -> str | None:
        """Feed the next summary in key order.

        Returns a common prefix when every further key under it is redundant (the caller may
        seek past them with :func:`prefix_successor`), else None.
        """
        if self.done:
            return None
        key = summary.key
        if not key.startswith(self.prefix):
            if key > self.prefix:
                self._exhausted = True  # past the contiguous run of keys under the prefix
            return None
        if key <= self.start_after:
            return None
        common = self._common_prefix(key)
        if common is not None and common in (self.start_after, self._last_prefix):
            return common
        if self._count() == self.max_keys:
            self._truncated = True
            return None
        if common is None:
            self._entries.append(summary)
            self._last_entry = key
            return None
        self._common_prefixes.append(common)
        self._last_prefix = common
        self._last_entry = common
        return common

    def finish(self) -> None:
        """The input ran out: the page is complete and not truncated."""
        self._exhausted = True

    def page(self) -> ListPage:
        return ListPage(entries=list(self._entries), common_prefixes=list(self._common_prefixes),
                        is_truncated=self._truncated,
                        next_marker=self._last_entry if self._truncated else None)

    def _count(self) -> int:
        return len(self._entries) + len(self._common_prefixes)

    def _common_prefix(self, key: str) -> str | None:
        if not self.delimiter:
            return None
        position = key.find(self.delimiter, len(self.prefix))
        if position < 0:
            return None
        return key[:position + len(self.delimiter)]


def list_page(summaries: Iterable[ObjectSummary], *, prefix: str = "", delimiter: str = "",
              start_after: str = "", max_keys: int = MAX_KEYS_LIMIT) -> ListPage:
    """One page over summaries in key order (they may start anywhere before the page)."""
    builder = ListingBuilder(prefix=prefix, delimiter=delimiter, start_after=start_after,
                             max_keys=max_keys)
    for summary in summaries:
        if builder.done:
            break
        builder.offer(summary)
    builder.finish()
    return builder.page()


def prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every byte string that starts with ``prefix``.

    None when there is none (``prefix`` empty or all 0xff). UTF-8 never contains 0xff, so for
    an encoded non-empty prefix this is the prefix with its last byte incremented.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])
