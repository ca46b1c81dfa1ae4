"""AWS Signature Version 4 for S3: check that a request is signed, and by whom.

Verification is two steps, so the gateway can look the access key up in between:
:func:`parse_authorization` (syntax, clock, canonical request and string to sign) and then
:func:`check_signature` (HMAC with the secret, constant-time compare). ``now`` is an
argument; a naive datetime is taken as UTC. How the canonical request is built is in
``sigv4_signing.py``, shared with our signer; its public names are re-exported here.

Inputs are the request as received: ``raw_path`` percent-encoded as sent (aiohttp's
``request.raw_path``; anything from ``?`` on is dropped), ``query_string`` raw (still
encoded; not yarl's decoded ``query_string``), ``headers`` any mapping (a multidict's
repeated headers are joined). The payload line is the ``x-amz-content-sha256`` header
(header auth) or ``UNSIGNED-PAYLOAD`` (presigned, unless the query carries a signed
``X-Amz-Content-Sha256``); the body reader must hold the body to ``payload_hash``.

What is refused, and with which S3 error:
- no credentials at all: AccessDenied (anonymous requests are refused). SigV2 (an
  ``AWS key:sig`` header, an ``AWSAccessKeyId`` query): InvalidRequest. Header and query
  auth together: InvalidArgument.
- bad syntax: AuthorizationHeaderMalformed (header) or AuthorizationQueryParametersError
  (presigned): the credential is not ``KEY/YYYYMMDD/REGION/s3/aws4_request``, its date is
  not the request's date, or its region is not ``expected_region`` when one is given (the
  ``Region`` element lets SDKs retry in the right region). Also ``host`` not signed, and,
  for header auth, the header carrying the request time not signed.
- header auth without ``x-amz-content-sha256``: InvalidRequest ("Missing required header
  for this request: x-amz-content-sha256"), S3's answer rather than MissingSecurityHeader.
  A value that is no hash, ``UNSIGNED-PAYLOAD`` or supported ``STREAMING-*``:
  InvalidArgument.
- any ``x-amz-*`` header present but not signed: AccessDenied, as on S3. Without this
  rule, whoever holds a presigned PUT could add ``x-amz-copy-source`` and copy any object
  the signer can read.
- header auth more than 15 minutes from ``now``: RequestTimeTooSkewed. Presigned: past
  ``X-Amz-Date + X-Amz-Expires``: AccessDenied "Request has expired"; dated more than 15
  minutes ahead: AccessDenied "Request is not valid yet"; ``X-Amz-Expires`` outside
  1..604800: AuthorizationQueryParametersError.
- a signature that is not the HMAC of the string to sign: SignatureDoesNotMatch, with the
  string to sign and canonical request in the error document, as S3 does.
No other exception escapes :func:`parse_authorization` (fuzzed in the tests).
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from blobstore.core.s3.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)
from blobstore.core.s3.sigv4_signing import (
    ALGORITHM,
    EMPTY_SHA256,
    MAX_PRESIGN_EXPIRES_S,
    STREAMING_PAYLOADS,
    TERMINATOR,
    UNSIGNED_PAYLOAD,
    PayloadKind,
    canonical_query_string,
    canonical_request,
    credential_scope,
    format_amz_date,
    hex_hmac,
    lower_headers,
    parse_amz_date,
    parse_http_date,
    parse_query,
    payload_hash_kind,
    presign_url,
    sign_headers,
    signing_key,
    string_to_sign,
    uri_encode,
    utc,
)

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_PRESIGN_EXPIRES_S",
    "MAX_SKEW",
    "STREAMING_PAYLOADS",
    "UNSIGNED_PAYLOAD",
    "AuthKind",
    "ParsedAuth",
    "PayloadKind",
    "canonical_query_string",
    "check_signature",
    "format_amz_date",
    "parse_authorization",
    "parse_query",
    "payload_hash_kind",
    "presign_url",
    "sign_headers",
    "signing_key",
    "uri_encode",
]

MAX_SKEW = dt.timedelta(minutes=15)

AuthKind = Literal["header", "presigned"]
Headers = Mapping[str, list[str]]

_SCOPE_DATE_RE = re.compile(r"[0-9]{8}", re.ASCII)
_REGION_RE = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_EXPIRES_RE = re.compile(r"[0-9]{1,10}", re.ASCII)
_PRESIGN_MARKERS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
_UNSUPPORTED_MECHANISM = (
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
)
_BAD_TIME = "AWS authentication requires a valid Date or x-amz-date header"


@dataclass(frozen=True, slots=True)
class ParsedAuth:
    """A syntactically valid SigV4 request, ready for :func:`check_signature`.

    ``payload_hash`` is what the client claims: a hex SHA-256, ``UNSIGNED-PAYLOAD`` or a
    ``STREAMING-*`` value. ``date``, ``region``, ``service``, ``amz_date`` and
    ``signature`` (the seed) are what the aws-chunked decoder needs for chunk signatures.
    """

    kind: AuthKind
    access_key: str
    date: str
    region: str
    service: str
    amz_date: str
    signed_headers: tuple[str, ...]
    payload_hash: str
    canonical_request: str
    string_to_sign: str
    signature: str

    @property
    def scope(self) -> str:
        return credential_scope(self.date, self.region, self.service)

    @property
    def payload_kind(self) -> PayloadKind:
        return payload_hash_kind(self.payload_hash)


@dataclass(frozen=True, slots=True)
class _Claim:
    """What a request says about itself, before any check against time or secret."""

    kind: AuthKind
    access_key: str
    date: str
    region: str
    signed_headers: tuple[str, ...]
    when: dt.datetime
    payload_hash: str
    signature: str


def check_signature(parsed: ParsedAuth, secret_key: str) -> None:
    """Raise SignatureDoesNotMatch unless ``parsed.signature`` was made with ``secret_key``."""
    key = signing_key(secret_key, parsed.date, parsed.region, parsed.service)
    expected = hex_hmac(key, parsed.string_to_sign).encode("ascii")
    provided = parsed.signature.encode("utf-8", "backslashreplace")
    if not hmac.compare_digest(expected, provided):
        raise SignatureDoesNotMatch(
            extra=(
                ("AWSAccessKeyId", parsed.access_key),
                ("StringToSign", parsed.string_to_sign),
                ("SignatureProvided", parsed.signature),
                ("CanonicalRequest", parsed.canonical_request),
            )
        )


def parse_authorization(
    method: str,
    raw_path: str,
    query_string: str,
    headers: Mapping[str, str],
    now: dt.datetime,
    *,
    expected_region: str | None = None,
) -> ParsedAuth:
    """Parse a request's SigV4 credentials and build its string to sign; S3Error if unusable."""
    lowered = lower_headers(headers)
    query = parse_query(query_string)
    names = {name for name, _ in query}
    presigned = any(marker in names for marker in _PRESIGN_MARKERS)
    sigv2_query = "AWSAccessKeyId" in names and "Signature" in names
    has_header = "authorization" in lowered
    if has_header and (presigned or sigv2_query):
        raise InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified"
        )
    now = utc(now)
    if has_header:
        claim = _claim_from_header(lowered, expected_region)
        _check_skew(claim.when, now)
    elif presigned:
        claim = _claim_from_query(query, expected_region, now)
        query = [(name, value) for name, value in query if name != "X-Amz-Signature"]
    elif sigv2_query:
        raise InvalidRequest(_UNSUPPORTED_MECHANISM)
    else:
        raise AccessDenied("Anonymous requests are refused: sign requests with AWS SigV4.")
    _check_headers_signed(lowered, claim.signed_headers)
    try:
        return _build(claim, method, raw_path.partition("?")[0], query, lowered)
    except UnicodeEncodeError as error:  # a lone surrogate no HTTP server would produce
        raise InvalidRequest("The request holds text that cannot be encoded as UTF-8.") from error


