"""PutObject, GetObject, HeadObject, DeleteObject: parse -> write/read path -> respond."""

from __future__ import annotations

import datetime
import email.utils
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from blobstore.core.digests import CHECKSUM_ALGORITHMS
from blobstore.core.errors import BlobstoreError
from blobstore.core.records import ObjectVersion
from blobstore.core.s3 import chunked, conditions, ranges, sigv4
from blobstore.core.s3 import errors as s3e
from blobstore.gateway.handlers.common import from_ns
from blobstore.gateway.handlers.common import gateway_state as _state
from blobstore.gateway.read_path import read_range
from blobstore.gateway.write_path import ExpectedDigests, ObjectAttributes, write_object

log = logging.getLogger(__name__)
BODY_CHUNK_BYTES = 1024 * 1024
STORED_HEADERS = ("cache-control", "content-disposition", "content-encoding",
                  "content-language", "expires")
MAX_USER_METADATA_BYTES = 2048



async def _wire(request: web.Request) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await request.content.readany()
            if not chunk:
                return
            yield chunk
    except (ConnectionError, OSError) as exc:
        raise s3e.IncompleteBody("the connection closed before the whole body arrived") from exc


async def _dechunked(request: web.Request, decoder: chunked.ChunkedDecoder,
                     checksums: dict[str, str]) -> AsyncIterator[bytes]:
    """The payload of an aws-chunked body; trailer checksums land in ``checksums``."""
    async for wire_chunk in _wire(request):
        for piece in decoder.feed(wire_chunk):
            yield piece
    decoder.finish()
    for algorithm in list(checksums):
        value = decoder.trailers.get(f"x-amz-checksum-{algorithm}")
        if value is None:
            raise s3e.InvalidRequest(f"the x-amz-checksum-{algorithm} trailer is missing")
        checksums[algorithm] = value


def _trailer_algorithms(request: web.Request) -> list[str]:
    declared = request.headers.get("x-amz-trailer", "")
    names = [name.strip().lower() for name in declared.split(",") if name.strip()]
    algorithms = []
    for name in names:
        algorithm = name.removeprefix("x-amz-checksum-")
        if algorithm == name or algorithm not in CHECKSUM_ALGORITHMS:
            raise s3e.InvalidRequest(f"unsupported trailer {name!r}")
        algorithms.append(algorithm)
    return algorithms


def _body_and_digests(request: web.Request) -> tuple[AsyncIterator[bytes], int | None,
                                                     ExpectedDigests]:
    """The payload stream, its length if known, and what the client claims about it.

    The body's framing follows the SIGNED payload hash, never the unsigned
    Content-Encoding header: aws-chunked exactly when the signature says STREAMING-*.
    """
    claimed = request["auth"].payload_hash  # as signed (header, or query when presigned)
    kind = sigv4.payload_hash_kind(claimed)
    checksums = {}
    for algorithm in CHECKSUM_ALGORITHMS:
        value = request.headers.get(f"x-amz-checksum-{algorithm}")
        if value is not None:
            checksums[algorithm] = value
    md5 = request.headers.get("Content-MD5")
    if kind != "streaming":
        digests = ExpectedDigests(sha256_hex=claimed.lower() if kind == "signed" else None,
                                  md5_b64=md5, checksums=checksums)
        return _wire(request), request.content_length, digests
    decoded = request.headers.get("x-amz-decoded-content-length", "")
    if not decoded.isdigit():
        raise s3e.MissingContentLength("aws-chunked uploads need x-amz-decoded-content-length")
    for algorithm in _trailer_algorithms(request):
        checksums.setdefault(algorithm, "")  # filled from the trailer when the body ends
    decoder = chunked.ChunkedDecoder(claimed, request["signing"])
    digests = ExpectedDigests(sha256_hex=None, md5_b64=md5, checksums=checksums)
    return _dechunked(request, decoder, checksums), int(decoded), digests


def _attributes(request: web.Request) -> ObjectAttributes:
    metadata = {name[len("x-amz-meta-"):].lower(): value
                for name, value in request.headers.items()
                if name.lower().startswith("x-amz-meta-")}
    if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_USER_METADATA_BYTES:
        raise s3e.InvalidArgument("user metadata is larger than 2 KB")
    stored = {name: request.headers[name] for name in STORED_HEADERS if name in request.headers}
    # aws-chunked is how the body travelled, not how the object is encoded (S3 drops it).
    encodings = [e.strip() for e in stored.get("content-encoding", "").split(",")
                 if e.strip() and e.strip().lower() != "aws-chunked"]
    stored.pop("content-encoding", None)
    if encodings:
        stored["content-encoding"] = ", ".join(encodings)
    return ObjectAttributes(
        content_type=request.headers.get("Content-Type", "binary/octet-stream"),
        user_metadata=metadata, headers=stored)


