"""Raft values: entries, hard/soft state, snapshots, conf changes and wire messages.

Every value is a frozen ``msgspec.Struct`` so it can be encoded for the wire or the disk with
one codec (``encode_message``/``decode_message``) and can never be mutated after it has been
handed to another component (the application may keep references to anything in a Ready).

Rules:
- ``Entry.index`` and ``Entry.term`` are assigned by the leader that appended the entry and
  never change; two entries with the same (index, term) are identical (Log Matching).
- ``HardState`` is what must be durable before any message that depends on it is sent:
  the current term, the vote cast in that term, and the highest index known to be committed.
- ``ConfChange`` entries carry ``encode_conf_change(change)`` in ``Entry.data``; the core
  decodes them itself (to find pending changes and to rebuild the configuration on restart),
  so the encoding is fixed here and nowhere else.
- A ``Message`` is addressed from ``src`` to ``dst``; ``term`` is the sender's term except for
  pre-votes (``PRE_VOTE`` carries the term the sender would campaign in, ``PRE_VOTE_RESP``
  granting it echoes that term).
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec

Role = Literal["follower", "pre_candidate", "candidate", "leader"]


class EntryKind(enum.IntEnum):
    """What an entry's ``data`` means."""

    NORMAL = 0  # application command bytes
    CONF_CHANGE = 1  # encode_conf_change(ConfChange)
    NOOP = 2  # the empty entry a new leader appends to commit its term


class Entry(msgspec.Struct, frozen=True):
    """One log entry. Invariant: index >= 1, term >= 1."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


def entry_size_bytes(entry: Entry) -> int:
    """Approximate encoded size, used for batching and uncommitted-bytes limits."""
    return len(entry.data) + 24


class HardState(msgspec.Struct, frozen=True):
    """What must survive a crash: term, vote in that term, commit index."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


class ConfState(msgspec.Struct, frozen=True):
    """The voting members. Invariant: sorted, no duplicates."""

    voters: tuple[str, ...] = ()


class ConfChange(msgspec.Struct, frozen=True):
    """A single-server membership change."""

    kind: Literal["add", "remove"]
    node_id: str


class SnapshotMeta(msgspec.Struct, frozen=True):
    """Where a snapshot sits in the log and the configuration at that point."""

    index: int
    term: int
    conf: ConfState


class Snapshot(msgspec.Struct, frozen=True):
    """The application's state at ``meta.index`` (``data`` is opaque to raft)."""

    meta: SnapshotMeta
    data: bytes = b""


class MessageType(enum.IntEnum):
    """Message kinds exchanged between peers."""

    PRE_VOTE = 1
    PRE_VOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APPEND = 5
    APPEND_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    TIMEOUT_NOW = 10
    TRANSFER_LEADER = 11  # follower -> leader; context = the transferee's id (utf-8)
    READ_INDEX = 12  # follower -> leader; context = the read's context
    READ_INDEX_RESP = 13  # leader -> follower; index = read index, context echoed


class Message(msgspec.Struct, frozen=True):
    """A message between two raft peers.

    Field use by type:
    - PRE_VOTE/VOTE: ``index``/``log_term`` = candidate's last entry; ``context=b"transfer"``
      for a campaign started by TIMEOUT_NOW (bypasses the leader lease).
    - *_RESP of votes: ``reject``.
    - APPEND: ``index``/``log_term`` = the entry preceding ``entries``; ``commit``.
    - APPEND_RESP: accepted: ``index`` = last index now matching the leader. Rejected:
      ``index`` = the rejected APPEND's ``index``, ``reject_hint``/``log_term`` = the
      follower's guess of the last index that may match and its term (fast backtracking).
    - HEARTBEAT: ``commit`` (never above what the follower is known to have), ``context``
      (the latest pending ReadIndex context); HEARTBEAT_RESP echoes ``context``.
    - SNAPSHOT: ``snapshot``.
    """

    type: MessageType
    src: str
    dst: str
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


class ReadState(msgspec.Struct, frozen=True):
    """A ReadIndex answer: once ``applied >= index`` the read for ``context`` may be served."""

    index: int
    context: bytes


class SoftState(msgspec.Struct, frozen=True):
    """Volatile state worth telling the application about (not persisted)."""

    leader: str | None
    role: Role


TRANSFER_CONTEXT = b"transfer"

_message_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(Message)
_conf_change_decoder = msgspec.msgpack.Decoder(ConfChange)


def encode_message(message: Message) -> bytes:
    """Encode a message for the wire (msgpack)."""
    return _message_encoder.encode(message)


def decode_message(data: bytes) -> Message:
    """Decode and validate a message from the wire; raises msgspec.ValidationError."""
    return _message_decoder.decode(data)


def encode_conf_change(change: ConfChange) -> bytes:
    """The ``Entry.data`` of a CONF_CHANGE entry."""
    return _message_encoder.encode(change)


def decode_conf_change(data: bytes) -> ConfChange:
    """Inverse of ``encode_conf_change``."""
    return _conf_change_decoder.decode(data)
