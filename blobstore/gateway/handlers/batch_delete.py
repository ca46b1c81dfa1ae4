"""DeleteObjects (POST /bucket?delete): up to 1000 keys, each deleted as DeleteObject.

The body's integrity must be proven (Content-MD5 or an x-amz-checksum-* header, as S3
requires). A missing key counts as deleted (S3 semantics). ``VersionId`` may only be
``null``: our buckets are unversioned, and cleanup tools send it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib

from aiohttp import web

from blobstore.core.digests import CHECKSUM_ALGORITHMS, new_checksum
from blobstore.core.errors import BlobstoreError
from blobstore.core.s3 import errors as s3e
from blobstore.core.s3 import names
from blobstore.core.s3.xml_objects import parse_delete_objects, render_delete_result
from blobstore.gateway.handlers.common import gateway_state as _state

MAX_BODY_BYTES = 2 * 1024 * 1024
PARALLEL_DELETES = 16


def _check_integrity(request: web.Request, body: bytes) -> None:
    md5 = request.headers.get("Content-MD5")
    if md5 is not None:
        try:
            claimed = base64.b64decode(md5, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise s3e.InvalidDigest() from exc
        if claimed != hashlib.md5(body).digest():
            raise s3e.BadDigest()
        return
    for algorithm in CHECKSUM_ALGORITHMS:
        value = request.headers.get(f"x-amz-checksum-{algorithm}")
        if value is not None:
            hasher = new_checksum(algorithm)
            hasher.update(body)
            if base64.b64encode(hasher.digest()).decode() != value:
                raise s3e.BadDigest(f"The {algorithm.upper()} you specified did not match.")
            return
    raise s3e.InvalidRequest("Missing required header for this request: Content-MD5")


async def delete_objects(request: web.Request) -> web.Response:
    state = _state(request)
    bucket = request["bucket"]
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise s3e.MalformedXML("The Delete body is too large.")
    _check_integrity(request, body)
    parsed = parse_delete_objects(body)
    await state.meta.head_bucket(bucket)
    slots = asyncio.Semaphore(PARALLEL_DELETES)

    async def delete_one(key: str, version: str | None) -> tuple[str, str, str] | None:
        try:
            names.validate_key(key)
            if version not in (None, "null"):
                raise s3e.InvalidArgument("only VersionId null exists in unversioned buckets")
            async with slots:
                await state.meta.delete_object(bucket, key)
            return None
        except s3e.S3Error as error:
            return key, error.code, error.message
        except BlobstoreError as error:
            mapped = s3e.from_domain(error)
            return key, mapped.code, mapped.message

    outcomes = await asyncio.gather(*(delete_one(k, v) for k, v in parsed.keys))
    errors = [outcome for outcome in outcomes if outcome is not None]
    failed = {key for key, _, _ in errors}
    deleted = [] if parsed.quiet else [(k, v) for k, v in parsed.keys if k not in failed]
    return web.Response(body=render_delete_result(deleted, errors),
                        content_type="application/xml")
