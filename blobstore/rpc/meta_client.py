"""Typed client of the metadata service (docs/internal-api.md, "Metadata service").

One async method per operation, returning the records of ``core/records.py``; errors come
back as the typed ``BlobstoreError`` the service raised (NoSuchBucket, NoSuchKey, ...).

Rules:

1. Commands carry ``(client_id, sequence)``: the client id is random per MetaClient (pass
   one only if it is unique to this client's lifetime: a reused id with restarted sequence
   numbers would be answered with old outcomes), sequences count up from 1, and several may
   be in flight at once. Each envelope's ``ack_below`` is the lowest sequence still awaiting
   its answer, so the service can forget older outcomes.
2. On Unavailable (connection refused, timeout, 503) a call is retried, the same envelope
   for a command, against each address in turn, for ``attempts`` rounds with exponential
   back-off; the service applies a repeated command once. Any other error is final. After
   the last round the Unavailable is raised: a command may or may not have been applied.
3. Object keys, prefixes and markers go in the query string, built by yarl so that the
   string signed is the string sent (see ``meta/app.py``). Bucket names and access keys go
   in the path and are restricted to path-safe characters; a name outside them cannot exist
   in the service, so the client answers NoSuchBucket / UnknownAccessKey without asking.
4. The address that answered last is tried first (the leader, once there is Raft).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import msgspec
import yarl

from blobstore.core.errors import NoSuchBucket, Unavailable, UnknownAccessKey
from blobstore.core.records import (
    Bucket,
    ClusterMap,
    ListPage,
    Manifest,
    ObjectVersion,
    Segment,
)
from blobstore.rpc.client import RpcClient

ATTEMPTS = 4  # rounds over every address
BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0
TIMEOUT_S = 30.0
LOOKUP_BATCH_IDS = 1000  # the service refuses more per request
_PATH_SAFE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,254}")


class _CommandReply(msgspec.Struct, frozen=True):
    index: int
    result: dict[str, Any]


class _Buckets(msgspec.Struct, frozen=True):
    buckets: list[Bucket]


class _Segments(msgspec.Struct, frozen=True):
    segments: dict[str, Segment]


class _User(msgspec.Struct, frozen=True):
    access_key: str
    secret_key: str


class MetaClient:
    """Calls one meta service (any of ``addresses``) with retries and apply-once commands."""

    def __init__(self, rpc: RpcClient, addresses: list[str], client_id: str | None = None, *,
                 attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S,
                 timeout_s: float = TIMEOUT_S) -> None:
        if not addresses:
            raise ValueError("MetaClient needs at least one meta address")
        self.rpc = rpc
        self.addresses = list(addresses)
        self.client_id = client_id or f"mc-{secrets.token_hex(12)}"
        self.attempts = max(attempts, 1)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._next_sequence = 1
        self._outstanding: set[int] = set()
        self._preferred = 0

    # ---- commands ----------------------------------------------------------------------

    async def create_bucket(self, name: str, created_ns: int) -> Bucket:
        result = await self.command({"type": "create_bucket", "name": name,
                                     "created_ns": created_ns})
        return msgspec.convert(result, Bucket)

    async def delete_bucket(self, name: str) -> None:
        await self.command({"type": "delete_bucket", "name": name})

    async def put_object(self, version: ObjectVersion, new_segments: list[Segment]) -> str | None:
        """Commit a version and its new segments; the version id it replaced, if any."""
        result = await self.command({"type": "put_object", "version": version,
                                     "new_segments": new_segments})
        replaced = result.get("replaced_version_id")
        return str(replaced) if replaced is not None else None

    async def delete_object(self, bucket: str, key: str) -> bool:
        """True if a version was deleted, False if there was none (not an error)."""
        result = await self.command({"type": "delete_object", "bucket": bucket, "key": key})
        return bool(result.get("deleted"))

    async def report_bad_shard(self, segment_id: str, index: int, node_id: str,
                               reason: str = "") -> bool:
        """True if a repair was queued (False: unknown segment or stale report)."""
        result = await self.command({"type": "report_bad_shard", "segment_id": segment_id,
                                     "index": index, "node_id": node_id, "reason": reason})
        return bool(result.get("queued"))

    async def put_user(self, access_key: str, secret_key: str, name: str = "") -> None:
        await self.command({"type": "put_user", "access_key": access_key,
                            "secret_key": secret_key, "name": name})

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Propose one command (its fields with ``type``); its result, or its typed error."""
        sequence = self._next_sequence
        self._next_sequence += 1
        self._outstanding.add(sequence)
        envelope = {"client_id": self.client_id, "sequence": sequence, "command": command,
                    "ack_below": min(self._outstanding)}
        try:
            payload = await self._request("POST", "/v1/command", body=envelope)
        finally:
            self._outstanding.discard(sequence)
        return msgspec.json.decode(payload, type=_CommandReply).result

    # ---- reads -------------------------------------------------------------------------

    async def list_buckets(self) -> list[Bucket]:
        payload = await self._request("GET", "/v1/buckets")
        return msgspec.json.decode(payload, type=_Buckets).buckets

    async def head_bucket(self, name: str) -> Bucket:
        payload = await self._request("GET", f"/v1/buckets/{_bucket_segment(name)}")
        return msgspec.json.decode(payload, type=Bucket)

    async def get_manifest(self, bucket: str, key: str) -> Manifest:
        path_qs = _path_qs(f"/v1/objects/{_bucket_segment(bucket)}", {"key": key})
        return msgspec.json.decode(await self._request("GET", path_qs), type=Manifest)

    async def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "",
                           start_after: str = "", max_keys: int = 1000) -> ListPage:
        query = {"prefix": prefix, "delimiter": delimiter, "start_after": start_after,
                 "max_keys": str(max_keys)}
        path_qs = _path_qs(f"/v1/list/{_bucket_segment(bucket)}", query)
        return msgspec.json.decode(await self._request("GET", path_qs), type=ListPage)

    async def lookup_segments(self, ids: list[str]) -> dict[str, Segment]:
        """The records of those ids that exist, in batches of LOOKUP_BATCH_IDS."""
        found: dict[str, Segment] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), LOOKUP_BATCH_IDS):
            batch = unique[start:start + LOOKUP_BATCH_IDS]
            payload = await self._request("POST", "/v1/segments/lookup", body={"ids": batch})
            found.update(msgspec.json.decode(payload, type=_Segments).segments)
        return found

    async def cluster_map(self) -> ClusterMap:
        return msgspec.json.decode(await self._request("GET", "/v1/cluster_map"),
                                   type=ClusterMap)

    async def heartbeat(self, node_id: str, capacity_bytes: int, used_bytes: int,
                        shard_count: int) -> None:
        await self._request("POST", "/v1/heartbeat",
                            body={"node_id": node_id, "capacity_bytes": capacity_bytes,
                                  "used_bytes": used_bytes, "shard_count": shard_count})

    async def get_user(self, access_key: str) -> str:
        """The secret key of ``access_key``; UnknownAccessKey if there is no such user."""
        if not _PATH_SAFE_RE.fullmatch(access_key):
            raise UnknownAccessKey(f"unknown access key {access_key!r}")
        payload = await self._request("GET", f"/v1/users/{access_key}")
        return msgspec.json.decode(payload, type=_User).secret_key

    async def status(self) -> dict[str, Any]:
        return msgspec.json.decode(await self._request("GET", "/v1/status"),
                                   type=dict[str, Any])

    # ---- transport ---------------------------------------------------------------------

    async def _request(self, method: str, path_qs: str, body: Any = None) -> bytes:
        """One call with retries on Unavailable (rules 2 and 4); the response body."""
        last_error: Unavailable | None = None
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
            for offset in range(len(self.addresses)):
                position = (self._preferred + offset) % len(self.addresses)
                try:
                    _status, _headers, payload = await self.rpc.request(
                        method, self.addresses[position], path_qs, body=body,
                        timeout_s=self.timeout_s)
                except Unavailable as error:
                    last_error = error
                    continue
                self._preferred = position
                return payload
        assert last_error is not None
        raise last_error


def _bucket_segment(name: str) -> str:
    """The bucket as a path segment; NoSuchBucket for a name the service cannot hold."""
    if not _PATH_SAFE_RE.fullmatch(name):
        raise NoSuchBucket(f"bucket {name!r} does not exist")
    return name


def _path_qs(path: str, query: dict[str, str]) -> str:
    """``path?query`` in yarl's canonical form, which is exactly what goes on the wire."""
    return str(yarl.URL.build(path=path, query=query))
