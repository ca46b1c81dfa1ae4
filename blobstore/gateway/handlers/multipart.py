"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
ListMultipartUploads.

A part is written exactly like an object body (segments, EC, quorum, digests checked) and
committed as a part record that holds references to its segments; Complete stitches the
parts' segment refs into one object version in a single meta command, so an object made of
10,000 parts appears whole or not at all, and no byte is copied at completion.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

from aiohttp import web

from blobstore.core.records import Part, Upload
from blobstore.core.s3 import conditions, ranges
from blobstore.core.s3 import errors as s3e
from blobstore.core.s3 import xml as s3xml
from blobstore.core.s3 import xml_multipart as mpxml
from blobstore.core.s3.xml_objects import render_copy_result
from blobstore.gateway.handlers.common import from_ns
from blobstore.gateway.handlers.common import gateway_state as _state
from blobstore.gateway.handlers.copy import parse_copy_source
from blobstore.gateway.handlers.objects import _attributes, _body_and_digests, last_modified
from blobstore.gateway.read_path import read_range
from blobstore.gateway.write_path import ExpectedDigests, write_body
from blobstore.rpc import multipart_client as mp

MAX_PART_BYTES = 5 * 1024**3
MAX_COMPLETE_BODY_BYTES = 4 * 1024 * 1024



def _part_number(query: dict[str, str]) -> int:
    text = query.get("partNumber", "")
    if not text.isdigit() or not 1 <= int(text) <= mpxml.MAX_PARTS:
        raise s3e.InvalidArgument("Part number must be an integer between 1 and 10000")
    return int(text)


async def _upload_for(request: web.Request) -> tuple[Upload, list[Part]]:
    upload, parts = await mp.get_upload(_state(request).meta, request["query"]["uploadId"])
    if (upload.bucket, upload.key) != (request["bucket"], request["key"]):
        raise s3e.NoSuchUpload()
    return upload, parts


async def create(request: web.Request) -> web.Response:
    state = _state(request)
    attributes = _attributes(request)
    upload = Upload(bucket=request["bucket"], key=request["key"],
                    upload_id=secrets.token_hex(16), created_ns=time.time_ns(),
                    content_type=attributes.content_type,
                    user_metadata=attributes.user_metadata, headers=attributes.headers)
    await mp.create_upload(state.meta, upload)
    return web.Response(body=mpxml.render_initiate(upload.bucket, upload.key, upload.upload_id),
                        content_type="application/xml")


async def upload_part(request: web.Request) -> web.Response:
    state = _state(request)
    number = _part_number(request["query"])
    await _upload_for(request)  # NoSuchUpload before reading the body
    if "x-amz-copy-source" in request.headers:
        return await _upload_part_copy(request, number)
    if (request.content_length or 0) > MAX_PART_BYTES:
        raise s3e.EntityTooLarge()
    body, length, expected = _body_and_digests(request)
    written = await write_body(state, body, length, expected)
    part = Part(number=number, etag=written.etag, size=written.size, created_ns=time.time_ns(),
                segments=written.refs)
    await mp.put_part(state.meta, request["query"]["uploadId"], part, written.new_segments)
    headers = {"ETag": f'"{written.etag}"'}
    headers.update({f"x-amz-checksum-{a}": v for a, v in written.checksums.items()})
    return web.Response(headers=headers)


