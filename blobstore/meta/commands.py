"""The commands of the metadata state machine, their envelope and their outcome.

Every state change of the metadata service is one of these commands, wrapped in a
:class:`CommandEnvelope` that names its client session, appended to the command log and
applied by ``meta/state_machine.py``. The same bytes are applied on every replica (a later
issue replicates the log with Raft), so a command carries every input it needs, times
included: the state machine reads no clock and draws no random numbers.

Rules:

1. Commands are frozen msgspec structs in one tagged union; the tag field is ``type``
   (``{"type": "create_bucket", "name": ..., "created_ns": ...}`` on the wire).
2. ``(client_id, sequence)`` identifies a command: a repeated pair returns the outcome of
   the first without applying again (apply-once, the Raft dissertation's client sessions).
   A client numbers its commands 1, 2, 3, ... and may have several in flight.
3. ``ack_below`` is the client's promise that it holds the answer of every sequence below
   it, so the session may forget those outcomes; a command below the session's floor is a
   stale duplicate and is refused without being applied. 0 promises nothing.
4. An :class:`Outcome` is either a value (a JSON-able dict) or an error (the code and
   message of a ``BlobstoreError``). A failed command was still decided, deterministically:
   its outcome is recorded like any other.

Encodings: msgpack in the log and the session table (compact), JSON on the wire (the RPC
convention); both through the schema of these structs.
"""

from __future__ import annotations

from typing import Any

import msgspec

from blobstore.core.errors import BlobstoreError, error_from_code
from blobstore.core.records import ObjectVersion, Part, Segment, Upload


class _Command(msgspec.Struct, frozen=True, tag_field="type"):
    """Base of the command union; subclasses set their ``tag``."""


class CreateBucket(_Command, frozen=True, tag="create_bucket"):
    name: str
    created_ns: int


class DeleteBucket(_Command, frozen=True, tag="delete_bucket"):
    name: str


class PutObject(_Command, frozen=True, tag="put_object"):
    version: ObjectVersion
    new_segments: list[Segment] = []


class DeleteObject(_Command, frozen=True, tag="delete_object"):
    bucket: str
    key: str


class ReportBadShard(_Command, frozen=True, tag="report_bad_shard"):
    segment_id: str
    index: int
    node_id: str
    reason: str = ""


class PutUser(_Command, frozen=True, tag="put_user"):
    access_key: str
    secret_key: str
    name: str = ""


# ---- self-healing (semantics and invariants: meta/heal.py) ---------------------------------


class MarkNodeDown(_Command, frozen=True, tag="mark_node_down"):
    node_id: str
    now_ns: int
    after: str = ""  # segment id to continue after: the command examines one page of segments
    limit: int = 10_000  # segments examined by this command


class LeaseRepair(_Command, frozen=True, tag="lease_repair"):
    node_id: str
    now_ns: int
    lease_s: float
    max_tasks: int


class CompleteRepair(_Command, frozen=True, tag="complete_repair"):
    segment_id: str
    expected_placement: list[str | None]
    new_placement: list[str | None]
    repaired: list[int]  # the shard indexes written by this repair
    node_id: str


class FailRepair(_Command, frozen=True, tag="fail_repair"):
    segment_id: str
    node_id: str
    now_ns: int
    retry_after_s: float
    reason: str = ""


class GcBegin(_Command, frozen=True, tag="gc_begin"):
    segment_ids: list[str]
    node_id: str
    now_ns: int
    grace_s: float
    lease_s: float


class GcFinish(_Command, frozen=True, tag="gc_finish"):
    segment_ids: list[str]
    node_id: str


# ---- storage membership (semantics: meta/membership.py) -----------------------------------


class AddNode(_Command, frozen=True, tag="add_node"):
    node_id: str
    address: str
    zone: str
    now_ns: int
    weight: float = 1.0
    data_dir: str = ""