def _build(
    claim: _Claim, method: str, path: str, query: list[tuple[str, str]], headers: Headers
) -> ParsedAuth:
    amz_date = format_amz_date(claim.when)
    canonical = canonical_request(
        method,
        path,
        canonical_query_string(query),
        headers,
        claim.signed_headers,
        claim.payload_hash,
    )
    return ParsedAuth(
        kind=claim.kind,
        access_key=claim.access_key,
        date=claim.date,
        region=claim.region,
        service="s3",
        amz_date=amz_date,
        signed_headers=claim.signed_headers,
        payload_hash=claim.payload_hash,
        canonical_request=canonical,
        string_to_sign=string_to_sign(
            amz_date, credential_scope(claim.date, claim.region), canonical
        ),
        signature=claim.signature,
    )


# -- header auth ---------------------------------------------------------------------------


def _claim_from_header(headers: Headers, expected_region: str | None) -> _Claim:
    fields = _authorization_fields(_header(headers, "authorization") or "")
    malformed = AuthorizationHeaderMalformed
    access_key, date, region = _parse_credential(fields["Credential"], malformed, expected_region)
    signed = _parse_signed_headers(fields["SignedHeaders"], malformed)
    when = _request_time(headers, signed)
    _check_scope_date(date, when, malformed)
    payload_hash = _header(headers, "x-amz-content-sha256")
    if payload_hash is None:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    payload_hash_kind(payload_hash)
    return _Claim(
        "header", access_key, date, region, signed, when, payload_hash, fields["Signature"]
    )


