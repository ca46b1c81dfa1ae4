"""S3 listing (core/listing.py): table tests, and paging checked against a dumb model."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blobstore.core.errors import Invalid
from blobstore.core.listing import ListingBuilder, list_page, prefix_successor
from blobstore.core.records import ListPage, ObjectSummary


def summaries(keys: list[str]) -> list[ObjectSummary]:
    return [ObjectSummary(key=k, size=len(k), etag="e", created_ns=0) for k in sorted(set(keys))]


def keys_of(page: ListPage) -> list[str]:
    return [entry.key for entry in page.entries]


KEYS = ["a", "photos/2024/a.jpg", "photos/2024/b.jpg", "photos/2025/c.jpg", "photos/x",
        "readme", "videos/v.mp4"]


def test_no_delimiter_lists_every_key_in_order() -> None:
    page = list_page(summaries(KEYS))
    assert keys_of(page) == sorted(KEYS)
    assert page.common_prefixes == [] and not page.is_truncated and page.next_marker is None


def test_delimiter_rolls_up_common_prefixes() -> None:
    page = list_page(summaries(KEYS), delimiter="/")
    assert keys_of(page) == ["a", "readme"]
    assert page.common_prefixes == ["photos/", "videos/"]


def test_prefix_and_delimiter() -> None:
    page = list_page(summaries(KEYS), prefix="photos/", delimiter="/")
    assert keys_of(page) == ["photos/x"]
    assert page.common_prefixes == ["photos/2024/", "photos/2025/"]


def test_common_prefix_counts_once_and_page_ends_on_it() -> None:
    page = list_page(summaries(KEYS), delimiter="/", max_keys=2)
    assert keys_of(page) == ["a"] and page.common_prefixes == ["photos/"]
    assert page.is_truncated and page.next_marker == "photos/"
    second = list_page(summaries(KEYS), delimiter="/", max_keys=2, start_after="photos/")
    assert keys_of(second) == ["readme"] and second.common_prefixes == ["videos/"]
    assert not second.is_truncated


def test_start_after_inside_a_common_prefix_shows_it_again() -> None:
    page = list_page(summaries(KEYS), delimiter="/", start_after="photos/2024/a.jpg")
    assert page.common_prefixes == ["photos/", "videos/"]


def test_max_keys_zero_is_empty_and_not_truncated() -> None:
    page = list_page(summaries(KEYS), max_keys=0)
    assert page == ListPage(entries=[], common_prefixes=[], is_truncated=False)


def test_exact_fit_is_not_truncated() -> None:
    page = list_page(summaries(["a", "b"]), max_keys=2)
    assert keys_of(page) == ["a", "b"] and not page.is_truncated


def test_negative_max_keys_is_invalid() -> None:
    with pytest.raises(Invalid):
        ListingBuilder(max_keys=-1)


def test_multi_character_delimiter_and_non_ascii_order() -> None:
    keys = ["a--b", "a--c", "b", "é--x", "z", "\U0001f600"]
    page = list_page(summaries(keys), delimiter="--")
    assert page.common_prefixes == ["a--", "é--"]
    assert keys_of(page) == ["b", "z", "\U0001f600"]


def test_prefix_successor() -> None:
    assert prefix_successor(b"ab/") == b"ab0"
    assert prefix_successor(b"a\xff\xff") == b"b"
    assert prefix_successor(b"") is None
    assert prefix_successor(b"\xff") is None


# ---- property tests against a dumb model ------------------------------------------------

ALPHABET = ["a", "b", "/", "é", "\U0001f600"]
key_text = st.text(alphabet=ALPHABET, min_size=1, max_size=6)


def model_listing(keys: list[str], prefix: str, delimiter: str, start_after: str) -> list[str]:
    """Every entry (key or common prefix) of the unpaged listing, naively, in order."""
    out: list[str] = []
    for key in sorted(set(keys), key=lambda k: k.encode()):
        if not key.startswith(prefix) or key <= start_after:
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common = prefix + rest[:rest.index(delimiter) + len(delimiter)]
            if common != start_after and common not in out:
                out.append(common)
        else:
            out.append(key)
    return out


def page_items(page: ListPage) -> list[str]:
    return sorted(keys_of(page) + page.common_prefixes, key=lambda k: k.encode())


def seeking_listing(keys: list[str], **params: object) -> ListPage:
    """What the meta state machine does: seek, and jump past every rolled-up prefix."""
    ordered = sorted(set(keys), key=lambda k: k.encode())
    encoded = [k.encode() for k in ordered]
    builder = ListingBuilder(**params)  # type: ignore[arg-type]
    position = bisect.bisect_left(encoded, builder.first_key().encode())
    while not builder.done:
        if position >= len(ordered):
            builder.finish()
            break
        skip = builder.offer(summaries([ordered[position]])[0])
        position += 1
        if skip is not None:
            successor = prefix_successor(skip.encode())
            assert successor is not None
            position = max(position, bisect.bisect_left(encoded, successor))
    return builder.page()


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(key_text, max_size=30), prefix=st.sampled_from(["", "a", "a/", "é"]),
       delimiter=st.sampled_from(["", "/", "b", "/a", "\U0001f600"]),
       start_after=st.one_of(st.just(""), key_text),
       page_sizes=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=5))
def test_pages_concatenate_to_the_unpaged_listing(keys: list[str], prefix: str, delimiter: str,
                                                  start_after: str,
                                                  page_sizes: list[int]) -> None:
    expected = model_listing(keys, prefix, delimiter, start_after)
    unpaged = list_page(summaries(keys), prefix=prefix, delimiter=delimiter,
                        start_after=start_after)
    assert page_items(unpaged) == expected and not unpaged.is_truncated

    collected: list[str] = []
    marker = start_after
    for round_number in range(len(expected) + 2):
        max_keys = page_sizes[round_number % len(page_sizes)]
        params = {"prefix": prefix, "delimiter": delimiter, "start_after": marker,
                  "max_keys": max_keys}
        page = list_page(summaries(keys), **params)  # type: ignore[arg-type]
        assert seeking_listing(keys, **params) == page
        items = page_items(page)
        assert len(items) <= max_keys
        collected += items
        if not page.is_truncated:
            assert page.next_marker is None
            break
        assert items and page.next_marker == items[-1]
        marker = page.next_marker
    else:
        pytest.fail("paging did not terminate")
    assert collected == expected
    assert len(set(collected)) == len(collected)


@given(prefix=st.binary(max_size=4), value=st.binary(max_size=6))
def test_prefix_successor_bounds_exactly_the_prefixed_strings(prefix: bytes, value: bytes) -> None:
    successor = prefix_successor(prefix)
    if successor is None:
        assert prefix.strip(b"\xff") == b""
        return
    assert value.startswith(prefix) == (prefix <= value < successor)
