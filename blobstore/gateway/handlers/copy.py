"""CopyObject: a new version that references the source's segments (no bytes move).

Segments are content-addressed and refcounted, so a copy is one meta command: the new
version lists the same segment refs, and meta increments their refcounts atomically with
the commit. Metadata comes from the source (``x-amz-metadata-directive: COPY``, the
default) or from this request (``REPLACE``). Copying an object onto itself is refused
unless the metadata is replaced, as S3 does.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import unquote

from aiohttp import web

from blobstore.core.records import ObjectVersion
from blobstore.core.s3 import conditions, names
from blobstore.core.s3 import errors as s3e
from blobstore.core.s3.xml_objects import render_copy_result
from blobstore.gateway.handlers.common import gateway_state as _state
from blobstore.gateway.handlers.objects import _attributes, last_modified


def parse_copy_source(value: str) -> tuple[str, str]:
    source = unquote(value.partition("?")[0], errors="strict").lstrip("/")
    bucket, slash, key = source.partition("/")
    if not slash or not key:
        raise s3e.InvalidArgument("x-amz-copy-source must be bucket/key")
    names.validate_bucket_name(bucket)
    names.validate_key(key)
    return bucket, key


async def copy_object(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        source_bucket, source_key = parse_copy_source(request.headers["x-amz-copy-source"])
    except UnicodeDecodeError as exc:
        raise s3e.InvalidArgument("x-amz-copy-source is not valid UTF-8") from exc
    directive = request.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise s3e.InvalidArgument("x-amz-metadata-directive must be COPY or REPLACE")
    bucket, key = request["bucket"], request["key"]
    if (source_bucket, source_key) == (bucket, key) and directive == "COPY":
        raise s3e.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata.")
    await state.meta.head_bucket(bucket)
    source = (await state.meta.get_manifest(source_bucket, source_key)).version
    conditions.evaluate(request.headers, source.etag, last_modified(source),
                        prefix="x-amz-copy-source-if-")
    if directive == "REPLACE":
        attributes = _attributes(request)
        content_type, metadata, headers = (attributes.content_type, attributes.user_metadata,
                                           attributes.headers)
    else:
        content_type, metadata, headers = (source.content_type, source.user_metadata,
                                           source.headers)
    version = ObjectVersion(
        bucket=bucket, key=key, version_id=secrets.token_hex(8), size=source.size,
        etag=source.etag, created_ns=time.time_ns(), segments=source.segments,
        content_type=content_type, user_metadata=metadata, checksums=source.checksums,
        headers=headers, inline=source.inline)
    await state.meta.put_object(version, [])
    return web.Response(body=render_copy_result(version.etag, last_modified(version)),
                        content_type="application/xml")
