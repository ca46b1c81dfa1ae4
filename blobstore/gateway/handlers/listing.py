"""ListObjectsV2 and ListObjects (v1): parameters -> meta's paged listing -> XML.

The continuation token is the opaque (base64) form of the last key or common prefix of the
previous page; meta resumes strictly after it, so no key or prefix is returned twice.
"""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from blobstore.core.s3 import errors as s3e
from blobstore.core.s3 import xml as s3xml
from blobstore.core.s3.xml_objects import VersionEntry, render_list_versions
from blobstore.gateway.handlers.common import from_ns
from blobstore.gateway.handlers.common import gateway_state as _state

MAX_KEYS_LIMIT = 1000




def _max_keys(query) -> int:  # type: ignore[no-untyped-def]
    text = query.get("max-keys", str(MAX_KEYS_LIMIT))
    if not text.isdigit():
        raise s3e.InvalidArgument("max-keys must be a non-negative integer")
    return min(int(text), MAX_KEYS_LIMIT)


def encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise s3e.InvalidArgument("The continuation token provided is incorrect") from exc


async def list_objects(request: web.Request) -> web.Response:
    state = _state(request)
    query = request["query"]
    bucket = request["bucket"]
    v2 = query.get("list-type") == "2"
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    encoding = query.get("encoding-type")
    if encoding not in (None, "url"):
        raise s3e.InvalidArgument("Invalid Encoding Method specified in Request")
    max_keys = _max_keys(query)
    token = query.get("continuation-token") if v2 else None
    start_after = query.get("start-after", "") if v2 else query.get("marker", "")
    resume = decode_token(token) if token else start_after
    if max_keys == 0:
        await state.meta.head_bucket(bucket)
        entries, prefixes, truncated, next_marker = [], [], False, None
    else:
        page = await state.meta.list_objects(bucket, prefix=prefix, delimiter=delimiter,
                                             start_after=resume, max_keys=max_keys)
        owner = None
        if not v2 or query.get("fetch-owner") == "true":
            access_key = request["auth"].access_key
            owner = s3xml.Owner(access_key, access_key)
        entries = [s3xml.ObjectEntry(e.key, from_ns(e.created_ns), e.etag, e.size, owner)
                   for e in page.entries]
        prefixes, truncated, next_marker = page.common_prefixes, page.is_truncated, page.next_marker
    if v2:
        body = s3xml.render_list_objects_v2(
            bucket=bucket, prefix=prefix, delimiter=delimiter, max_keys=max_keys,
            contents=entries, common_prefixes=prefixes, is_truncated=truncated,
            continuation_token=token,
            next_continuation_token=encode_token(next_marker) if truncated and next_marker else None,
            start_after=start_after or None, encoding_type=encoding)
    else:
        body = s3xml.render_list_objects_v1(
            bucket=bucket, prefix=prefix, delimiter=delimiter, max_keys=max_keys,
            contents=entries, common_prefixes=prefixes, is_truncated=truncated,
            marker=start_after, next_marker=next_marker if truncated and delimiter else None,
            encoding_type=encoding)
    return web.Response(body=body, content_type="application/xml")


async def list_versions(request: web.Request) -> web.Response:
    """ListObjectVersions on an unversioned bucket: every object once, as version null."""
    state = _state(request)
    query = request["query"]
    bucket = request["bucket"]
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    encoding = query.get("encoding-type")
    if encoding not in (None, "url"):
        raise s3e.InvalidArgument("Invalid Encoding Method specified in Request")
    max_keys = _max_keys(query)
    key_marker = query.get("key-marker", "")
    if max_keys == 0:
        await state.meta.head_bucket(bucket)
        page = None
    else:
        page = await state.meta.list_objects(bucket, prefix=prefix, delimiter=delimiter,
                                             start_after=key_marker, max_keys=max_keys)
    access_key = request["auth"].access_key
    owner = s3xml.Owner(access_key, access_key)
    versions = [VersionEntry(e.key, from_ns(e.created_ns), e.etag, e.size, owner)
                for e in (page.entries if page else [])]
    truncated = bool(page and page.is_truncated)
    body = render_list_versions(
        bucket=bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        max_keys=max_keys, is_truncated=truncated, versions=versions,
        common_prefixes=page.common_prefixes if page else [],
        next_key_marker=page.next_marker if truncated and page else None,
        encoding_type=encoding)
    return web.Response(body=body, content_type="application/xml")
