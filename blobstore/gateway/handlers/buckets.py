"""ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation."""

from __future__ import annotations

import time

from aiohttp import web

from blobstore.core.s3 import errors as s3e
from blobstore.core.s3 import xml as s3xml
from blobstore.gateway.handlers.common import from_ns
from blobstore.gateway.handlers.common import gateway_state as _state

MAX_CREATE_BODY_BYTES = 64 * 1024




def _xml(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/xml")


async def list_buckets(request: web.Request) -> web.Response:
    buckets = await _state(request).meta.list_buckets()
    owner = s3xml.Owner(request["auth"].access_key, request["auth"].access_key)
    entries = [s3xml.BucketEntry(b.name, from_ns(b.created_ns)) for b in buckets]
    return _xml(s3xml.render_list_buckets(owner, entries))


async def create_bucket(request: web.Request) -> web.Response:
    state = _state(request)
    acl = request.headers.get("x-amz-acl", "private")
    if acl != "private":
        raise s3e.InvalidArgument(f"canned ACL {acl!r} is not supported; only private")
    body = await request.content.read(MAX_CREATE_BODY_BYTES + 1)
    if len(body) > MAX_CREATE_BODY_BYTES:
        raise s3e.MalformedXML("the CreateBucketConfiguration is too large")
    location = s3xml.parse_create_bucket_configuration(body)
    if location is not None and location != state.config.region:
        raise s3e.InvalidArgument(
            f"this cluster's region is {state.config.region}, not {location}")
    await state.meta.create_bucket(request["bucket"], time.time_ns())
    return web.Response(status=200, headers={"Location": f"/{request['bucket']}"})


async def head_bucket(request: web.Request) -> web.Response:
    state = _state(request)
    await state.meta.head_bucket(request["bucket"])
    return web.Response(status=200, headers={"x-amz-bucket-region": state.config.region})


async def delete_bucket(request: web.Request) -> web.Response:
    await _state(request).meta.delete_bucket(request["bucket"])
    return web.Response(status=204)


async def get_bucket_location(request: web.Request) -> web.Response:
    state = _state(request)
    await state.meta.head_bucket(request["bucket"])
    region = "" if state.config.region == "us-east-1" else state.config.region
    return _xml(s3xml.render_location(region))