async def put_object(request: web.Request) -> web.Response:
    state = _state(request)
    bucket, key = request["bucket"], request["key"]
    if request.content_length is None and \
            request.headers.get("Transfer-Encoding", "").lower() != "chunked":
        raise s3e.MissingContentLength("You must provide the Content-Length HTTP header.")
    body, length, expected = _body_and_digests(request)
    attributes = _attributes(request)
    if length is None or length > state.config.inline_max_bytes:
        # NoSuchBucket before reading a large body; a small one is read anyway and its
        # commit, the only meta round trip of a small PUT, answers NoSuchBucket itself.
        await state.meta.head_bucket(bucket)
    version = await write_object(state, bucket, key, body, length, expected, attributes)
    headers = {"ETag": f'"{version.etag}"'}
    for algorithm, value in version.checksums.items():
        headers[f"x-amz-checksum-{algorithm}"] = value
    return web.Response(status=200, headers=headers)


def _object_headers(version: ObjectVersion, request: web.Request,
                    whole: bool) -> dict[str, str]:
    headers = {
        "ETag": f'"{version.etag}"',
        "Last-Modified": email.utils.formatdate(version.created_ns / 1e9, usegmt=True),
        "Content-Type": version.content_type,
        "Accept-Ranges": "bytes",
    }
    headers.update({name.title(): value for name, value in version.headers.items()})
    for name, value in version.user_metadata.items():
        headers[f"x-amz-meta-{name}"] = value
    # Checksums describe the whole object: S3 sends none with a partial (range) response.
    if whole and request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        for algorithm, value in version.checksums.items():
            headers[f"x-amz-checksum-{algorithm}"] = value
    return headers


RESPONSE_OVERRIDES = {"response-content-type": "Content-Type",
                      "response-content-language": "Content-Language",
                      "response-expires": "Expires", "response-cache-control": "Cache-Control",
                      "response-content-disposition": "Content-Disposition",
                      "response-content-encoding": "Content-Encoding"}


def last_modified(version: ObjectVersion) -> datetime.datetime:
    return from_ns(version.created_ns)


async def get_object(request: web.Request, head: bool) -> web.StreamResponse:
    state = _state(request)
    manifest = await state.meta.get_manifest(request["bucket"], request["key"])
    version = manifest.version
    if conditions.evaluate(request.headers, version.etag, last_modified(version)) is not None:
        headers = _object_headers(version, request, whole=False)
        return web.Response(status=304, headers={k: v for k, v in headers.items()
                                                 if k in ("ETag", "Last-Modified")})
    byte_range = ranges.parse_range(request.headers.get("Range"), version.size)
    headers = _object_headers(version, request, whole=byte_range is None)
    for parameter, header in RESPONSE_OVERRIDES.items():
        if parameter in request["query"]:
            headers[header] = request["query"][parameter]
    status, first, last = 200, 0, version.size - 1
    if byte_range is not None:
        status, (first, last) = 206, byte_range
        headers["Content-Range"] = f"bytes {first}-{last}/{version.size}"
    headers["Content-Length"] = str(last - first + 1 if version.size else 0)
    if head or version.size == 0:
        return web.Response(status=status, headers=headers)
    chunks = read_range(state, manifest, first, last)
    # The first piece is fetched before the status line goes out, so a segment that cannot
    # be read at all answers 503 instead of a truncated 200.
    first_piece = await anext(chunks)
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    try:
        await response.write(first_piece)
        async for piece in chunks:
            await response.write(piece)
    except BlobstoreError as exc:
        # Headers are out: the only honest signal left is to cut the connection, so the
        # client sees fewer bytes than Content-Length and never takes a short body as whole.
        log.warning("GET %s/%s failed mid-stream: %s", request["bucket"], request["key"], exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


async def delete_object(request: web.Request) -> web.Response:
    state = _state(request)
    await state.meta.delete_object(request["bucket"], request["key"])
    return web.Response(status=204)
