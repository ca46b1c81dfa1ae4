"""Typed client of the storage node's internal API (docs/internal-api.md, storage section).

One method per route; ``address`` is the node's ``host:port``. Errors come back as the
typed ``BlobstoreError`` the node raised (``rpc.client``); unreachable nodes and timeouts
are Unavailable.

Rules:

- Shard ids are validated here too (``parse_shard_id``), so nothing but a well-formed id is
  ever put in a URL path.
- Ranges are half-open, ``[start, end)``, like Python slices (sent as the inclusive HTTP
  ``bytes=start-(end-1)``); a range is non-empty and starts inside the payload, its end is
  clamped by the node. Otherwise Invalid.
- A whole-shard GET is checked against the xxh3 the node sent. A mismatch means the bytes
  were damaged on the way, not on the node's disk, so it is Unavailable (try another
  shard), never Corrupt (which callers report to meta as a bad shard to repair). The node
  verified the file before sending; the caller still verifies against its own record (the
  segment's shard_xxh3), which this cannot.
- A HEAD response has no body to carry the error, so its status is mapped to the error
  class here (404 -> NoSuchShard, ...).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import msgspec

from blobstore.core.errors import (
    BlobstoreError,
    Corrupt,
    InsufficientStorage,
    Invalid,
    NoSuchShard,
    Unauthorized,
    Unavailable,
)
from blobstore.core.ids import parse_shard_id
from blobstore.core.shard_format import payload_xxh3, validate_xxh3_hex
from blobstore.rpc import wire
from blobstore.rpc.client import DEFAULT_TIMEOUT_S, RpcClient
from blobstore.rpc.wire import ShardInfo

Buffer = bytes | bytearray | memoryview
_HEAD_ERRORS: dict[int, type[BlobstoreError]] = {
    400: Invalid, 401: Unauthorized, 404: NoSuchShard, 422: Corrupt, 503: Unavailable,
    507: InsufficientStorage,
}


def _shard_path(shard_id: str) -> str:
    parse_shard_id(shard_id)
    return f"/v1/shards/{shard_id}"


def range_header(start: int | None, end: int | None) -> str | None:
    """The HTTP Range for the half-open ``[start, end)``; None for the whole payload."""
    if start is None and end is None:
        return None
    first = 0 if start is None else start
    if first < 0 or (end is not None and end <= first):
        raise Invalid(f"range [{start}, {end}) is empty or negative")
    return f"bytes={first}-" if end is None else f"bytes={first}-{end - 1}"


class StorageClient:
    """Shard operations on any storage node, over a shared signed RpcClient."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def put_shard(self, address: str, shard_id: str, payload: Buffer, *, data_shards: int,
                        parity_shards: int, segment_length: int, xxh3_hex: str,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> ShardInfo:
        """Store one shard; the node refuses it (Invalid) if ``payload`` does not match."""
        validate_xxh3_hex(xxh3_hex)
        headers = {
            wire.HEADER_DATA_SHARDS: str(data_shards),
            wire.HEADER_PARITY_SHARDS: str(parity_shards),
            wire.HEADER_SEGMENT_LENGTH: str(segment_length),
            wire.HEADER_XXH3: xxh3_hex,
            "Content-Type": "application/octet-stream",
        }
        # A view: aiohttp slices the body to its length before sending, which copies a
        # bytearray (the parity shards) but not a memoryview.
        _, _, body = await self.rpc.request("PUT", address, _shard_path(shard_id),
                                            data=memoryview(payload), headers=headers,
                                            timeout_s=timeout_s)
        return msgspec.json.decode(body, type=ShardInfo)

    async def get_shard(self, address: str, shard_id: str, *, start: int | None = None,
                        end: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
        """The payload, or ``payload[start:end]``; verified by the node (and here if whole)."""
        path = _shard_path(shard_id)
        requested = range_header(start, end)
        headers = {"Range": requested} if requested else None
        status, response_headers, body = await self.rpc.request(
            "GET", address, path, headers=headers, timeout_s=timeout_s)
        if requested is None:
            expected = wire.header_str(response_headers, wire.HEADER_XXH3)
            if payload_xxh3(body) != expected:
                raise Unavailable(f"shard {shard_id} from {address} was damaged in transit")
        elif status != 206:
            raise Invalid(f"{address} ignored the range of shard {shard_id}")
        return body

    async def head_shard(self, address: str, shard_id: str, *,
                         timeout_s: float = DEFAULT_TIMEOUT_S) -> ShardInfo:
        """What the node holds for this shard; NoSuchShard if nothing."""
        try:
            _, headers, _ = await self.rpc.request("HEAD", address, _shard_path(shard_id),
                                                   timeout_s=timeout_s)
        except BlobstoreError as exc:
            raise _head_error(exc, f"HEAD {shard_id} on {address}") from exc
        return wire.shard_info_from_headers(shard_id, headers)

    async def delete_shard(self, address: str, shard_id: str, *,
                           older_than_ns: int | None = None,
                           timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Remove a shard; succeeds whether or not the node had it.

        With ``older_than_ns`` the node removes it only if its file was written before that
        (wall clock of the node); a newer file is kept and the answer is Conflict.
        """
        path = _shard_path(shard_id)
        if older_than_ns is not None:
            path += f"?older_than_ns={int(older_than_ns)}"
        await self.rpc.request("DELETE", address, path, timeout_s=timeout_s)

    async def list_shards(self, address: str, after: str = "", limit: int = 1000, *,
                          timeout_s: float = DEFAULT_TIMEOUT_S
                          ) -> tuple[list[ShardInfo], str | None]:
        """One page of the node's inventory in shard-id order, and the next ``after``."""
        query = urllib.parse.urlencode({"after": after, "limit": str(limit)},
                                       quote_via=urllib.parse.quote)
        _, _, body = await self.rpc.request("GET", address, f"/v1/shards?{query}",
                                            timeout_s=timeout_s)
        page = msgspec.json.decode(body, type=wire.ShardList)
        return page.shards, page.next

    async def status(self, address: str, *,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """``{"node_id", "capacity_bytes", "used_bytes", "shard_count", "payload_bytes"}``."""
        _, _, body = await self.rpc.request("GET", address, "/v1/status", timeout_s=timeout_s)
        return msgspec.to_builtins(msgspec.json.decode(body, type=wire.StorageStatus))


def _head_error(exc: BlobstoreError, what: str) -> BlobstoreError:
    if type(exc) is not BlobstoreError:  # already typed (e.g. Unavailable: unreachable)
        return exc
    error_class = _HEAD_ERRORS.get(getattr(exc, "http_status", 500))
    return error_class(f"{what}: HTTP {exc.http_status}") if error_class else exc
