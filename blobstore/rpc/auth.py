"""Cluster-secret signatures on internal requests (gateway <-> meta <-> storage).

Header ``X-Blobstore-Auth: <unix seconds>:<hex HMAC-SHA256>`` over
``METHOD \\n path?query \\n seconds``. The body is not covered: shard payloads carry their
own xxh3 and meta bodies are small JSON validated by schema; what the signature proves is
that the caller knows the cluster secret, recently. Pure functions; ``now`` is an argument.
"""

from __future__ import annotations

import hashlib
import hmac

from blobstore.core.errors import Unauthorized

AUTH_HEADER = "X-Blobstore-Auth"
MAX_SKEW_S = 300


def sign(secret: str, method: str, path_qs: str, now_s: float) -> str:
    seconds = int(now_s)
    message = f"{method.upper()}\n{path_qs}\n{seconds}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{seconds}:{digest}"


def verify(secret: str, method: str, path_qs: str, header: str | None, now_s: float) -> None:
    """Raise Unauthorized unless ``header`` is a fresh signature of this request."""
    if not header or ":" not in header:
        raise Unauthorized("internal request without the cluster signature")
    seconds_text, _, _digest = header.partition(":")
    if not seconds_text.isdigit():
        raise Unauthorized("malformed cluster signature")
    if abs(now_s - int(seconds_text)) > MAX_SKEW_S:
        raise Unauthorized("cluster signature expired or from the future")
    expected = sign(secret, method, path_qs, int(seconds_text))
    if not hmac.compare_digest(expected.encode(), header.encode()):
        raise Unauthorized("bad cluster signature")