def _header(headers: Headers, name: str) -> str | None:
    values = headers.get(name)
    return None if values is None else ",".join(values)


def _authorization_fields(text: str) -> dict[str, str]:
    algorithm, _, rest = text.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise InvalidRequest(_UNSUPPORTED_MECHANISM)
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name in fields:
            raise AuthorizationHeaderMalformed(
                f"Cannot parse the authorization header near {part.strip()[:64]!r}."
            )
        fields[name] = value.strip()
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise AuthorizationHeaderMalformed(
            "The authorization header needs exactly Credential, SignedHeaders and Signature."
        )
    return fields


def _request_time(headers: Headers, signed: tuple[str, ...]) -> dt.datetime:
    """The time of a header-auth request: ``x-amz-date``, else ``Date``; it must be signed."""
    amz_date = _header(headers, "x-amz-date")
    if amz_date is not None:
        when, source = parse_amz_date(amz_date.strip()), "x-amz-date"
    else:
        date = _header(headers, "date")
        when, source = (None if date is None else parse_http_date(date)), "date"
    if when is None:
        raise AccessDenied(_BAD_TIME)
    if source not in signed:
        raise AuthorizationHeaderMalformed(f"The {source!r} header must be signed.")
    return when


def _check_skew(when: dt.datetime, now: dt.datetime) -> None:
    if abs(now - when) > MAX_SKEW:
        raise RequestTimeTooSkewed(
            extra=(
                ("RequestTime", format_amz_date(when)),
                ("ServerTime", format_amz_date(now)),
                ("MaxAllowedSkewMilliseconds", str(int(MAX_SKEW.total_seconds() * 1000))),
            )
        )


# -- presigned (query) auth ----------------------------------------------------------------


