"""SigV4: the published AWS S3 examples, the canonical forms, and every refusal.

The four header vectors and the presigned vector are the worked examples of the S3 API
reference ("Signature Calculations for the Authorization Header", "Query String
Authentication"), all signed at 2013-05-24T00:00:00Z with the documentation's key pair.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from blobstore.core.s3 import errors, sigv4, sigv4_signing

AWS_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_NOW = dt.datetime(2013, 5, 24, tzinfo=dt.UTC)
AWS_HOST = "examplebucket.s3.amazonaws.com"
CREDENTIAL = f"{AWS_ACCESS_KEY}/20130524/us-east-1/s3/aws4_request"


def _auth(signed_headers: str, signature: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={CREDENTIAL},"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )


AWS_HEADER_VECTORS = {
    "get_object_range": (
        "GET",
        "/test.txt",
        "",
        {
            "Host": AWS_HOST,
            "Range": "bytes=0-9",
            "x-amz-content-sha256": sigv4.EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
            "Authorization": _auth(
                "host;range;x-amz-content-sha256;x-amz-date",
                "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        },
    ),
    "put_object": (
        "PUT",
        "/test%24file.text",
        "",
        {
            "Host": AWS_HOST,
            "Date": "Fri, 24 May 2013 00:00:00 GMT",
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "x-amz-content-sha256": hashlib.sha256(b"Welcome to Amazon S3.").hexdigest(),
            "Authorization": _auth(
                "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
            ),
        },
    ),
    "get_bucket_lifecycle": (
        "GET",
        "/",
        "lifecycle",
        {
            "Host": AWS_HOST,
            "x-amz-content-sha256": sigv4.EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
            "Authorization": _auth(
                "host;x-amz-content-sha256;x-amz-date",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
        },
    ),
    "list_objects": (
        "GET",
        "/",
        "max-keys=2&prefix=J",
        {
            "Host": AWS_HOST,
            "x-amz-content-sha256": sigv4.EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
            "Authorization": _auth(
                "host;x-amz-content-sha256;x-amz-date",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        },
    ),
}

AWS_PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)


@pytest.mark.parametrize("name", sorted(AWS_HEADER_VECTORS))
def test_aws_documented_header_vectors(name: str) -> None:
    method, path, query, headers = AWS_HEADER_VECTORS[name]
    parsed = sigv4.parse_authorization(method, path, query, headers, AWS_NOW)
    assert parsed.access_key == AWS_ACCESS_KEY
    assert parsed.scope == "20130524/us-east-1/s3/aws4_request"
    sigv4.check_signature(parsed, AWS_SECRET_KEY)
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.check_signature(parsed, AWS_SECRET_KEY.lower())


def test_aws_documented_presigned_vector() -> None:
    parsed = sigv4.parse_authorization(
        "GET", "/test.txt", AWS_PRESIGNED_QUERY, {"Host": AWS_HOST}, AWS_NOW
    )
    assert parsed.kind == "presigned"
    sigv4.check_signature(parsed, AWS_SECRET_KEY)


def test_aws_documented_canonical_request() -> None:
    method, path, query, headers = AWS_HEADER_VECTORS["get_object_range"]
    parsed = sigv4.parse_authorization(method, path, query, headers, AWS_NOW)
    assert parsed.canonical_request == (
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        f"x-amz-content-sha256:{sigv4.EMPTY_SHA256}\nx-amz-date:20130524T000000Z\n\n"
        f"host;range;x-amz-content-sha256;x-amz-date\n{sigv4.EMPTY_SHA256}"
    )
    assert parsed.string_to_sign == (
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    )


def test_header_names_any_case_and_raw_path_with_query() -> None:
    method, path, query, headers = AWS_HEADER_VECTORS["list_objects"]
    shouted = {name.upper(): value for name, value in headers.items()}
    parsed = sigv4.parse_authorization(method, "/?max-keys=2&prefix=J", query, shouted, AWS_NOW)
    sigv4.check_signature(parsed, AWS_SECRET_KEY)


def test_naive_now_is_utc() -> None:
    method, path, query, headers = AWS_HEADER_VECTORS["list_objects"]
    sigv4.parse_authorization(method, path, query, headers, AWS_NOW.replace(tzinfo=None))


# -- our signer ----------------------------------------------------------------------------

NOW = dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=dt.UTC)


def _signed(
    headers: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
    payload: str = sigv4.EMPTY_SHA256,
    path: str = "/b/k",
    region: str = "us-east-1",
) -> tuple[str, str, dict[str, str]]:
    headers = {"Host": "s3.test:9000", **(headers or {})}
    query = query or []
    added = sigv4.sign_headers("GET", path, query, headers, payload, "AK", "SK", region, NOW)
    return path, sigv4.canonical_query_string(query), {**headers, **added}


def _parse(
    path: str, query: str, headers: dict[str, str], now: dt.datetime = NOW, **kwargs: str
) -> sigv4.ParsedAuth:
    return sigv4.parse_authorization("GET", path, query, headers, now, **kwargs)


def test_signer_round_trip_with_repeated_and_spaced_headers() -> None:
    path, query, headers = _signed(
        {"X-Amz-Meta-A": "  x   y  ", "Content-Type": "a/b"},
        [("prefix", "a b+c"), ("list-type", "2"), ("prefix", "a")],
    )
    assert query == "list-type=2&prefix=a&prefix=a%20b%2Bc"
    parsed = _parse(path, query, headers)
    assert "x-amz-meta-a:x y" in parsed.canonical_request.splitlines()
    assert parsed.signed_headers == (
        "content-type",
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-meta-a",
    )
    sigv4.check_signature(parsed, "SK")


def test_multidict_repeated_header_values_are_joined() -> None:
    class Multi(dict[str, str]):
        def items(self):  # type: ignore[override]
            return [*super().items(), ("x-amz-meta-a", "second")]

    path, query, headers = _signed({"x-amz-meta-a": "first"})
    parsed = _parse(path, query, Multi(headers))
    assert "x-amz-meta-a:first,second" in parsed.canonical_request.splitlines()
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.check_signature(parsed, "SK")


def test_date_header_instead_of_x_amz_date() -> None:
    headers = {"Host": "h", "Date": "Thu, 29 Feb 2024 23:59:59 GMT"}
    lowered = {k.lower(): [v] for k, v in headers.items()}
    lowered["x-amz-content-sha256"] = [sigv4.EMPTY_SHA256]
    signed = ("date", "host", "x-amz-content-sha256")
    canonical = sigv4_signing.canonical_request("GET", "/", "", lowered, signed, sigv4.EMPTY_SHA256)
    scope = "20240229/us-east-1/s3/aws4_request"
    key = sigv4.signing_key("SK", "20240229", "us-east-1")
    signature = sigv4_signing.hex_hmac(
        key, sigv4_signing.string_to_sign("20240229T235959Z", scope, canonical)
    )
    request = {
        **headers,
        "x-amz-content-sha256": sigv4.EMPTY_SHA256,
        "Authorization": f"AWS4-HMAC-SHA256 Credential=AK/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}",
    }
    parsed = _parse("/", "", request)
    assert parsed.amz_date == "20240229T235959Z"
    sigv4.check_signature(parsed, "SK")


def test_presign_round_trip_keeps_existing_query() -> None:
    url = sigv4.presign_url(
        "GET", "http://s3.test:80/b/a%20b?response-content-type=x%2Fy", "AK", "SK", "r1", NOW
    )
    parts = url.split("?", 1)
    assert parts[0] == "http://s3.test:80/b/a%20b"
    parsed = sigv4.parse_authorization("GET", "/b/a%20b", parts[1], {"host": "s3.test"}, NOW)
    assert parsed.region == "r1"
    sigv4.check_signature(parsed, "SK")


# -- refusals ------------------------------------------------------------------------------


def _replace_auth(headers: dict[str, str], old: str, new: str) -> dict[str, str]:
    return {**headers, "Authorization": headers["Authorization"].replace(old, new)}


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name.lower()}


def _refusals() -> dict[str, tuple[dict[str, str], str, type[errors.S3Error], str]]:
    path, query, good = _signed()
    return {
        "anonymous": ({"Host": "h"}, "", errors.AccessDenied, "Anonymous"),
        "sigv2_header": (
            {**good, "Authorization": "AWS AK:c2lnbmF0dXJl"},
            "",
            errors.InvalidRequest,
            "Please use AWS4-HMAC-SHA256",
        ),
        "sigv2_query": (
            {"Host": "h"},
            "AWSAccessKeyId=AK&Signature=x&Expires=1",
            errors.InvalidRequest,
            "not supported",
        ),
        "both_mechanisms": (good, "X-Amz-Signature=x", errors.InvalidArgument, "Only one"),
        "garbled_fields": (
            _replace_auth(good, ", SignedHeaders", " SignedHeaders"),
            "",
            errors.AuthorizationHeaderMalformed,
            "",
        ),
        "duplicate_field": (
            {**good, "Authorization": good["Authorization"] + ", Signature=00"},
            "",
            errors.AuthorizationHeaderMalformed,
            "",
        ),
        "missing_field": (
            {**good, "Authorization": good["Authorization"].rpartition(",")[0]},
            "",
            errors.AuthorizationHeaderMalformed,
            "exactly",
        ),
        "short_credential": (
            _replace_auth(good, "AK/20240229/", "20240229/"),
            "",
            errors.AuthorizationHeaderMalformed,
            "",
        ),
        "wrong_service": (
            _replace_auth(good, "/s3/", "/ec2/"),
            "",
            errors.AuthorizationHeaderMalformed,
            "service",
        ),
        "wrong_terminator": (
            _replace_auth(good, "aws4_request", "aws4_reqest"),
            "",
            errors.AuthorizationHeaderMalformed,
            "end with",
        ),
        "scope_date_not_request_date": (
            _replace_auth(good, "/20240229/", "/20240228/"),
            "",
            errors.AuthorizationHeaderMalformed,
            "request date",
        ),
        "host_not_signed": (
            _replace_auth(good, "SignedHeaders=host;", "SignedHeaders="),
            "",
            errors.AuthorizationHeaderMalformed,
            "host",
        ),
        "date_not_signed": (
            _replace_auth(good, ";x-amz-date", ""),
            "",
            errors.AuthorizationHeaderMalformed,
            "x-amz-date",
        ),
        "no_date": (_without(good, "x-amz-date"), "", errors.AccessDenied, "Date"),
        "bad_date": ({**good, "x-amz-date": "2024-02-29T23:59:59Z"}, "", errors.AccessDenied, ""),
        "no_content_sha256": (
            _without(good, "x-amz-content-sha256"),
            "",
            errors.InvalidRequest,
            "x-amz-content-sha256",
        ),
        "bad_content_sha256": (
            {**good, "x-amz-content-sha256": "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"},
            "",
            errors.InvalidArgument,
            "",
        ),
        "unsigned_amz_header": (
            {**good, "x-amz-copy-source": "/other/secret"},
            "",
            errors.AccessDenied,
            "not signed",
        ),
    }


@pytest.mark.parametrize("case", sorted(_refusals()))
def test_refused(case: str) -> None:
    headers, query, error, message = _refusals()[case]
    with pytest.raises(error, match=message or None):
        _parse("/b/k", query, headers)


def test_wrong_region_names_the_right_one() -> None:
    path, query, headers = _signed(region="eu-west-1")
    with pytest.raises(errors.AuthorizationHeaderMalformed) as caught:
        _parse(path, query, headers, expected_region="us-east-1")
    assert dict(caught.value.extra) == {"Region": "us-east-1"}
    assert caught.value.status == 400
    _parse(path, query, headers, expected_region="eu-west-1")


def test_skew_limit_is_fifteen_minutes() -> None:
    path, query, headers = _signed()
    _parse(path, query, headers, now=NOW + sigv4.MAX_SKEW)
    _parse(path, query, headers, now=NOW - sigv4.MAX_SKEW)
    with pytest.raises(errors.RequestTimeTooSkewed) as caught:
        _parse(path, query, headers, now=NOW + sigv4.MAX_SKEW + dt.timedelta(seconds=1))
    assert dict(caught.value.extra)["RequestTime"] == "20240229T235959Z"


def _presigned_query(**overrides: str) -> str:
    url = sigv4.presign_url("GET", "http://h/b/k", "AK", "SK", "us-east-1", NOW, expires_s=60)
    pairs = dict(sigv4.parse_query(url.partition("?")[2]))
    pairs.update(overrides)
    return sigv4.canonical_query_string((k, v) for k, v in pairs.items() if v != "-")


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"X-Amz-Expires": "0"}, errors.AuthorizationQueryParametersError, "X-Amz-Expires"),
        ({"X-Amz-Expires": "604801"}, errors.AuthorizationQueryParametersError, "X-Amz-Expires"),
        ({"X-Amz-Expires": "١٢"}, errors.AuthorizationQueryParametersError, "X-Amz-Expires"),
        ({"X-Amz-Date": "-"}, errors.AuthorizationQueryParametersError, "requires"),
        ({"X-Amz-Date": "20240229"}, errors.AuthorizationQueryParametersError, "ISO8601"),
        ({"X-Amz-Algorithm": "AWS4-HMAC-SHA1"}, errors.AuthorizationQueryParametersError, ""),
        ({"X-Amz-SignedHeaders": "x-amz-date"}, errors.AuthorizationQueryParametersError, "host"),
        ({"X-Amz-Credential": "AK/x"}, errors.AuthorizationQueryParametersError, "credential"),
        ({"X-Amz-Content-Sha256": "nope"}, errors.InvalidArgument, ""),
    ],
)
def test_presigned_refused(overrides: dict[str, str], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message or None):
        _parse("/b/k", _presigned_query(**overrides), {"Host": "h"})


def test_presigned_duplicate_parameter_refused() -> None:
    query = _presigned_query() + "&X-Amz-Expires=60"
    with pytest.raises(errors.AuthorizationQueryParametersError, match="twice"):
        _parse("/b/k", query, {"Host": "h"})


def test_presigned_with_unsigned_amz_header_refused() -> None:
    with pytest.raises(errors.AccessDenied, match="not signed"):
        _parse("/b/k", _presigned_query(), {"Host": "h", "X-Amz-Copy-Source": "/o/k"})


def test_presigned_with_signed_payload_hash_in_query() -> None:
    query = _presigned_query(**{"X-Amz-Content-Sha256": sigv4.EMPTY_SHA256})
    parsed = _parse("/b/k", query, {"Host": "h"})
    assert parsed.payload_kind == "signed"
    assert parsed.canonical_request.endswith("\n" + sigv4.EMPTY_SHA256)


def test_lone_surrogate_is_an_s3_error() -> None:
    path, query, headers = _signed()
    with pytest.raises(errors.InvalidRequest):
        _parse(path, "a=\ud800", headers)


def test_non_ascii_signature_does_not_match() -> None:
    path, query, headers = _signed()
    headers = {**headers, "Authorization": headers["Authorization"][:-2] + "é\udcff"}
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.check_signature(_parse(path, query, headers), "SK")


# -- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (sigv4.EMPTY_SHA256, "signed"),
        ("UNSIGNED-PAYLOAD", "unsigned"),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "streaming"),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "streaming"),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", "streaming"),
    ],
)
def test_payload_hash_kind(value: str, kind: str) -> None:
    assert sigv4.payload_hash_kind(value) == kind


@pytest.mark.parametrize(
    "value", ["", "unsigned-payload", sigv4.EMPTY_SHA256.upper(), "0" * 63, "STREAMING-X"]
)
def test_payload_hash_kind_refuses(value: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        sigv4.payload_hash_kind(value)


@pytest.mark.parametrize(
    ("raw", "pairs", "canonical"),
    [
        ("", [], ""),
        ("uploads", [("uploads", "")], "uploads="),
        ("b=2&a=1&a=0", [("b", "2"), ("a", "1"), ("a", "0")], "a=0&a=1&b=2"),
        ("prefix=a+b", [("prefix", "a+b")], "prefix=a%2Bb"),
        ("prefix=a%20b&&x=%7e", [("prefix", "a b"), ("x", "~")], "prefix=a%20b&x=~"),
        ("k=%C3%BC%2F", [("k", "ü/")], "k=%C3%BC%2F"),
        ("k=%ff", [("k", "\udcff")], "k=%FF"),
        ("a=b=c", [("a", "b=c")], "a=b%3Dc"),
    ],
)
def test_query_decoding_and_canonical_form(
    raw: str, pairs: list[tuple[str, str]], canonical: str
) -> None:
    assert sigv4.parse_query(raw) == pairs
    assert sigv4.canonical_query_string(pairs) == canonical


def test_uri_encode() -> None:
    assert sigv4.uri_encode("a b/ü~-_.*+=") == "a%20b%2F%C3%BC~-_.%2A%2B%3D"
    assert sigv4.uri_encode("a b/c", encode_slash=False) == "a%20b/c"


def test_signing_key_matches_aws_documentation() -> None:
    key = sigv4.signing_key(AWS_SECRET_KEY, "20130524", "us-east-1", "s3")
    assert len(key) == 32
    assert key == sigv4.signing_key(AWS_SECRET_KEY, "20130524", "us-east-1")
    assert key != sigv4.signing_key(AWS_SECRET_KEY, "20130525", "us-east-1")


def test_sign_headers_needs_host() -> None:
    with pytest.raises(ValueError, match="host"):
        sigv4.sign_headers("GET", "/", [], {}, sigv4.EMPTY_SHA256, "AK", "SK", "r", NOW)
