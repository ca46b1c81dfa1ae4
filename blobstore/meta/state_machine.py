"""The metadata state machine: applies log entries to LMDB, exactly once, deterministically.

``apply(index, envelope)`` is the only way state changes (``advance_in`` for the Raft
entries that hold no command). One LMDB write transaction holds the command's effects, its
client session entry and ``last_applied = index``, so after a crash the state is exactly
"entries 1..last_applied applied" and replay resumes at ``last_applied + 1``; the Raft
driver starts the Raft node with ``applied = last_applied`` (``meta/raft_driver.py``). The same entries applied to an empty environment give the same bytes in
every sub-db (tests/unit/meta/test_state_machine.py replays a log to prove it): nothing here
reads a clock, draws a random number or iterates an unordered collection.

Rules:

1. Entries are applied in log order with no gaps: ``index == last_applied + 1``, else
   ``ApplyOrderError`` (a bug of the caller, never a client's fault).
2. A repeated ``(client_id, sequence)`` returns the stored outcome and changes nothing but
   ``last_applied``; a stale one (below the session floor) fails with Conflict
   (``meta/sessions.py``).
3. A command that fails with a ``BlobstoreError`` was still decided: its nested transaction
   is rolled back, its failure is recorded in the client session, ``last_applied`` advances.
4. Any other exception is a bug: the whole transaction aborts and ``last_applied`` stays, so
   the entry is applied again (and fails again) on the next attempt.

The read functions run in their own read transaction: a consistent snapshot of the state
at some ``last_applied``. Semantics of each command: ``meta/handlers.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

import lmdb
import msgspec

from blobstore.core.errors import (
    BlobstoreError,
    Conflict,
    Corrupt,
    Invalid,
    NoSuchKey,
    UnknownAccessKey,
)
from blobstore.core.listing import ListingBuilder, prefix_successor
from blobstore.core.records import (
    Bucket,
    ListPage,
    Manifest,
    ObjectVersion,
    RepairTask,
    Segment,
)
from blobstore.meta import handlers, heal, schema, sessions
from blobstore.meta.commands import CommandEnvelope, Outcome
from blobstore.meta.object_scan import ObjectScan
from blobstore.meta.schema import Dbs, User

MAX_SEQUENCE = 2**63 - 1
MAX_LOOKUP_IDS = 1000


class ApplyOrderError(RuntimeError):
    """An entry was offered out of log order: a bug in the log or the driver."""


class Counts(msgspec.Struct, frozen=True):
    objects: int
    segments: int
    repair_backlog: int
    degraded_segments: int
    gc_backlog: int


class StateMachine:
    """The replicated state of the metadata service, in one LMDB environment."""

    def __init__(self, env: lmdb.Environment) -> None:
        self.env = env
        self.dbs: Dbs = schema.open_dbs(env)

    # ---- applying ------------------------------------------------------------------------

    def apply(self, index: int, envelope: CommandEnvelope) -> Outcome:
        """Apply one log entry in its own write transaction."""
        with self.env.begin(write=True) as txn:
            return self.apply_in(txn, index, envelope)

    def apply_in(self, txn: lmdb.Transaction, index: int, envelope: CommandEnvelope) -> Outcome:
        """Apply one log entry inside the caller's write transaction (committed by it)."""
        last = self.last_applied_in(txn)
        if index != last + 1:
            raise ApplyOrderError(f"entry {index} offered but last_applied is {last}")
        outcome = self._decide(txn, index, envelope)
        sessions.expire(txn, self.dbs, index)
        txn.put(schema.LAST_APPLIED_KEY, schema.u64(index), db=self.dbs.meta)
        return outcome

    def advance_in(self, txn: lmdb.Transaction, index: int) -> None:
        """Apply an entry that holds no command (a new leader's NOOP, a membership change).

        Only ``last_applied`` moves (and idle sessions expire, as for any entry), so that
        ``last_applied`` is always the index of the last applied Raft entry of any kind.
        """
        last = self.last_applied_in(txn)
        if index != last + 1:
            raise ApplyOrderError(f"entry {index} offered but last_applied is {last}")
        sessions.expire(txn, self.dbs, index)
        txn.put(schema.LAST_APPLIED_KEY, schema.u64(index), db=self.dbs.meta)

    def _decide(self, txn: lmdb.Transaction, index: int, envelope: CommandEnvelope) -> Outcome:
        try:
            schema.check_client_id(envelope.client_id)
            if not 1 <= envelope.sequence <= MAX_SEQUENCE or envelope.ack_below < 0:
                raise Invalid(f"sequence must be 1..{MAX_SEQUENCE}, ack_below >= 0")
            stored = sessions.lookup(txn, self.dbs, envelope.client_id, envelope.sequence)
        except (Invalid, Conflict) as error:
            return Outcome.failure(error)
        if stored is not None:
            return stored
        outcome = self._run(txn, envelope)
        sessions.record(txn, self.dbs, envelope.client_id, envelope.sequence,
                        min(envelope.ack_below, MAX_SEQUENCE), index, outcome)
        return outcome

    def _run(self, txn: lmdb.Transaction, envelope: CommandEnvelope) -> Outcome:
        child = self.env.begin(write=True, parent=txn)
        try:
            value = heal.handle(child, self.dbs, envelope.command)  # then handlers.handle
        except BlobstoreError as error:
            child.abort()
            return Outcome.failure(error)
        except BaseException:
            child.abort()
            raise
        child.commit()
        return Outcome(value=value)

    # ---- reads ---------------------------------------------------------------------------

    def last_applied(self) -> int:
        with self.env.begin() as txn:
            return self.last_applied_in(txn)

    def last_applied_in(self, txn: lmdb.Transaction) -> int:
        data = txn.get(schema.LAST_APPLIED_KEY, db=self.dbs.meta)
        return schema.read_u64(data) if data is not None else 0

    def get_bucket(self, name: str) -> Bucket:
        with self.env.begin() as txn:
            return handlers.require_bucket(txn, self.dbs, name)

    def list_buckets(self) -> list[Bucket]:
        with self.env.begin() as txn:
            return [schema.decode(Bucket, value)
                    for _key, value in txn.cursor(self.dbs.buckets).iternext()]

    def get_manifest(self, bucket: str, key: str) -> Manifest:
        with self.env.begin() as txn:
            handlers.require_bucket(txn, self.dbs, bucket)
            try:
                schema.check_object_key(key)
            except Invalid:
                raise NoSuchKey(f"no object {key!r} in bucket {bucket!r}") from None
            data = txn.get(schema.object_key(bucket, key), db=self.dbs.objects)
            if data is None:
                raise NoSuchKey(f"no object {key!r} in bucket {bucket!r}")
            version = schema.decode(ObjectVersion, data)
            segments: dict[str, Segment] = {}
            for ref in version.segments:
                if ref.id not in segments:
                    segments[ref.id] = self._segment(txn, ref.id)
            return Manifest(version=version, segments=segments)

    def _segment(self, txn: lmdb.Transaction, segment_id: str) -> Segment:
        data = txn.get(schema.segment_key(segment_id), db=self.dbs.segments)
        if data is None:
            raise Corrupt(f"segment {segment_id} is referenced but has no record")
        return schema.decode(Segment, data)

    def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "",
                     start_after: str = "", max_keys: int = 1000) -> ListPage:
        """One listing page (core/listing.py), seeking past each rolled-up common prefix."""
        builder = ListingBuilder(prefix=prefix, delimiter=delimiter, start_after=start_after,
                                 max_keys=max_keys)
        with self.env.begin() as txn:
            handlers.require_bucket(txn, self.dbs, bucket)
            scan = ObjectScan(txn, self.dbs.objects, bucket)
            scan.seek_key(builder.first_key())
            while not builder.done:
                summary = scan.next()
                if summary is None:
                    builder.finish()
                    break
                skip = builder.offer(summary)
                if skip is not None:
                    successor = prefix_successor(schema.object_full_key(bucket, skip))
                    assert successor is not None, "a non-empty UTF-8 prefix has a successor"
                    scan.seek(successor)
        return builder.page()

    def lookup_segments(self, ids: Iterable[str]) -> dict[str, Segment]:
        """The records of those ids that exist (malformed ids cannot exist: skipped)."""
        wanted = list(ids)
        if len(wanted) > MAX_LOOKUP_IDS:
            raise Invalid(f"at most {MAX_LOOKUP_IDS} segment ids per lookup")
        found: dict[str, Segment] = {}
        with self.env.begin() as txn:
            for segment_id in wanted:
                try:
                    key = schema.segment_key(segment_id)
                except Invalid:
                    continue
                data = txn.get(key, db=self.dbs.segments)
                if data is not None:
                    found[segment_id] = schema.decode(Segment, data)
        return found

    def get_user(self, access_key: str) -> User:
        data = None
        if schema.is_valid_access_key(access_key):
            with self.env.begin() as txn:
                data = txn.get(access_key.encode(), db=self.dbs.users)
        if data is None:
            raise UnknownAccessKey(f"unknown access key {access_key!r}")
        return schema.decode(User, data)

    def counts(self) -> Counts:
        with self.env.begin() as txn:
            def entries(db: lmdb._Database) -> int:
                return int(txn.stat(db)["entries"])

            return Counts(objects=entries(self.dbs.objects), segments=entries(self.dbs.segments),
                          repair_backlog=entries(self.dbs.repair_queue),
                          degraded_segments=entries(self.dbs.degraded),
                          gc_backlog=entries(self.dbs.gc))

    def repair_tasks(self, limit: int = 100) -> list[RepairTask]:
        """The head of the repair queue: fewest healthy shards first."""
        with self.env.begin() as txn:
            tasks = []
            for _key, value in txn.cursor(self.dbs.repair_queue).iternext():
                if len(tasks) >= limit:
                    break
                tasks.append(schema.decode(RepairTask, value))
            return tasks

    def gc_segments(self, limit: int = 100) -> list[str]:
        """Segments whose refcount reached 0 (for the garbage collector of a later issue)."""
        with self.env.begin() as txn:
            ids = []
            for key in txn.cursor(self.dbs.gc).iternext(keys=True, values=False):
                if len(ids) >= limit:
                    break
                ids.append(schema.segment_id_of(key))
            return ids

    def session_last_sequence(self, client_id: str) -> int:
        with self.env.begin() as txn:
            return sessions.last_sequence(txn, self.dbs, client_id)