async def _upload_part_copy(request: web.Request, number: int) -> web.Response:
    state = _state(request)
    source_bucket, source_key = parse_copy_source(request.headers["x-amz-copy-source"])
    manifest = await state.meta.get_manifest(source_bucket, source_key)
    source = manifest.version
    conditions.evaluate(request.headers, source.etag, last_modified(source),
                        prefix="x-amz-copy-source-if-")
    wanted = request.headers.get("x-amz-copy-source-range")
    first, last = 0, source.size - 1
    if wanted is not None:
        chosen = ranges.parse_range(wanted, source.size)
        if chosen is None:
            raise s3e.InvalidArgument("x-amz-copy-source-range must be bytes=first-last")
        first, last = chosen

    async def body() -> AsyncIterator[bytes]:
        if source.size == 0:
            return
        async for piece in read_range(state, manifest, first, last):
            yield piece

    length = last - first + 1 if source.size else 0
    written = await write_body(state, body(), length, ExpectedDigests())
    part = Part(number=number, etag=written.etag, size=written.size, created_ns=time.time_ns(),
                segments=written.refs)
    await mp.put_part(state.meta, request["query"]["uploadId"], part, written.new_segments)
    return web.Response(body=render_copy_result(written.etag, from_ns(part.created_ns),
                                                    root_name="CopyPartResult"),
                        content_type="application/xml")


async def complete(request: web.Request) -> web.Response:
    state = _state(request)
    await _upload_for(request)
    body = await request.content.read(MAX_COMPLETE_BODY_BYTES + 1)
    if len(body) > MAX_COMPLETE_BODY_BYTES:
        raise s3e.MalformedXML("The CompleteMultipartUpload body is too large.")
    parts = mpxml.parse_complete(body)
    result = await mp.complete_upload(state.meta, request["query"]["uploadId"], parts,
                                      secrets.token_hex(8), time.time_ns())
    location = f"/{request['bucket']}/{request['key']}"
    return web.Response(body=mpxml.render_complete(location, request["bucket"], request["key"],
                                                   result["etag"]),
                        content_type="application/xml")


async def abort(request: web.Request) -> web.Response:
    await _upload_for(request)
    await mp.abort_upload(_state(request).meta, request["query"]["uploadId"])
    return web.Response(status=204)


def _bounded_int(query: dict[str, str], name: str, default: int, limit: int) -> int:
    text = query.get(name, str(default))
    if not text.isdigit():
        raise s3e.InvalidArgument(f"{name} must be a non-negative integer")
    return min(int(text), limit)


async def list_parts(request: web.Request) -> web.Response:
    upload, parts = await _upload_for(request)
    query = request["query"]
    marker = _bounded_int(query, "part-number-marker", 0, mpxml.MAX_PARTS)
    max_parts = _bounded_int(query, "max-parts", 1000, 1000)
    after = [p for p in parts if p.number > marker]
    page = after[:max_parts]
    truncated = len(after) > max_parts
    owner = s3xml.Owner(request["auth"].access_key, request["auth"].access_key)
    entries = [mpxml.PartEntry(p.number, from_ns(p.created_ns), p.etag, p.size) for p in page]
    body = mpxml.render_list_parts(
        bucket=upload.bucket, key=upload.key, upload_id=upload.upload_id, owner=owner,
        marker=marker, next_marker=page[-1].number if truncated and page else None,
        max_parts=max_parts, truncated=truncated, parts=entries)
    return web.Response(body=body, content_type="application/xml")


async def list_uploads(request: web.Request) -> web.Response:
    query = request["query"]
    max_uploads = _bounded_int(query, "max-uploads", 1000, 1000)
    key_marker = query.get("key-marker", "")
    upload_id_marker = query.get("upload-id-marker", "")
    prefix = query.get("prefix", "")
    uploads, truncated = await mp.list_uploads(_state(request).meta, request["bucket"], prefix,
                                               key_marker, upload_id_marker, max_uploads)
    owner = s3xml.Owner(request["auth"].access_key, request["auth"].access_key)
    body = mpxml.render_list_uploads(
        bucket=request["bucket"], prefix=prefix, key_marker=key_marker,
        upload_id_marker=upload_id_marker, max_uploads=max_uploads, truncated=truncated,
        owner=owner, uploads=[mpxml.UploadEntry(u.key, u.upload_id, from_ns(u.created_ns))
                              for u in uploads])
    return web.Response(body=body, content_type="application/xml")
