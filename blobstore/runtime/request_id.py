"""The request id that follows one client request from the gateway to meta and storage.

The gateway names every S3 request (``x-amz-request-id``); the id is held in a context
variable while the request is handled, so that:

- every log line written on its behalf carries ``request_id=...`` (``runtime/logs.py``);
- every internal call made on its behalf sends it as ``X-Request-Id`` (``rpc/client.py``);
- meta and storage take the header of an incoming call and hold it the same way, so their
  log lines show the same id.

Rules:

1. A context variable, not a global: each aiohttp request runs in its own task context, and
   a task created while handling a request copies the context, so work spawned for the
   request (reports to meta) keeps its id.
2. An id from the wire is untrusted: one that is not 1..64 characters of ``[A-Za-z0-9._-]``
   is dropped (no log injection, no unbounded header echo).
3. Whoever sets the id resets it (``bound(...)`` as a context manager), so a connection
   that serves many requests never leaks one request's id into the next.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

HEADER = "X-Request-Id"
_VALID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CURRENT: ContextVar[str | None] = ContextVar("blobstore_request_id", default=None)


def current() -> str | None:
    """The id of the request being handled in this context, or None."""
    return _CURRENT.get()


def clean(value: str | None) -> str | None:
    """``value`` if it is an acceptable request id (rule 2), else None."""
    if value and _VALID_RE.fullmatch(value):
        return value
    return None


def set_current(value: str | None) -> None:
    """Name the request of this context (without reset: the caller's ``bound`` resets it).

    For an inner layer that learns the id after the outer one opened the scope (the
    gateway's S3 middleware creates the id inside the metrics middleware's scope)."""
    _CURRENT.set(clean(value))


@contextlib.contextmanager
def bound(value: str | None) -> Iterator[str | None]:
    """Hold ``value`` (cleaned) as the current id inside the block; restore after."""
    token = _CURRENT.set(clean(value))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def outgoing_headers() -> dict[str, str]:
    """``{"X-Request-Id": id}`` for an internal call, or ``{}`` outside any request."""
    value = _CURRENT.get()
    return {HEADER: value} if value else {}


__all__ = ["HEADER", "bound", "clean", "current", "outgoing_headers", "set_current"]
