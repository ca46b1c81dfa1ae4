"""Typed client of the metadata service (docs/internal-api.md, "Metadata service").

One async method per operation, returning the records of ``core/records.py``; errors come
back as the typed ``BlobstoreError`` the service raised (NoSuchBucket, NoSuchKey, ...).

The service is a Raft group of meta replicas: only the leader proposes writes and serves
linearizable reads; a follower answers 421 NotLeader with the leader's address, and a
replica without a (reachable) leader answers 503 Unavailable at once.

Rules:

1. Commands carry ``(client_id, sequence)``: the client id is random per MetaClient (pass
   one only if it is unique to this client's lifetime: a reused id with restarted sequence
   numbers would be answered with old outcomes), sequences count up from 1, and several may
   be in flight at once. Each envelope's ``ack_below`` is the lowest sequence still awaiting
   its answer, so the service can forget older outcomes.
2. Finding the leader: a call goes first to the last replica that answered (the leader,
   normally), follows NotLeader redirects to the address they name, and moves on to the
   next address on a connection error, a timeout of ``timeout_s`` per attempt, a 503, or a
   NotLeader naming no leader; after each whole round it backs off exponentially (from
   ``backoff_s``). A command is resent with the SAME envelope every time, so the service
   applies it once however often it arrives. Any other error is final.
3. Giving up: after ``deadline_s`` in all (10 s); at the end of a round in which a replica
   answered NoQuorum (it has been cut off from a quorum for a while: the group is degraded,
   and the caller gets 503 at once instead of waiting out the deadline) and none answered
   that an election is running or named a leader; after
   ``no_leader_wait_s`` (2 s) from the first answer saying there is no leader yet (a normal
   election takes well under that); or after ``attempts`` whole rounds in which no replica
   could be reached at all, if ``attempts`` is set. Then the last Unavailable is raised: a command may or may not
   have been applied (a retry with a new sequence may apply it twice; ask, then retry).
4. Object keys, prefixes and markers go in the query string, built by yarl so that the
   string signed is the string sent (see ``meta/app.py``). Bucket names and access keys go
   in the path and are restricted to path-safe characters; a name outside them cannot exist
   in the service, so the client answers NoSuchBucket / UnknownAccessKey without asking.
5. ``NOT_LEADER_CODE`` and ``NO_QUORUM_CODE`` equal those of ``blobstore.meta.errors`` (the
   client does not import the meta role; a test checks them).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

import aiohttp
import msgspec
import yarl

from blobstore.core.errors import (
    BlobstoreError,
    NoSuchBucket,
    Unavailable,
    UnknownAccessKey,
    error_from_code,
)
from blobstore.core.records import (
    Bucket,
    ClusterMap,
    ListPage,
    Manifest,
    ObjectVersion,
    Segment,
)
from blobstore.rpc.batching import NaturalBatcher
from blobstore.rpc.client import RpcClient

NOT_LEADER_CODE = "NotLeader"
NO_QUORUM_CODE = "NoQuorum"
DEADLINE_S = 10.0
NO_LEADER_WAIT_S = 2.0
BACKOFF_S = 0.05
MAX_BACKOFF_S = 0.5
TIMEOUT_S = 5.0  # per attempt; the service bounds its own waits at 3 s
STATUS_TIMEOUT_S = 2.0
MAX_REDIRECTS = 8
LOOKUP_BATCH_IDS = 1000  # the service refuses more per request
_PATH_SAFE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,254}")


class _CommandReply(msgspec.Struct, frozen=True):
    index: int
    result: dict[str, Any]


class _ItemError(msgspec.Struct, frozen=True):
    code: str
    message: str


class _CommandItem(msgspec.Struct, frozen=True):
    index: int = 0
    result: dict[str, Any] = {}
    error: _ItemError | None = None


class _CommandItems(msgspec.Struct, frozen=True):
    items: list[_CommandItem]


class _ManifestItem(msgspec.Struct, frozen=True):
    manifest: Manifest | None = None
    error: _ItemError | None = None


class _ManifestItems(msgspec.Struct, frozen=True):
    items: list[_ManifestItem]


class _Buckets(msgspec.Struct, frozen=True):
    buckets: list[Bucket]


class _Segments(msgspec.Struct, frozen=True):
    segments: dict[str, Segment]


class _User(msgspec.Struct, frozen=True):
    access_key: str
    secret_key: str


class MetaClient:
    """Calls the meta group (any of ``addresses``), through its leader, apply-once."""

    def __init__(self, rpc: RpcClient, addresses: list[str], client_id: str | None = None, *,
                 attempts: int | None = None, backoff_s: float = BACKOFF_S,
                 timeout_s: float = TIMEOUT_S, deadline_s: float = DEADLINE_S,
                 no_leader_wait_s: float = NO_LEADER_WAIT_S, batching: bool = False) -> None:
        if not addresses:
            raise ValueError("MetaClient needs at least one meta address")
        self.rpc = rpc
        self.addresses = list(addresses)
        self.client_id = client_id or f"mc-{secrets.token_hex(12)}"
        self.attempts = max(attempts, 1) if attempts is not None else None
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.no_leader_wait_s = no_leader_wait_s
        self._next_sequence = 1
        self._outstanding: set[int] = set()
        self._preferred = 0
        self._leader: str | None = None
        # A gateway's many concurrent small PUTs and GETs go out in batches (rpc/batching.py).
        self._commands: NaturalBatcher[dict[str, Any], dict[str, Any]] | None = None
        self._manifests: NaturalBatcher[tuple[str, str], Manifest] | None = None
        if batching:
            self._commands = NaturalBatcher(self._send_commands)
            self._manifests = NaturalBatcher(self._send_manifest_reads)

    @property
    def leader_address(self) -> str | None:
        """The replica that answered last (the leader, as far as this client knows)."""
        return self._leader

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
            if self._commands is not None:
                return await self._commands.call(envelope)
            payload = await self._request("POST", "/v1/command", body=envelope)
        finally:
            self._outstanding.discard(sequence)
        return msgspec.json.decode(payload, type=_CommandReply).result

    async def _send_commands(self, envelopes: list[dict[str, Any]]
                             ) -> list[dict[str, Any] | BaseException]:
        if len(envelopes) == 1:
            payload = await self._request("POST", "/v1/command", body=envelopes[0])
            return [msgspec.json.decode(payload, type=_CommandReply).result]
        payload = await self._request("POST", "/v1/commands", body={"envelopes": envelopes})
        return [item.result if item.error is None
                else error_from_code(item.error.code, item.error.message)
                for item in msgspec.json.decode(payload, type=_CommandItems).items]

    # ---- reads -------------------------------------------------------------------------

    async def list_buckets(self) -> list[Bucket]:
        payload = await self._request("GET", "/v1/buckets")
        return msgspec.json.decode(payload, type=_Buckets).buckets

    async def head_bucket(self, name: str) -> Bucket:
        payload = await self._request("GET", f"/v1/buckets/{_bucket_segment(name)}")
        return msgspec.json.decode(payload, type=Bucket)

    async def get_manifest(self, bucket: str, key: str) -> Manifest:
        if self._manifests is not None:
            return await self._manifests.call((bucket, key))
        path_qs = _path_qs(f"/v1/objects/{_bucket_segment(bucket)}", {"key": key})
        return msgspec.json.decode(await self._request("GET", path_qs), type=Manifest)

    async def _send_manifest_reads(self, items: list[tuple[str, str]]
                                   ) -> list[Manifest | BaseException]:
        if len(items) == 1:
            path_qs = _path_qs(f"/v1/objects/{_bucket_segment(items[0][0])}",
                               {"key": items[0][1]})
            try:
                return [msgspec.json.decode(await self._request("GET", path_qs), type=Manifest)]
            except BlobstoreError as error:  # NoSuchKey and the like belong to the caller
                return [error]
        payload = await self._request("POST", "/v1/objects_batch", body={"items": items})
        answers: list[Manifest | BaseException] = []
        for item in msgspec.json.decode(payload, type=_ManifestItems).items:
            if item.manifest is not None:
                answers.append(item.manifest)
            else:
                error = item.error or _ItemError("InternalError", "empty batch item")
                answers.append(error_from_code(error.code, error.message))
        return answers

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
                        shard_count: int, payload_bytes: int = 0) -> None:
        await self._request("POST", "/v1/heartbeat",
                            body={"node_id": node_id, "capacity_bytes": capacity_bytes,
                                  "used_bytes": used_bytes, "shard_count": shard_count,
                                  "payload_bytes": payload_bytes})

    async def get_user(self, access_key: str) -> str:
        """The secret key of ``access_key``; UnknownAccessKey if there is no such user."""
        if not _PATH_SAFE_RE.fullmatch(access_key):
            raise UnknownAccessKey(f"unknown access key {access_key!r}")
        payload = await self._request("GET", f"/v1/users/{access_key}")
        return msgspec.json.decode(payload, type=_User).secret_key

    async def status(self) -> dict[str, Any]:
        """The leader's status if it can be reached (it alone knows each replica's match
        index), else the status of whichever replica answers."""
        payload = await self._request("GET", "/v1/status")
        answer = msgspec.json.decode(payload, type=dict[str, Any])
        leader_address = answer.get("leader_address")
        if answer.get("role") != "leader" and isinstance(leader_address, str):
            try:
                return await self.status_of(leader_address)
            except Unavailable:
                pass
        return answer

    async def status_of(self, address: str, timeout_s: float = STATUS_TIMEOUT_S) -> dict[str, Any]:
        """``/v1/status`` of one replica, once, without retries or redirects."""
        try:
            payload = await self._send_once("GET", address, "/v1/status", None,
                                            min(timeout_s, self.timeout_s))
        except (_Refused, _Unreachable) as failed:
            raise failed.error from None
        except _Redirect as redirect:  # not sent for /v1/status; typed all the same
            raise Unavailable(f"{address}: {redirect.message}") from None
        return msgspec.json.decode(payload, type=dict[str, Any])

    # ---- membership (the leader only; followed there by redirects) --------------------------

    async def conf_change(self, kind: str, node_id: str, dry_run: bool = False) -> dict[str, Any]:
        """Add or remove one voter (``kind`` "add" | "remove"); the leader's plan and the new
        voters. Not idempotent: a retry of an applied change answers Conflict."""
        payload = await self._request("POST", "/v1/raft/conf_change",
                                      body={"kind": kind, "node_id": node_id,
                                            "dry_run": dry_run})
        return msgspec.json.decode(payload, type=dict[str, Any])

    async def transfer_leader(self, to: str) -> dict[str, Any]:
        """Hand leadership to voter ``to``; ``{"leader", "term"}`` once it leads."""
        payload = await self._request("POST", "/v1/raft/transfer_leader", body={"to": to})
        return msgspec.json.decode(payload, type=dict[str, Any])

    # ---- transport ---------------------------------------------------------------------

    async def _request(self, method: str, path_qs: str, body: Any = None) -> bytes:
        """One call, through the leader, retried within the deadline (rules 2 and 4)."""
        data = msgspec.json.encode(body) if body is not None else None
        deadline = time.monotonic() + self.deadline_s
        no_leader_since: float | None = None
        unreachable_rounds = 0
        tried = 0
        reached = False
        no_quorum_in_round = hopeful_in_round = False
        redirects = 0
        position = self._preferred
        address = self._leader or self.addresses[position]
        last_error: BlobstoreError = Unavailable("no meta address tried")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise last_error
            try:
                payload = await self._send_once(method, address, path_qs, data,
                                                min(self.timeout_s, remaining))
            except _Redirect as redirect:
                reached = True
                hopeful_in_round = True
                last_error = Unavailable(f"{address}: {redirect.message}")
                if redirect.leader and redirect.leader != address and redirects < MAX_REDIRECTS:
                    redirects += 1
                    self._leader = address = redirect.leader
                    continue
                no_leader_since = no_leader_since or time.monotonic()
            except _Refused as refused:  # a replica answered 503: no leader, no quorum
                reached = True
                last_error = refused.error
                no_leader_since = no_leader_since or time.monotonic()
                if refused.error.code == NO_QUORUM_CODE:
                    no_quorum_in_round = True
                else:
                    hopeful_in_round = True
            except _Unreachable as unreachable:
                last_error = unreachable.error
                if self._leader == address:
                    self._leader = None
            else:
                self._leader = address
                return payload
            if no_leader_since is not None and (
                    time.monotonic() - no_leader_since >= self.no_leader_wait_s):
                raise last_error
            tried += 1
            position = (position + 1) % len(self.addresses)
            address = self.addresses[position]
            self._preferred = position
            if tried % len(self.addresses) == 0:  # a whole round failed
                if no_quorum_in_round and not hopeful_in_round:
                    raise last_error
                no_quorum_in_round = hopeful_in_round = False
                unreachable_rounds = 0 if reached else unreachable_rounds + 1
                reached = False
                if self.attempts is not None and unreachable_rounds >= self.attempts:
                    raise last_error
                rounds = tried // len(self.addresses)
                pause = min(self.backoff_s * 2 ** (rounds - 1), MAX_BACKOFF_S)
                await asyncio.sleep(max(min(pause, deadline - time.monotonic()), 0))

    async def _send_once(self, method: str, address: str, path_qs: str, data: bytes | None,
                         timeout_s: float) -> bytes:
        """One signed request; the body of a 2xx, else one of the errors below."""
        headers = self.rpc.headers(method, path_qs)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.rpc.session.request(
                    method, f"http://{address}{path_qs}", data=data, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                payload = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _Unreachable(Unavailable(f"{address} unreachable: {exc!r}")) from exc
        if status < 300:
            return payload
        raise _error_of(address, status, payload)


class _Redirect(Exception):
    """421 NotLeader: ``leader`` is the leader's address, or None if the replica knows none."""

    def __init__(self, message: str, leader: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.leader = leader


class _Refused(Exception):
    """A replica answered 503 Unavailable (no leader, no quorum, starting): try another."""

    def __init__(self, error: BlobstoreError) -> None:
        super().__init__(error.message)
        self.error = error


class _Unreachable(Exception):
    """No answer (refused, reset, timeout): try another replica."""

    def __init__(self, error: BlobstoreError) -> None:
        super().__init__(error.message)
        self.error = error


def _error_of(address: str, status: int, payload: bytes) -> Exception:
    """The typed error of a non-2xx answer; the three retryable kinds above, else final."""
    try:
        error = msgspec.json.decode(payload)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (msgspec.DecodeError, KeyError, TypeError):
        if status >= 500:
            return _Refused(Unavailable(f"{address}: HTTP {status}: {payload[:200]!r}"))
        plain = BlobstoreError(f"HTTP {status}: {payload[:200]!r}")
        plain.http_status = status
        return plain
    if code == NOT_LEADER_CODE:
        leader = error.get("leader")
        return _Redirect(message, leader if isinstance(leader, str) and leader else None)
    typed = error_from_code(code, message)
    if isinstance(typed, Unavailable) or status == 503:
        if not isinstance(typed, Unavailable):  # NoQuorum, where the meta role is not loaded
            unavailable = Unavailable(message)
            unavailable.code = code
            typed = unavailable
        return _Refused(typed)
    return typed


def _bucket_segment(name: str) -> str:
    """The bucket as a path segment; NoSuchBucket for a name the service cannot hold."""
    if not _PATH_SAFE_RE.fullmatch(name):
        raise NoSuchBucket(f"bucket {name!r} does not exist")
    return name


def _path_qs(path: str, query: dict[str, str]) -> str:
    """``path?query`` in yarl's canonical form, which is exactly what goes on the wire."""
    return str(yarl.URL.build(path=path, query=query))
