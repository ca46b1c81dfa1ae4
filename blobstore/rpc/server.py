"""Middlewares shared by the internal (meta, storage) aiohttp apps.

- every request except ``/_blobstore/*`` (health, metrics) must carry the cluster signature;
- a BlobstoreError raised by a handler becomes ``{"error": {"code", "message"}}`` with its
  HTTP status, which ``rpc.client`` turns back into the same typed exception.
"""

from __future__ import annotations

import logging
import time

import msgspec
from aiohttp import web

from blobstore.core.errors import BlobstoreError
from blobstore.rpc.auth import AUTH_HEADER, verify
from blobstore.runtime import metrics

log = logging.getLogger(__name__)
SECRET_KEY: web.AppKey[str] = web.AppKey("cluster_secret", str)
PUBLIC_PREFIX = "/_blobstore/"


def error_response(error: BlobstoreError) -> web.Response:
    body = msgspec.json.encode({"error": {"code": error.code, "message": error.message}})
    return web.Response(status=error.http_status, body=body, content_type="application/json")


def json_response(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value),
                        content_type="application/json")


@web.middleware
async def internal_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        if not request.path.startswith(PUBLIC_PREFIX):
            verify(request.app[SECRET_KEY], request.method, request.path_qs,
                   request.headers.get(AUTH_HEADER), time.time())
        return await handler(request)
    except BlobstoreError as error:
        if error.http_status >= 500:
            log.warning("%s %s -> %s: %s", request.method, request.path, error.code, error.message)
        return error_response(error)
    except msgspec.ValidationError as error:
        from blobstore.core.errors import Invalid

        return error_response(Invalid(f"bad request body: {error}"))
    except msgspec.DecodeError as error:
        from blobstore.core.errors import Invalid

        return error_response(Invalid(f"malformed request body: {error}"))


def internal_app(secret: str, **kwargs: object) -> web.Application:
    app = web.Application(middlewares=[metrics.metrics_middleware(), internal_middleware],
                          **kwargs)  # type: ignore[arg-type]
    app[SECRET_KEY] = secret
    metrics.add_routes(app)  # GET /_blobstore/metrics, unsigned like every /_blobstore/ path
    return app
