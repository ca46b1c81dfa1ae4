"""How SigV4 turns a request into a signature, for both sides: the verifier in
``sigv4.py`` and our own signer (``sign_headers``, ``presign_url``, used by the CLI and
tests). Pure functions; the time is an argument, and a naive datetime is taken as UTC.

Rules of the canonical request, as AWS and botocore build it for S3:
1. The URI is the path exactly as the client sent it, still percent-encoded: S3 neither
   normalises it nor encodes it again. An empty path is ``/``.
2. The query is decoded by :func:`parse_query` (percent-decoding only: ``+`` stays a
   plus, since SDKs send a plus as ``%2B`` and a space as ``%20``; bytes that are not
   UTF-8 survive as surrogates so they encode back to themselves), then each name and
   value is encoded again with :func:`uri_encode` (unreserved ``A-Za-z0-9-._~``) and the
   pairs are sorted by name, then value. A parameter without ``=`` (``?uploads``) is
   ``uploads=``.
3. Headers: the signed ones, lower-cased and sorted, each ``name:value`` with the value
   trimmed and inner whitespace runs collapsed; a repeated header's values are joined with
   ``,``. Then a blank line, the signed header names joined with ``;``, the payload hash.
4. Text is hashed as UTF-8 with ``surrogateescape``, which gives back the bytes a server
   that decodes headers that way (aiohttp) received.

The signing key is ``HMAC("AWS4" + secret, date) -> region -> service -> "aws4_request"``;
it depends on the day, not the request, so it is cached (bounded).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from blobstore.core.s3.errors import InvalidArgument

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAMING_PAYLOADS = frozenset(
    {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    }
)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600
SIGNING_KEY_CACHE_SIZE = 1024

PayloadKind = Literal["signed", "unsigned", "streaming"]

_UNRESERVED = "-_.~"
_SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z", re.ASCII)


# -- encoding ------------------------------------------------------------------------------


def uri_encode(text: str, *, encode_slash: bool = True) -> str:
    """Percent-encode as SigV4 does: UTF-8, all but ``A-Za-z0-9-._~`` (and ``/`` if asked).

    ``uri_encode(key, encode_slash=False)`` is how a client puts a key in a path.
    """
    safe = _UNRESERVED if encode_slash else _UNRESERVED + "/"
    return quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


def parse_query(query_string: str) -> list[tuple[str, str]]:
    """Raw query string -> decoded ``(name, value)`` pairs, in order; ``+`` is not a space.

    The gateway reads request parameters with this same function, so the parameters it acts
    on are the ones that were signed.
    """
    pairs = []
    for part in query_string.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_unquote(name), _unquote(value)))
    return pairs


def _unquote(text: str) -> str:
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def canonical_query_string(pairs: Iterable[tuple[str, str]]) -> str:
    """Encoded, sorted ``name=value&...``; also a valid query string to send."""
    encoded = sorted((uri_encode(name), uri_encode(value)) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def payload_hash_kind(value: str) -> PayloadKind:
    """What an ``x-amz-content-sha256`` value promises; InvalidArgument for anything else.

    ``signed``: 64 lowercase hex digits, the body's SHA-256. ``unsigned``:
    ``UNSIGNED-PAYLOAD``. ``streaming``: one of the aws-chunked forms we decode
    (``STREAMING_PAYLOADS``); the ECDSA (SigV4a) forms are refused.
    """
    if value == UNSIGNED_PAYLOAD:
        return "unsigned"
    if value in STREAMING_PAYLOADS:
        return "streaming"
    if _SHA256_RE.fullmatch(value):
        return "signed"
    raise InvalidArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value we support, "
        "or a valid sha256 value.",
        extra=(("ArgumentName", "x-amz-content-sha256"), ("ArgumentValue", value[:256])),
    )


def lower_headers(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Lower-cased names -> every value; a multidict's ``items()`` yields repeats."""
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


def utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def format_amz_date(when: dt.datetime) -> str:
    """``YYYYMMDDTHHMMSSZ``, the form of ``x-amz-date`` and of the string to sign."""
    return utc(when).strftime(AMZ_DATE_FORMAT)


