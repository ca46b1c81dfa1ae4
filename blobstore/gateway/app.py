"""The gateway process: a stateless S3 server.

One middleware turns every error into an S3 XML error document: S3Error subclasses as
they are, domain errors (core/errors.py) through the one table in core/s3/errors.py, and
anything unexpected as InternalError (logged with its traceback). 5xx are logged as
warnings, 4xx as info.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.ec import EcPolicy
from blobstore.core.errors import BlobstoreError
from blobstore.core.records import NodeRole
from blobstore.core.s3 import errors as s3e
from blobstore.core.s3 import xml as s3xml
from blobstore.gateway import routing, status_page
from blobstore.gateway.admission import Admission
from blobstore.gateway.state import GatewayState
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.meta_client import MetaClient
from blobstore.rpc.storage_client import StorageClient

log = logging.getLogger(__name__)
STATE: web.AppKey[GatewayState] = web.AppKey("gateway_state", GatewayState)
MAX_HEADER_BYTES = 16 * 1024


def _error_response(request: web.Request, error: s3e.S3Error, request_id: str) -> web.Response:
    body = s3xml.render_error(error, request_id, error.resource or request.path)
    headers = {"x-amz-request-id": request_id}
    if request.method == "HEAD":
        return web.Response(status=error.status, headers=headers)
    return web.Response(status=error.status, body=body, headers=headers,
                        content_type="application/xml")


@web.middleware
async def s3_error_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    request_id = secrets.token_hex(8).upper()
    request["request_id"] = request_id
    try:
        response = await handler(request)
    except s3e.S3Error as error:
        log.log(logging.WARNING if error.status >= 500 else logging.INFO,
                "%s %s -> %s %s", request.method, request.path, error.status, error.code)
        return _error_response(request, error, request_id)
    except BlobstoreError as error:
        mapped = s3e.from_domain(error)
        log.log(logging.WARNING if mapped.status >= 500 else logging.INFO,
                "%s %s -> %s %s (%s)", request.method, request.path, mapped.status,
                mapped.code, error.message)
        return _error_response(request, mapped, request_id)
    except (web.HTTPException, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("%s %s -> 500", request.method, request.path)
        return _error_response(request, s3e.InternalError("We encountered an internal error."),
                               request_id)
    if isinstance(response, web.StreamResponse) and not response.prepared:
        response.headers.setdefault("x-amz-request-id", request_id)
    return response


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


READY_MAP_AGE_S = 10.0


async def readyz(request: web.Request) -> web.Response:
    """Ready to take S3 traffic: a cluster map came from meta within READY_MAP_AGE_S.

    Load balancers probe this, so a gateway cut off from meta stops getting requests."""
    state = request.app.get(STATE)
    if state is None or state.cluster_map is None or \
            time.monotonic() - state.map_fetched_at > READY_MAP_AGE_S:
        return web.json_response({"ready": False}, status=503)
    return web.json_response({"ready": True})


def create_app(config: ClusterConfig, node: NodeConfig) -> web.Application:
    app = web.Application(middlewares=[s3_error_middleware], client_max_size=1024**2,
                          handler_args={"max_field_size": MAX_HEADER_BYTES,
                                        "max_line_size": MAX_HEADER_BYTES})
    app.router.add_get("/_blobstore/healthz", healthz)
    app.router.add_get("/_blobstore/readyz", readyz)
    status_page.install(app, STATE)  # metrics, request ids, /_blobstore/status
    app.router.add_route("*", "/{tail:.*}", routing.dispatch)
    app.cleanup_ctx.append(_lifecycle(config, node))
    return app


def _lifecycle(config: ClusterConfig, node: NodeConfig):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        session = new_session()
        rpc = RpcClient(session, config.secret)
        metas = [n.address for n in config.by_role(NodeRole.META)]
        workers = max(2, min(8, (os.cpu_count() or 2) * 2))
        state = GatewayState(
            config=config, node=node, rpc=rpc, meta=MetaClient(rpc, metas, batching=True),
            storage=StorageClient(rpc), policy=EcPolicy(config.data_shards, config.parity_shards),
            executor=ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codec"),
            admission=Admission(config.gateway_max_requests, config.gateway_max_writes))
        app[STATE] = state
        refresher = asyncio.get_running_loop().create_task(state.refresh_map_forever())
        try:
            yield
        finally:
            refresher.cancel()
            for task in list(state.background):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await asyncio.gather(*state.background, return_exceptions=True)
            await session.close()
            state.executor.shutdown(wait=False, cancel_futures=True)

    return ctx
