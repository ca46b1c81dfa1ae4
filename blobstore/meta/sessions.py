"""Client sessions: apply each (client_id, sequence) once, and remember its outcome.

A client that retries a command after a timeout cannot know whether the first attempt was
applied. The state machine therefore keeps, per client, the outcome of each sequence it has
applied; a repeated pair gets the stored outcome and changes nothing (the Raft
dissertation's client sessions, section 6.3). All of it lives in the same LMDB transaction
as the command's effects, so a crash can never separate "applied" from "remembered".

Rules:

1. A client may have several commands in flight, so outcomes are kept per sequence, not
   only for the last one.
2. Every envelope carries ``ack_below``: the client holds the answer of every sequence below
   it. The session's ``floor`` rises to it and the outcomes below are deleted.
3. A sequence below the floor is a stale duplicate (its answer was delivered, or it was given
   up on): it is refused with Conflict and not applied. Never applying twice wins over
   answering a client that broke rule 2.
4. Limits: at most ``MAX_OUTCOMES_PER_CLIENT`` outcomes per client (the oldest is dropped and
   the floor moves above it, so it too can never apply twice); a client that sent nothing for
   ``SESSION_IDLE_ENTRIES`` log entries is forgotten, at most ``EXPIRE_PER_APPLY`` clients per
   applied entry. Expiry is decided by log index, not by a clock, so every replica expires
   the same sessions at the same entry. A client idle that long that then retries an old
   command could apply it twice; retries come within seconds, the window is a million entries.
"""

from __future__ import annotations

import lmdb

from blobstore.core.errors import Conflict
from blobstore.meta import schema
from blobstore.meta.commands import Outcome, decode_outcome, encode_outcome
from blobstore.meta.schema import Dbs, SessionHead

MAX_OUTCOMES_PER_CLIENT = 4096
SESSION_IDLE_ENTRIES = 1_000_000
EXPIRE_PER_APPLY = 4


def lookup(txn: lmdb.Transaction, dbs: Dbs, client_id: str, sequence: int) -> Outcome | None:
    """The stored outcome of a repeated command, or None for a new one.

    Raises Conflict for a stale duplicate (below the session's floor).
    """
    head = _head(txn, dbs, client_id)
    if head is not None and sequence < head.floor:
        raise Conflict(f"command {client_id}/{sequence} is older than its session's floor "
                       f"{head.floor}: a stale duplicate, not applied")
    data = txn.get(schema.session_key(client_id, sequence), db=dbs.sessions)
    return decode_outcome(data) if data is not None else None


def record(txn: lmdb.Transaction, dbs: Dbs, client_id: str, sequence: int, ack_below: int,
           index: int, outcome: Outcome) -> None:
    """Remember ``outcome`` for (client_id, sequence), applied at log ``index``."""
    head = _head(txn, dbs, client_id) or SessionHead()
    floor = max(head.floor, min(ack_below, sequence))
    count = head.count - _delete_below(txn, dbs, client_id, floor)
    txn.put(schema.session_key(client_id, sequence), encode_outcome(outcome), db=dbs.sessions)
    count += 1
    while count > MAX_OUTCOMES_PER_CLIENT:
        floor = max(floor, _delete_oldest(txn, dbs, client_id) + 1)
        count -= 1
    if head.last_index:
        txn.delete(schema.session_idle_key(head.last_index, client_id), db=dbs.session_idle)
    txn.put(schema.session_idle_key(index, client_id), b"", db=dbs.session_idle)
    new_head = SessionHead(floor=floor, count=count, last_index=index)
    txn.put(client_id.encode(), schema.encode(new_head), db=dbs.session_heads)


def expire(txn: lmdb.Transaction, dbs: Dbs, index: int) -> int:
    """Forget up to EXPIRE_PER_APPLY sessions idle for SESSION_IDLE_ENTRIES; how many."""
    dropped: list[tuple[bytes, str]] = []
    cursor = txn.cursor(dbs.session_idle)
    positioned = cursor.first()
    while positioned and len(dropped) < EXPIRE_PER_APPLY:
        key = cursor.key()
        if schema.read_u64(key[:8]) + SESSION_IDLE_ENTRIES >= index:
            break
        dropped.append((key, key[8:].decode()))
        positioned = cursor.next()
    for idle_key, client_id in dropped:
        _delete_below(txn, dbs, client_id, 2**64 - 1)
        txn.delete(client_id.encode(), db=dbs.session_heads)
        txn.delete(idle_key, db=dbs.session_idle)
    return len(dropped)


def last_sequence(txn: lmdb.Transaction, dbs: Dbs, client_id: str) -> int:
    """The highest sequence of ``client_id`` the session knows of (0 for a new client)."""
    head = _head(txn, dbs, client_id)
    if head is None:
        return 0
    highest = head.floor - 1 if head.floor else 0
    prefix = schema.session_prefix(client_id)
    cursor = txn.cursor(dbs.sessions)
    positioned = cursor.set_range(prefix)
    while positioned and cursor.key().startswith(prefix):
        highest = max(highest, schema.read_u64(cursor.key()[len(prefix):]))
        positioned = cursor.next()
    return highest


def _head(txn: lmdb.Transaction, dbs: Dbs, client_id: str) -> SessionHead | None:
    data = txn.get(client_id.encode(), db=dbs.session_heads)
    return schema.decode(SessionHead, data) if data is not None else None


def _delete_below(txn: lmdb.Transaction, dbs: Dbs, client_id: str, floor: int) -> int:
    """Delete the stored outcomes with sequence < floor; how many."""
    prefix = schema.session_prefix(client_id)
    cursor = txn.cursor(dbs.sessions)
    deleted = 0
    positioned = cursor.set_range(prefix)
    while positioned and cursor.key().startswith(prefix):
        if schema.read_u64(cursor.key()[len(prefix):]) >= floor:
            break
        positioned = cursor.delete()  # moves to the next record
        deleted += 1
    return deleted


def _delete_oldest(txn: lmdb.Transaction, dbs: Dbs, client_id: str) -> int:
    prefix = schema.session_prefix(client_id)
    cursor = txn.cursor(dbs.sessions)
    found = cursor.set_range(prefix) and cursor.key().startswith(prefix)
    assert found, "session count says there is an outcome to drop"
    sequence = schema.read_u64(cursor.key()[len(prefix):])
    cursor.delete()
    return sequence
