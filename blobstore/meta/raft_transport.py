"""Raft messages between meta replicas: ``POST /v1/raft``, signed with the cluster secret.

Body: a msgpack array of raft ``Message`` structs (``blobstore/raft/messages.py``), sent
with the cluster signature of ``rpc/auth.py`` (checked by the middleware of
``rpc/server.py``, like every internal request). Answer: 204, before the messages are
processed (the driver steps them in order); nothing is answered per message: answers are
messages of their own, sent the other way.

Rules:

1. Sending never blocks the driver: ``send`` puts each message in the bounded queue of its
   destination (``queue_messages`` deep) and returns. A full queue drops the message; raft
   retransmits what matters (appends after a probe, heartbeats every tick, votes every
   election), so a lost message costs time, never safety.
2. One sender task per peer keeps that peer's messages in order: it takes what is queued
   (up to ``batch_messages`` / ``batch_bytes``), POSTs it as one batch on a pooled
   keep-alive connection and waits for the answer. A batch that fails (peer down, timeout of
   ``send_timeout_s``, 5xx) is dropped with whatever queued behind it meanwhile, and the
   sender pauses ``retry_pause_s``: messages to a dead peer are dropped within a short
   timeout instead of piling up. A batch with a snapshot gets ``snapshot_timeout_s``.
3. Messages for an id that is not a meta node of cluster.toml are dropped (the address
   book is the config, ``address_of``, which re-reads the file for an id it does not know:
   a voter must be in it, ``meta/service.py`` checks that on add).
4. Incoming: the body is read with a limit of ``MAX_BODY_BYTES`` (a snapshot is one
   message), decoded and validated by msgspec, and every message whose ``dst`` is not this
   node is dropped. ``on_receive`` sees each batch (the driver's inbox, and the leader's
   record of which peers it heard from recently).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from aiohttp import web

from blobstore.core.errors import BlobstoreError, Invalid
from blobstore.raft.messages import Message, MessageType
from blobstore.rpc.client import RpcClient

log = logging.getLogger(__name__)
RAFT_PATH = "/v1/raft"
CONTENT_TYPE = "application/x-msgpack"
MAX_BODY_BYTES = 1024**3
_READ_CHUNK_BYTES = 1 << 20
_batch_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[Message])


@dataclass(frozen=True, slots=True)
class TransportOptions:
    queue_messages: int = 4096
    batch_messages: int = 512
    batch_bytes: int = 4 * 1024 * 1024
    send_timeout_s: float = 1.0
    snapshot_timeout_s: float = 60.0
    retry_pause_s: float = 0.05


def encode_batch(messages: list[Message]) -> bytes:
    return _batch_encoder.encode(messages)


def decode_batch(data: bytes) -> list[Message]:
    return _batch_decoder.decode(data)


def _size_bytes(message: Message) -> int:
    size = 64 + sum(len(entry.data) + 24 for entry in message.entries)
    if message.snapshot is not None:
        size += len(message.snapshot.data)
    return size


class _Peer:
    """One destination: its queue, its sender task and its counters."""

    def __init__(self, node_id: str, address: str, limit: int) -> None:
        self.node_id = node_id
        self.address = address
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=limit)
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self.last_ok_s: float | None = None


class RaftTransport:
    """Sends raft messages to peers and hands received ones to ``on_receive``."""

    def __init__(self, self_id: str, rpc: RpcClient, address_of: Callable[[str], str | None],
                 on_receive: Callable[[list[Message]], None],
                 options: TransportOptions | None = None) -> None:
        self.self_id = self_id
        self.rpc = rpc
        self.address_of = address_of
        self.on_receive = on_receive
        self.options = options or TransportOptions()
        self._peers: dict[str, _Peer] = {}
        self._closed = False
        self.received = 0
        self.refused = 0

    # ---- sending -----------------------------------------------------------------------

    def send(self, messages: list[Message]) -> None:
        """Queue each message for its destination (rules 1 and 3); never blocks."""
        for message in messages:
            peer = self._peer(message.dst)
            if peer is None:
                continue
            try:
                peer.queue.put_nowait(message)
            except asyncio.QueueFull:
                peer.dropped += 1

    def _peer(self, node_id: str) -> _Peer | None:
        peer = self._peers.get(node_id)
        if peer is not None:
            return peer
        if node_id == self.self_id or self._closed:
            return None
        address = self.address_of(node_id)
        if address is None:
            return None
        peer = _Peer(node_id, address, self.options.queue_messages)
        peer.task = asyncio.get_running_loop().create_task(self._sender(peer),
                                                           name=f"raft-send-{node_id}")
        self._peers[node_id] = peer
        return peer

    async def _sender(self, peer: _Peer) -> None:
        options = self.options
        while True:
            batch = [await peer.queue.get()]
            size = _size_bytes(batch[0])
            while (not peer.queue.empty() and len(batch) < options.batch_messages
                   and size < options.batch_bytes):
                message = peer.queue.get_nowait()
                batch.append(message)
                size += _size_bytes(message)
            has_snapshot = any(m.type == MessageType.SNAPSHOT for m in batch)
            timeout_s = options.snapshot_timeout_s if has_snapshot else options.send_timeout_s
            try:
                await self.rpc.request("POST", peer.address, RAFT_PATH,
                                       data=encode_batch(batch),
                                       headers={"Content-Type": CONTENT_TYPE},
                                       timeout_s=timeout_s)
            except BlobstoreError as error:
                peer.failures += 1
                peer.dropped += len(batch) + peer.queue.qsize()
                while not peer.queue.empty():  # stale by now; raft sends fresh ones
                    peer.queue.get_nowait()
                if peer.failures == 1 or peer.failures % 100 == 0:
                    log.info("raft messages to %s (%s) dropped: %s", peer.node_id,
                             peer.address, error.message)
                await asyncio.sleep(options.retry_pause_s)
                continue
            if peer.failures:
                log.info("raft peer %s reachable again", peer.node_id)
            peer.failures = 0
            peer.sent += len(batch)
            peer.last_ok_s = time.monotonic()

    def stats(self) -> dict[str, dict[str, int | float | None]]:
        return {peer.node_id: {"sent": peer.sent, "dropped": peer.dropped,
                               "failures": peer.failures, "queued": peer.queue.qsize()}
                for peer in self._peers.values()}

    async def close(self) -> None:
        self._closed = True
        tasks = [peer.task for peer in self._peers.values() if peer.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._peers.clear()

    # ---- receiving ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """``POST /v1/raft`` (rule 4)."""
        body = bytearray()
        while True:
            chunk = await request.content.read(_READ_CHUNK_BYTES)
            if not chunk:
                break
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise Invalid(f"raft batch larger than {MAX_BODY_BYTES} bytes")
        messages = decode_batch(bytes(body))
        mine = [message for message in messages if message.dst == self.self_id]
        self.refused += len(messages) - len(mine)
        self.received += len(mine)
        if mine:
            self.on_receive(mine)
        return web.Response(status=204)