def _claim_from_query(
    query: list[tuple[str, str]], expected_region: str | None, now: dt.datetime
) -> _Claim:
    params = _presign_params(query)
    malformed = AuthorizationQueryParametersError
    access_key, date, region = _parse_credential(
        params["X-Amz-Credential"], malformed, expected_region
    )
    signed = _parse_signed_headers(params["X-Amz-SignedHeaders"], malformed)
    when = parse_amz_date(params["X-Amz-Date"])
    if when is None:
        raise malformed("X-Amz-Date must be in the ISO8601 Long Format yyyyMMdd'T'HHmmss'Z'")
    _check_scope_date(date, when, malformed)
    _check_expiry(when, params["X-Amz-Expires"], now)
    payload_hash = params.get("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD)
    payload_hash_kind(payload_hash)
    return _Claim(
        "presigned", access_key, date, region, signed, when, payload_hash,
        params["X-Amz-Signature"],
    )  # fmt: skip


def _presign_params(query: list[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in query:
        if name in _PRESIGN_PARAMS or name == "X-Amz-Content-Sha256":
            if name in params:
                raise AuthorizationQueryParametersError(f"The parameter {name} appears twice.")
            params[name] = value
    if any(name not in params for name in _PRESIGN_PARAMS):
        raise AuthorizationQueryParametersError(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise AuthorizationQueryParametersError(f"X-Amz-Algorithm only supports {ALGORITHM!r}")
    return params


def _check_expiry(when: dt.datetime, expires_text: str, now: dt.datetime) -> None:
    expires_s = int(expires_text) if _EXPIRES_RE.fullmatch(expires_text) else -1
    if not 1 <= expires_s <= MAX_PRESIGN_EXPIRES_S:
        raise AuthorizationQueryParametersError(
            f"X-Amz-Expires must be between 1 and {MAX_PRESIGN_EXPIRES_S} seconds."
        )
    if when - now > MAX_SKEW:
        raise AccessDenied("Request is not valid yet")
    if (now - when).total_seconds() > expires_s:
        raise AccessDenied(
            "Request has expired",
            extra=(("X-Amz-Expires", str(expires_s)), ("ServerTime", format_amz_date(now))),
        )


# -- shared by both ------------------------------------------------------------------------


def _parse_credential(
    text: str, malformed: type[S3Error], expected_region: str | None
) -> tuple[str, str, str]:
    """``KEY/YYYYMMDD/REGION/s3/aws4_request`` -> (access key, date, region)."""
    parts = text.rsplit("/", 4)
    if len(parts) != 5 or not parts[0]:
        raise malformed("The credential must be KEY/YYYYMMDD/REGION/s3/aws4_request.")
    access_key, date, region, service, terminator = parts
    if not _SCOPE_DATE_RE.fullmatch(date) or not _REGION_RE.fullmatch(region):
        raise malformed("The credential scope has an invalid date or region.")
    if service != "s3":
        raise malformed(f"The credential scope names the service {service[:64]!r}; expecting 's3'.")
    if terminator != TERMINATOR:
        raise malformed(f"The credential scope must end with {TERMINATOR!r}.")
    if expected_region is not None and region != expected_region:
        raise malformed(
            f"The region {region!r} is wrong; expecting {expected_region!r}",
            extra=(("Region", expected_region),),
        )
    return access_key, date, region


def _check_scope_date(date: str, when: dt.datetime, malformed: type[S3Error]) -> None:
    request_date = format_amz_date(when)[:8]
    if date != request_date:
        raise malformed(
            f"The date {date!r} in the credential scope is not the request date {request_date!r}."
        )


def _parse_signed_headers(text: str, malformed: type[S3Error]) -> tuple[str, ...]:
    names = [name.strip().lower() for name in text.split(";")]
    if not all(names) or len(set(names)) != len(names):
        raise malformed("SignedHeaders must be distinct header names separated by ';'.")
    if "host" not in names:
        raise malformed("'host' must be a signed header.")
    return tuple(sorted(names))


def _check_headers_signed(headers: Headers, signed: tuple[str, ...]) -> None:
    unsigned = sorted(name for name in headers if name.startswith("x-amz-") and name not in signed)
    if unsigned:
        raise AccessDenied(
            "There were headers present in the request which were not signed",
            extra=(("HeadersNotSigned", ", ".join(unsigned)),),
        )
