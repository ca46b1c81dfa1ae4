"""Parsers never raise anything but S3Error, whatever they are fed (hypothesis).

Inputs are either random or a valid request with one part replaced by something random, so
the search reaches the deep checks and not only the first refusal.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blobstore.core.s3 import errors, sigv4, xml

NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text as a server may hand it over: anything, including surrogates (undecodable bytes).
any_text = st.text(st.characters(codec=None, categories=None), max_size=80)
ascii_text = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=80)
fragments = st.sampled_from(
    [
        "",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 ",
        "Credential=",
        "SignedHeaders=host",
        "Signature=",
        "AK/20240506/us-east-1/s3/aws4_request",
        "20240506T070809Z",
        "UNSIGNED-PAYLOAD",
        sigv4.EMPTY_SHA256,
        "=",
        ",",
        ";",
        "/",
        "%",
        "%ff",
        "&",
        "\udcff",
        "\ud800",
        "١",
        "Fri, 24 May 2013 00:00:00 GMT",
        "Mon, 1 Jan 0001 00:00:00 +0500",
        "Fri, 31 Dec 9999 23:59:59 -1200",
        "X-Amz-Expires=",
        "X-Amz-Signature=",
    ]
)
pieces = st.lists(fragments | any_text, max_size=6).map("".join)
header_names = st.sampled_from(
    ["Authorization", "x-amz-date", "Date", "host", "x-amz-content-sha256", "x-amz-meta-a"]
)


def _valid_request() -> tuple[str, str, dict[str, str]]:
    headers = {"Host": "h", "x-amz-meta-a": "1"}
    query = [("prefix", "a b"), ("list-type", "2")]
    headers |= sigv4.sign_headers(
        "GET", "/b", query, headers, sigv4.EMPTY_SHA256, "AK", "SK", "us-east-1", NOW
    )
    return "/b", sigv4.canonical_query_string(query), headers


def _presigned_query() -> str:
    url = sigv4.presign_url("GET", "http://h/b/k?x=1", "AK", "SK", "us-east-1", NOW)
    return url.partition("?")[2]


def _check(method: str, path: str, query: str, headers: dict[str, str], now: dt.datetime) -> None:
    try:
        parsed = sigv4.parse_authorization(method, path, query, headers, now)
    except errors.S3Error:
        return
    try:
        sigv4.check_signature(parsed, "SK")
        parsed.payload_kind  # noqa: B018 - must not raise either
    except errors.S3Error:
        return


@FUZZ
@given(
    method=st.sampled_from(["GET", "PUT", "get", ""]) | any_text,
    path=pieces,
    query=pieces,
    headers=st.dictionaries(header_names | any_text, pieces, max_size=6),
    now=st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1)),
)
def test_parse_authorization_random(
    method: str, path: str, query: str, headers: dict[str, str], now: dt.datetime
) -> None:
    _check(method, path, query, headers, now)


@FUZZ
@given(
    name=header_names,
    value=pieces,
    skew_s=st.integers(-2000, 2000),
    replace_query=st.none() | pieces,
)
def test_parse_authorization_mutated_header_request(
    name: str, value: str, skew_s: int, replace_query: str | None
) -> None:
    path, query, headers = _valid_request()
    headers = {**headers, name: value}
    query = query if replace_query is None else replace_query
    _check("GET", path, query, headers, NOW + dt.timedelta(seconds=skew_s))


@FUZZ
@given(
    drop=st.integers(0, 12),
    value=pieces,
    extra_header=st.none() | st.tuples(header_names, pieces),
    skew_s=st.integers(-5000, 5000),
)
def test_parse_authorization_mutated_presigned_request(
    drop: int, value: str, extra_header: tuple[str, str] | None, skew_s: int
) -> None:
    parts = _presigned_query().split("&")
    index = drop % len(parts)
    name = parts[index].partition("=")[0]
    parts[index] = f"{name}={value}"
    headers = {"Host": "h"}
    if extra_header is not None:
        headers[extra_header[0]] = extra_header[1]
    _check("GET", "/b/k", "&".join(parts), headers, NOW + dt.timedelta(seconds=skew_s))


xml_fragments = st.sampled_from(
    [
        b"<CreateBucketConfiguration>",
        b"</CreateBucketConfiguration>",
        b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
        b"<LocationConstraint>",
        b"</LocationConstraint>",
        b"<LocationConstraint/>",
        b'<?xml version="1.0" encoding="UTF-16"?>',
        b"<!DOCTYPE x>",
        b"<!ENTITY a 'b'>",
        b"&amp;",
        b"&a;",
        b"<![CDATA[x]]>",
        b"<!-- c -->",
        b"<?pi x?>",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"\x00",
        b"us-east-1",
    ]
)


@FUZZ
@given(st.lists(xml_fragments | st.binary(max_size=20), max_size=10).map(b"".join))
def test_xml_parser_only_raises_malformed_xml(body: bytes) -> None:
    try:
        result = xml.parse_create_bucket_configuration(body)
    except errors.MalformedXML:
        return
    assert result is None or isinstance(result, str)


@FUZZ
@given(body=st.binary(max_size=200), root=st.sampled_from(["Delete", "CompleteMultipartUpload"]))
def test_parse_document_random_bytes(body: bytes, root: str) -> None:
    try:
        xml.parse_document(body, root)
    except errors.MalformedXML:
        pass