def parse_amz_date(text: str) -> dt.datetime | None:
    """``YYYYMMDDTHHMMSSZ`` -> aware UTC datetime; None if it is not exactly that."""
    if not _AMZ_DATE_RE.fullmatch(text):
        return None
    try:
        return dt.datetime.strptime(text, AMZ_DATE_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def parse_http_date(text: str) -> dt.datetime | None:
    """An RFC 7231 ``Date`` header -> aware UTC datetime; None if unparseable."""
    try:
        return utc(email.utils.parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# -- the algorithm -------------------------------------------------------------------------


def credential_scope(date: str, region: str, service: str = "s3") -> str:
    """``YYYYMMDD/region/service/aws4_request``."""
    return f"{date}/{region}/{service}/{TERMINATOR}"


@functools.lru_cache(maxsize=SIGNING_KEY_CACHE_SIZE)
def signing_key(secret_key: str, date: str, region: str, service: str = "s3") -> bytes:
    """HMAC chain ``AWS4+secret -> date -> region -> service -> aws4_request``."""
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def hex_hmac(key: bytes, text: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``text``: a signature, given the signing key."""
    return hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, list[str]],
    signed_headers: tuple[str, ...],
    payload_hash: str,
) -> str:
    """The canonical request; ``query`` is already canonical, ``headers`` lower-cased."""
    lines = [method, path or "/", query]
    for name in signed_headers:
        values = headers.get(name, [])
        lines.append(f"{name}:" + ",".join(" ".join(value.split()) for value in values))
    lines += ["", ";".join(signed_headers), payload_hash]
    return "\n".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


# -- signing (our CLI, tests) --------------------------------------------------------------


def sign_headers(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    payload_sha256: str,
    access_key: str,
    secret_key: str,
    region: str,
    now: dt.datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The headers to add so the request verifies: Authorization, x-amz-date and
    x-amz-content-sha256.

    Every header in ``headers`` is signed, so it must be sent unchanged; ``host`` is
    required. ``raw_path`` is the encoded path as sent (see :func:`uri_encode`), and the
    query must be sent as ``canonical_query_string(query)``.
    """
    amz_date = format_amz_date(now)
    lowered = lower_headers(headers)
    lowered.pop("authorization", None)
    if "host" not in lowered:
        raise ValueError("sign_headers needs the host header")
    payload_hash_kind(payload_sha256)
    lowered["x-amz-date"] = [amz_date]
    lowered["x-amz-content-sha256"] = [payload_sha256]
    signed = tuple(sorted(lowered))
    scope = credential_scope(amz_date[:8], region, service)
    canonical = canonical_request(
        method, raw_path, canonical_query_string(query), lowered, signed, payload_sha256
    )
    key = signing_key(secret_key, amz_date[:8], region, service)
    signature = hex_hmac(key, string_to_sign(amz_date, scope, canonical))
    authorization = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return {
        "Authorization": authorization,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_sha256,
    }


def host_of(url: str) -> str:
    """The ``Host`` header an HTTP client sends for ``url`` (default port left out)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2].lower()
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is not None and parts.port == default_port:
        host = host.rpartition(":")[0]
    return host


def presign_url(
    method: str,
    url: str,
    access_key: str,
    secret_key: str,
    region: str,
    now: dt.datetime,
    expires_s: int = 3600,
    service: str = "s3",
) -> str:
    """``url`` (``scheme://host[:port]/encoded/path[?query]``) presigned for ``method``.

    Only ``host`` is signed, so the URL works from any HTTP client that adds no
    ``x-amz-*`` header.
    """
    if not 1 <= expires_s <= MAX_PRESIGN_EXPIRES_S:
        raise ValueError(f"expires_s must be in 1..{MAX_PRESIGN_EXPIRES_S}")
    parts = urlsplit(url)
    amz_date = format_amz_date(now)
    scope = credential_scope(amz_date[:8], region, service)
    query = parse_query(parts.query) + [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires_s)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    query_string = canonical_query_string(query)
    headers = {"host": [host_of(url)]}
    canonical = canonical_request(
        method, parts.path, query_string, headers, ("host",), UNSIGNED_PAYLOAD
    )
    key = signing_key(secret_key, amz_date[:8], region, service)
    signature = hex_hmac(key, string_to_sign(amz_date, scope, canonical))
    path = parts.path or "/"
    return f"{parts.scheme}://{parts.netloc}{path}?{query_string}&X-Amz-Signature={signature}"
