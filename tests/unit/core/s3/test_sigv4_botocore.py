"""SigV4 against botocore: requests signed by real boto3 clients verify; tampering does not.

botocore takes the signing time from ``botocore.auth.get_current_datetime``; patching it
freezes the clock, so every vector here is deterministic. Requests are captured at
``before-send`` (nothing leaves the process) and handed to our verifier as aiohttp would:
the path and query as sent, the headers with ``Host`` added the way the HTTP client adds
it, bytes decoded as UTF-8 with surrogateescape.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from botocore.config import Config

from blobstore.core.s3 import errors, sigv4, sigv4_signing

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EXAMPLEKEY"
REGION = "us-east-1"
SIGNED_AT = dt.datetime(2024, 5, 6, 7, 8, 9)
NOW = SIGNED_AT.replace(tzinfo=dt.UTC) + dt.timedelta(seconds=30)
ENDPOINT = "http://127.0.0.1:9000"


@dataclass(frozen=True)
class Wire:
    """A request as the gateway receives it."""

    method: str
    raw_path: str
    query_string: str
    headers: tuple[tuple[str, str], ...]

    def header_map(self) -> dict[str, str]:
        return dict(self.headers)

    def parse(self, now: dt.datetime = NOW) -> sigv4.ParsedAuth:
        return sigv4.parse_authorization(
            self.method, self.raw_path, self.query_string, self.header_map(), now
        )

    def with_header(self, name: str, value: str) -> Wire:
        kept = tuple((k, v) for k, v in self.headers if k.lower() != name.lower())
        return replace(self, headers=(*kept, (name, value)))


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _wire(request: Any) -> Wire:
    parts = urlsplit(request.url)
    headers = [(name, _text(value)) for name, value in request.headers.items()]
    headers.append(("Host", sigv4_signing.host_of(request.url)))
    return Wire(request.method, parts.path, parts.query, tuple(headers))


class _Captured(Exception):
    pass


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=SIGNED_AT):
        yield


def _client(endpoint: str = ENDPOINT, **config: Any) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    return session.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


def _capture(call: Callable[[Any], Any], endpoint: str = ENDPOINT) -> Wire:
    client = _client(endpoint)
    captured: list[Any] = []

    def stop(request: Any, **_: Any) -> None:
        captured.append(request)
        raise _Captured

    client.meta.events.register("before-send", stop)
    with pytest.raises(_Captured):
        call(client)
    return _wire(captured[0])


BOTO3_CALLS: dict[str, Callable[[Any], Any]] = {
    "list_buckets": lambda c: c.list_buckets(),
    "create_bucket": lambda c: c.create_bucket(Bucket="bucket-1"),
    "list_v2_prefix_with_space_and_plus": lambda c: c.list_objects_v2(
        Bucket="b", Prefix="a b+c=d", Delimiter="/", MaxKeys=7, StartAfter="a b/ü"
    ),
    "list_v1_marker": lambda c: c.list_objects(Bucket="b", Marker="m&n=o", Prefix="p q"),
    "put_unicode_key": lambda c: c.put_object(
        Bucket="b", Key="dir/wé ird+=$&?#.txt", Body=b"hello", ContentType="text/plain"
    ),
    "put_metadata": lambda c: c.put_object(
        Bucket="b", Key="k", Body=b"x" * 100, Metadata={"a": "1  2", "b-c": "x"}
    ),
    "get_range_tilde_parens": lambda c: c.get_object(Bucket="b", Key="k~(1)*!'", Range="bytes=0-1"),
    "get_response_overrides": lambda c: c.get_object(
        Bucket="b", Key="k", ResponseContentType="a/b c", ResponseCacheControl="no-cache"
    ),
    "head_object_if_match": lambda c: c.head_object(Bucket="b", Key="k", IfMatch='"abc"'),
    "delete_objects": lambda c: c.delete_objects(
        Bucket="b", Delete={"Objects": [{"Key": "a"}, {"Key": "b", "VersionId": "null"}]}
    ),
    "create_multipart": lambda c: c.create_multipart_upload(Bucket="b", Key="big file"),
    "upload_part": lambda c: c.upload_part(
        Bucket="b", Key="big file", UploadId="u/1+2", PartNumber=3, Body=b"part"
    ),
    "copy_object": lambda c: c.copy_object(
        Bucket="b", Key="dst", CopySource={"Bucket": "src", "Key": "a b/ü"}
    ),
    "get_bucket_location": lambda c: c.get_bucket_location(Bucket="b"),
}


@pytest.mark.parametrize("name", sorted(BOTO3_CALLS))
def test_boto3_requests_verify(name: str, frozen_clock: None) -> None:
    wire = _capture(BOTO3_CALLS[name])
    parsed = wire.parse()
    assert parsed.kind == "header"
    assert parsed.access_key == ACCESS_KEY
    assert parsed.region == REGION
    assert parsed.amz_date == "20240506T070809Z"
    sigv4.check_signature(parsed, SECRET_KEY)


def test_boto3_https_put_streams_with_trailer(frozen_clock: None) -> None:
    """Over https boto3 sends aws-chunked bodies with a CRC32 trailer, payload unsigned."""
    wire = _capture(lambda c: c.put_object(Bucket="b", Key="k", Body=b"hello"), "https://s3.test")
    parsed = wire.parse()
    sigv4.check_signature(parsed, SECRET_KEY)
    assert parsed.payload_hash == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert parsed.payload_kind == "streaming"


def test_boto3_signed_payload_is_claimed(frozen_clock: None) -> None:
    wire = _capture(BOTO3_CALLS["put_unicode_key"])
    parsed = wire.parse()
    assert parsed.payload_kind == "signed"
    assert parsed.payload_hash == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


# -- tampering -----------------------------------------------------------------------------


LIST = "list_v2_prefix_with_space_and_plus"
PUT = "put_unicode_key"
TAMPERING: dict[str, tuple[str, Callable[[Wire], Wire]]] = {
    "method": (LIST, lambda w: replace(w, method="DELETE")),
    "path": (PUT, lambda w: replace(w, raw_path=w.raw_path + "x")),
    "path_space_as_plus": (PUT, lambda w: replace(w, raw_path=w.raw_path.replace("%20", "+"))),
    "path_lowercase_escape": (
        PUT,
        lambda w: replace(w, raw_path=w.raw_path.replace("%C3%A9", "%c3%a9")),
    ),
    "query_value": (LIST, lambda w: replace(w, query_string=w.query_string.replace("7", "8"))),
    "query_space_as_plus": (
        LIST,
        lambda w: replace(w, query_string=w.query_string.replace("%20", "+")),
    ),
    "query_added": (LIST, lambda w: replace(w, query_string=w.query_string + "&fetch-owner=true")),
    "signed_header": (PUT, lambda w: w.with_header("Content-Type", "text/html")),
    "date": (LIST, lambda w: w.with_header("X-Amz-Date", "20240506T070810Z")),
    "host": (LIST, lambda w: w.with_header("Host", "127.0.0.1:9001")),
    "payload_hash": (PUT, lambda w: w.with_header("X-Amz-Content-SHA256", "0" * 64)),
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_tampered_request_is_refused(how: str, frozen_clock: None) -> None:
    call, tamper = TAMPERING[how]
    original = _capture(BOTO3_CALLS[call])
    wire = tamper(original)
    assert wire != original
    parsed = wire.parse()
    with pytest.raises(errors.SignatureDoesNotMatch) as caught:
        sigv4.check_signature(parsed, SECRET_KEY)
    assert dict(caught.value.extra)["CanonicalRequest"] == parsed.canonical_request


def test_wrong_secret_is_refused(frozen_clock: None) -> None:
    parsed = _capture(BOTO3_CALLS["list_buckets"]).parse()
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.check_signature(parsed, SECRET_KEY + "x")


def test_added_unsigned_amz_header_is_refused(frozen_clock: None) -> None:
    wire = _capture(BOTO3_CALLS["put_metadata"]).with_header("x-amz-meta-extra", "1")
    with pytest.raises(errors.AccessDenied) as caught:
        wire.parse()
    assert dict(caught.value.extra) == {"HeadersNotSigned": "x-amz-meta-extra"}


@pytest.mark.parametrize("skew", [dt.timedelta(minutes=16), -dt.timedelta(minutes=16)])
def test_skewed_clock_is_refused(skew: dt.timedelta, frozen_clock: None) -> None:
    wire = _capture(BOTO3_CALLS["list_buckets"])
    with pytest.raises(errors.RequestTimeTooSkewed):
        wire.parse(now=SIGNED_AT.replace(tzinfo=dt.UTC) + skew)
    wire.parse(now=SIGNED_AT.replace(tzinfo=dt.UTC) + skew * 14 / 16)


# -- presigned URLs ------------------------------------------------------------------------


def _presigned(method: str, params: dict[str, Any], expires_s: int) -> Wire:
    client = _client(signature_version="s3v4")
    url = client.generate_presigned_url(method, Params=params, ExpiresIn=expires_s)
    parts = urlsplit(url)
    host = sigv4_signing.host_of(url)
    return Wire(
        "PUT" if method == "put_object" else "GET", parts.path, parts.query, (("Host", host),)
    )


PRESIGN_PARAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "get_plain": ("get_object", {"Bucket": "b", "Key": "k"}),
    "get_unicode_space_plus": ("get_object", {"Bucket": "b", "Key": "a b+c=/ü~(x)"}),
    "get_with_override": (
        "get_object",
        {"Bucket": "b", "Key": "k", "ResponseContentDisposition": 'attachment; filename="a b"'},
    ),
    "put": ("put_object", {"Bucket": "b", "Key": "up load"}),
}


@pytest.mark.parametrize("name", sorted(PRESIGN_PARAMS))
def test_botocore_presigned_urls_verify(name: str, frozen_clock: None) -> None:
    method, params = PRESIGN_PARAMS[name]
    parsed = _presigned(method, params, 600).parse()
    assert parsed.kind == "presigned"
    assert parsed.payload_hash == sigv4.UNSIGNED_PAYLOAD
    sigv4.check_signature(parsed, SECRET_KEY)


def test_presigned_url_expires(frozen_clock: None) -> None:
    wire = _presigned("get_object", {"Bucket": "b", "Key": "k"}, 600)
    signed_at = SIGNED_AT.replace(tzinfo=dt.UTC)
    wire.parse(now=signed_at + dt.timedelta(seconds=600))
    with pytest.raises(errors.AccessDenied, match="Request has expired"):
        wire.parse(now=signed_at + dt.timedelta(seconds=601))
    with pytest.raises(errors.AccessDenied, match="not valid yet"):
        wire.parse(now=signed_at - dt.timedelta(minutes=16))


def test_presigned_url_tampered_query(frozen_clock: None) -> None:
    wire = _presigned("get_object", {"Bucket": "b", "Key": "k", "ResponseContentType": "a"}, 600)
    tampered = replace(
        wire, query_string=wire.query_string.replace("content-type=a", "content-type=b")
    )
    assert tampered != wire
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.check_signature(tampered.parse(), SECRET_KEY)


def test_presigned_url_longer_expiry_is_refused(frozen_clock: None) -> None:
    wire = _presigned("get_object", {"Bucket": "b", "Key": "k"}, 600)
    stretched = replace(
        wire, query_string=wire.query_string.replace("X-Amz-Expires=600", "X-Amz-Expires=6000")
    )
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.check_signature(stretched.parse(), SECRET_KEY)


# -- our signer agrees with botocore -------------------------------------------------------

SIGNER_CASES = [
    ("GET", "/b", [("list-type", "2"), ("prefix", "a b+c"), ("delimiter", "/")], b""),
    ("PUT", "/b/" + sigv4.uri_encode("dir/wé ird+=.txt", encode_slash=False), [], b"hello"),
    ("POST", "/b/k", [("uploads", "")], b""),
    ("PUT", "/b/k", [("partNumber", "1"), ("uploadId", "a/b=c+d")], b"x" * 1000),
]


@pytest.mark.parametrize(("method", "path", "query", "body"), SIGNER_CASES)
def test_our_signer_matches_botocore(
    method: str, path: str, query: list[tuple[str, str]], body: bytes, frozen_clock: None
) -> None:
    import hashlib

    payload = hashlib.sha256(body).hexdigest()
    headers = {"Host": "127.0.0.1:9000", "Content-Type": "text/plain", "X-Amz-Meta-Note": " a  b "}
    ours = sigv4.sign_headers(
        method, path, query, headers, payload, ACCESS_KEY, SECRET_KEY, REGION, SIGNED_AT
    )
    query_string = sigv4.canonical_query_string(query)
    url = f"{ENDPOINT}{path}" + (f"?{query_string}" if query_string else "")
    request = botocore.awsrequest.AWSRequest(
        method=method, url=url, headers=dict(headers), data=body
    )
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    botocore.auth.S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]
    wire = Wire(method, path, query_string, tuple({**headers, **ours}.items()))
    sigv4.check_signature(wire.parse(), SECRET_KEY)


@pytest.mark.parametrize("key", ["k", "a b+c=/ü~(x)"])
def test_our_presigned_url_matches_botocore(key: str, frozen_clock: None) -> None:
    theirs = _client(signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": key}, ExpiresIn=900
    )
    ours = sigv4.presign_url(
        "GET",
        f"{ENDPOINT}/b/{sigv4.uri_encode(key, encode_slash=False)}",
        ACCESS_KEY,
        SECRET_KEY,
        REGION,
        SIGNED_AT,
        expires_s=900,
    )
    assert sorted(urlsplit(ours).query.split("&")) == sorted(urlsplit(theirs).query.split("&"))
    parts = urlsplit(ours)
    wire = Wire("GET", parts.path, parts.query, (("Host", "127.0.0.1:9000"),))
    sigv4.check_signature(wire.parse(), SECRET_KEY)