class DrainNode(_Command, frozen=True, tag="drain_node"):
    node_id: str
    now_ns: int
    after: str = ""  # segment id to continue after; "" starts the walk (and the drain)
    limit: int = 10_000  # segments examined by this command


class RemoveNode(_Command, frozen=True, tag="remove_node"):
    node_id: str
    now_ns: int


class RebalanceNode(_Command, frozen=True, tag="rebalance_node"):
    node_id: str  # the node shards move to
    candidates: list[tuple[str, str, float]]  # (id, zone, weight) of the writable nodes
    now_ns: int
    mode: str = "ranked"  # ranked | donors (core/membership_plan.py)
    donors: list[str] = []  # most loaded first, for mode donors
    budget: int = 0  # moves this page may queue at most
    after: str = ""
    limit: int = 10_000


class LeaseMoves(_Command, frozen=True, tag="lease_moves"):
    node_id: str
    now_ns: int
    lease_s: float
    max_tasks: int


class CompleteMove(_Command, frozen=True, tag="complete_move"):
    segment_id: str
    expected_placement: list[str | None]
    new_placement: list[str | None]
    moved: list[int]  # the shard indexes that now live on another node
    node_id: str


class FailMove(_Command, frozen=True, tag="fail_move"):
    segment_id: str
    node_id: str
    now_ns: int
    retry_after_s: float
    reason: str = ""


# ---- multipart uploads (semantics: meta/multipart.py) --------------------------------------


class CreateUpload(_Command, frozen=True, tag="create_upload"):
    upload: Upload


class PutPart(_Command, frozen=True, tag="put_part"):
    upload_id: str
    part: Part
    new_segments: list[Segment] = []


class CompleteUpload(_Command, frozen=True, tag="complete_upload"):
    upload_id: str
    parts: list[tuple[int, str]]  # (part number, ETag) in the client's order
    version_id: str
    created_ns: int


class AbortUpload(_Command, frozen=True, tag="abort_upload"):
    upload_id: str


Command = (CreateBucket | DeleteBucket | PutObject | DeleteObject | ReportBadShard | PutUser
           | CreateUpload | PutPart | CompleteUpload | AbortUpload
           | MarkNodeDown | LeaseRepair | CompleteRepair | FailRepair | GcBegin | GcFinish
           | AddNode | DrainNode | RemoveNode | RebalanceNode | LeaseMoves | CompleteMove
           | FailMove)


class CommandEnvelope(msgspec.Struct, frozen=True):
    client_id: str
    sequence: int
    command: Command
    ack_below: int = 0  # the client holds the outcome of every sequence below this


class Outcome(msgspec.Struct, frozen=True):
    """What applying a command decided: a value, or an error code and message."""

    value: dict[str, Any] = {}
    error_code: str = ""
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_code

    @classmethod
    def failure(cls, error: BlobstoreError) -> Outcome:
        return cls(error_code=error.code, error_message=error.message)

    def unwrap(self) -> dict[str, Any]:
        """The value, or raise the typed error this outcome records."""
        if self.error_code:
            raise error_from_code(self.error_code, self.error_message)
        return self.value


_msgpack_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(CommandEnvelope)
_outcome_decoder = msgspec.msgpack.Decoder(Outcome)
_envelope_json_decoder = msgspec.json.Decoder(CommandEnvelope)


def encode_envelope(envelope: CommandEnvelope) -> bytes:
    """Log encoding (msgpack)."""
    return _msgpack_encoder.encode(envelope)


def decode_envelope(data: bytes) -> CommandEnvelope:
    return _envelope_decoder.decode(data)


def envelope_to_json(envelope: CommandEnvelope) -> bytes:
    """Wire encoding (JSON)."""
    return msgspec.json.encode(envelope)


def envelope_from_json(data: bytes) -> CommandEnvelope:
    return _envelope_json_decoder.decode(data)


def encode_outcome(outcome: Outcome) -> bytes:
    return _msgpack_encoder.encode(outcome)


def decode_outcome(data: bytes) -> Outcome:
    return _outcome_decoder.decode(data)
