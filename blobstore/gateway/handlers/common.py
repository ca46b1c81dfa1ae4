"""What every S3 handler module shares: the gateway state of a request, and times."""

from __future__ import annotations

import datetime

from aiohttp import web


def gateway_state(request: web.Request):  # type: ignore[no-untyped-def]
    from blobstore.gateway.app import STATE  # app imports the handlers: resolve at call time

    return request.app[STATE]


def from_ns(ns: int) -> datetime.datetime:
    """A record's nanosecond timestamp as an aware UTC datetime (S3 XML and headers)."""
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC)
