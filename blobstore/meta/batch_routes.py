"""Batched calls: many commands or many manifest reads in one request.

A gateway under load has dozens of small PUTs and GETs in flight; sent one by one, each
costs an HTTP round trip on the gateway and the leader, and (for commands) its own small
Raft append on every follower. The gateway's meta client therefore sends whatever queued up
while its previous batch was in flight as one request (``rpc/batching.py``), and these
routes serve them:

- ``POST /v1/commands``: ``{"envelopes": [...]}``, each a full command envelope with its own
  (client id, sequence), proposed together so they share one Raft round. Answer:
  ``{"items": [{"index", "result"} | {"error": {"code", "message"}}]}`` in order. A leader
  change fails the whole request (421/503) and the client resends every envelope: the
  session table applies each exactly once, so those already committed answer from it.
- ``POST /v1/objects_batch``: ``{"items": [[bucket, key], ...]}``: one ReadIndex and one
  read transaction for all of them. Answer: ``{"items": [{"manifest"} | {"error"}]}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from blobstore.core.errors import BlobstoreError, Invalid
from blobstore.meta import schema
from blobstore.meta.commands import CommandEnvelope
from blobstore.meta.service import MetaService
from blobstore.meta.state_machine import StateMachine
from blobstore.rpc.server import json_response

MAX_BATCH_ITEMS = 1024
STALE_HEADER = "X-Blobstore-Stale"  # as meta/app.py marks a read served without the leader


class _Commands(msgspec.Struct, frozen=True):
    envelopes: list[CommandEnvelope]


class _Gets(msgspec.Struct, frozen=True):
    items: list[tuple[str, str]]


def _error(error: BlobstoreError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message}}


async def handle_commands(request: web.Request, service: MetaService) -> web.Response:
    body = msgspec.json.decode(await request.read(), type=_Commands)
    if not 0 < len(body.envelopes) <= MAX_BATCH_ITEMS:
        raise Invalid(f"a batch has 1..{MAX_BATCH_ITEMS} envelopes")
    for envelope in body.envelopes:
        schema.check_client_id(envelope.client_id)
    answers = await asyncio.gather(*(service.command(e) for e in body.envelopes),
                                   return_exceptions=True)
    items: list[dict[str, Any]] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            # Not leader, no quorum, timed out: the whole batch is retried elsewhere or
            # later, with the same sequences, so nothing is applied twice.
            raise answer
        index, outcome = answer
        if outcome.ok:
            items.append({"index": index, "result": outcome.value})
        else:
            items.append({"index": index, "error": {"code": outcome.error_code,
                                                     "message": outcome.error_message}})
    return json_response({"items": items})


def _manifests(machine: StateMachine, items: list[tuple[str, str]]) -> list[Any]:
    found: list[dict[str, Any]] = []
    for bucket, key in items:
        try:
            found.append({"manifest": machine.get_manifest(bucket, key)})
        except BlobstoreError as error:
            found.append(_error(error))
    return found


async def handle_batch_get(request: web.Request, service: MetaService) -> web.Response:
    body = msgspec.json.decode(await request.read(), type=_Gets)
    if not 0 < len(body.items) <= MAX_BATCH_ITEMS:
        raise Invalid(f"a batch has 1..{MAX_BATCH_ITEMS} items")
    found, stale = await service.read(_manifests, body.items)
    response = json_response({"items": found})
    if stale:
        response.headers[STALE_HEADER] = "1"
    return response
