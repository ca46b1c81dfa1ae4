"""Request -> (bucket, key, operation) -> handler, after SigV4 authentication.

Path-style (``/bucket/key``) always; virtual-host style (``bucket.<s3_domain>``) when the
cluster sets ``s3_domain``. The key is the percent-decoded raw path after the bucket,
exactly as the client sent it (``+`` stays ``+``, ``//`` stays ``//``).
"""

from __future__ import annotations

import datetime
from urllib.parse import unquote

from aiohttp import web

from blobstore.core.s3 import chunked, names, sigv4
from blobstore.core.s3 import errors as s3e
from blobstore.gateway.handlers import batch_delete, buckets, copy, listing, multipart, objects

Handler = object


def split_target(raw_path: str, host: str, s3_domain: str) -> tuple[str, str | None]:
    """(bucket, key or None) from the raw path and Host; bucket '' is the service."""
    path = raw_path.partition("?")[0]
    hostname = host.rsplit(":", 1)[0].lower() if host else ""
    if s3_domain and hostname.endswith("." + s3_domain.lower()):
        bucket = hostname[: -len(s3_domain) - 1]
        key = unquote(path[1:], errors="strict") if len(path) > 1 else None
        return bucket, key
    bucket, slash, rest = path[1:].partition("/")
    bucket = unquote(bucket, errors="strict")
    if not slash or rest == "":
        return bucket, None
    return bucket, unquote(rest, errors="strict")


async def authenticate(request: web.Request) -> sigv4.ParsedAuth:
    from blobstore.gateway.app import STATE

    state = request.app[STATE]
    path, _, query = request.raw_path.partition("?")
    parsed = sigv4.parse_authorization(request.method, path, query, request.headers,
                                       datetime.datetime.now(datetime.UTC))
    secret = await state.secret_for(parsed.access_key)
    sigv4.check_signature(parsed, secret)
    # What the chunks of an aws-chunked body chain their signatures from.
    request["signing"] = chunked.SigningContext(
        sigv4.signing_key(secret, parsed.date, parsed.region, parsed.service), parsed.amz_date,
        parsed.scope, parsed.signature)
    return parsed


async def dispatch(request: web.Request) -> web.StreamResponse:
    from blobstore.gateway.app import STATE

    state = request.app[STATE]
    writes_body = request.method == "PUT" and "x-amz-copy-source" not in request.headers
    async with state.admission.admit(writes_body):
        return await _dispatch(request, state)


async def _dispatch(request: web.Request, state) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    try:
        bucket, key = split_target(request.raw_path, request.host, state.config.s3_domain)
    except UnicodeDecodeError as exc:
        raise s3e.InvalidArgument("the request path is not valid UTF-8") from exc
    request["auth"] = await authenticate(request)
    # The parameters exactly as signed (yarl would turn '+' into a space).
    query = dict(sigv4.parse_query(request.raw_path.partition("?")[2]))
    request["query"] = query
    method = request.method
    if not bucket:
        if method == "GET":
            return await buckets.list_buckets(request)
        raise s3e.MethodNotAllowed("The specified method is not allowed against this resource.")
    names.validate_bucket_name(bucket)
    request["bucket"] = bucket
    if key is None:
        return await _bucket_operation(request, method, query)
    names.validate_key(key)
    request["key"] = key
    if "uploadId" in query:
        return await _multipart_operation(request, method)
    if method == "POST" and "uploads" in query:
        return await multipart.create(request)
    if method == "PUT":
        if "x-amz-copy-source" in request.headers:
            return await copy.copy_object(request)
        return await objects.put_object(request)
    if method in ("GET", "HEAD"):
        return await objects.get_object(request, head=method == "HEAD")
    if method == "DELETE":
        return await objects.delete_object(request)
    raise s3e.MethodNotAllowed("The specified method is not allowed against this resource.")


async def _multipart_operation(request: web.Request, method: str) -> web.StreamResponse:
    if method == "PUT":
        return await multipart.upload_part(request)
    if method == "POST":
        return await multipart.complete(request)
    if method == "DELETE":
        return await multipart.abort(request)
    if method == "GET":
        return await multipart.list_parts(request)
    raise s3e.MethodNotAllowed("The specified method is not allowed against this resource.")


async def _bucket_operation(request: web.Request, method: str, query) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    if method == "GET":
        if "location" in query:
            return await buckets.get_bucket_location(request)
        if "versions" in query:
            return await listing.list_versions(request)
        if "uploads" in query:
            return await multipart.list_uploads(request)
        for unsupported in ("policy", "acl", "lifecycle", "cors"):
            if unsupported in query:
                raise s3e.S3NotImplemented(f"?{unsupported} is not supported yet.")
        return await listing.list_objects(request)
    if method == "PUT":
        return await buckets.create_bucket(request)
    if method == "HEAD":
        return await buckets.head_bucket(request)
    if method == "DELETE":
        return await buckets.delete_bucket(request)
    if method == "POST" and "delete" in query:
        return await batch_delete.delete_objects(request)
    raise s3e.MethodNotAllowed("The specified method is not allowed against this resource.")
