"""Multipart uploads in the metadata state machine: uploads, parts, completion.

Sub-dbs (``meta/schema.py``): ``uploads`` upload id -> Upload; ``upload_index`` bucket +
NUL + key + NUL + upload id -> empty (ListMultipartUploads order); ``parts`` upload id +
part number (u16 BE) -> Part.

Rules:
- create_upload: NoSuchBucket; the upload id comes with the command (the gateway draws it).
- put_part: NoSuchUpload; part numbers 1..10,000; the part's new segments are inserted as
  put_object inserts them and each of its refs holds one reference, so the garbage
  collector cannot take a part's shards while the upload lives. Re-uploading a part number
  replaces the old part and releases its references.
- complete_upload: NoSuchUpload; parts listed in strictly ascending order (InvalidPartOrder),
  each existing with that ETag (InvalidPart), every part but the last at least
  ``MIN_PART_BYTES`` (EntityTooSmall). The object version's segment refs are the parts'
  refs, offsets shifted; its ETag is ``hex(MD5(concatenated binary part MD5s))-N``. The
  references move from the parts to the object (unlisted parts release theirs); the
  replaced object, if any, releases its own. The upload and its parts are gone after.
- abort_upload: NoSuchUpload; every part releases its references.
Everything is deterministic: ids and times travel inside the commands.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import lmdb
import msgspec

from blobstore.core.errors import (
    EntityTooSmall,
    Invalid,
    InvalidPart,
    InvalidPartOrder,
    NoSuchUpload,
)
from blobstore.core.records import ObjectVersion, Part, SegmentRef, Upload
from blobstore.meta import handlers, schema
from blobstore.meta.commands import AbortUpload, CompleteUpload, CreateUpload, PutPart
from blobstore.meta.schema import Dbs

MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PART_NUMBER = 10_000
MAX_UPLOAD_ID_CHARS = 128
Value = dict[str, Any]
_U16 = struct.Struct(">H")


def upload_key(upload_id: str) -> bytes:
    if not upload_id or len(upload_id) > MAX_UPLOAD_ID_CHARS or not upload_id.isascii() \
            or not upload_id.replace("-", "").replace("_", "").isalnum():
        raise NoSuchUpload(f"no upload {upload_id[:80]!r}")
    return upload_id.encode()


def part_key(upload_id: str, number: int) -> bytes:
    return upload_key(upload_id) + b"\x00" + _U16.pack(number)


def index_key(bucket: str, key: str, upload_id: str) -> bytes:
    return schema.object_key(bucket, key) + b"\x00" + upload_id.encode()


def get_upload(txn: lmdb.Transaction, dbs: Dbs, upload_id: str) -> Upload:
    data = txn.get(upload_key(upload_id), db=dbs.uploads)
    if data is None:
        raise NoSuchUpload(f"no upload {upload_id!r}")
    return schema.decode(Upload, data)


def parts_of(txn: lmdb.Transaction, dbs: Dbs, upload_id: str) -> list[Part]:
    head = upload_key(upload_id) + b"\x00"
    cursor = txn.cursor(dbs.parts)
    out: list[Part] = []
    if cursor.set_range(head):
        for key, value in cursor:
            if not key.startswith(head):
                break
            out.append(schema.decode(Part, value))
    return out


def _release(delta: dict[str, int], refs: list[SegmentRef], sign: int) -> None:
    for ref in refs:
        delta[ref.id] = delta.get(ref.id, 0) + sign


def create_upload(txn: lmdb.Transaction, dbs: Dbs, command: CreateUpload) -> Value:
    upload = command.upload
    handlers.require_bucket(txn, dbs, upload.bucket)
    schema.check_object_key(upload.key)
    key = upload_key(upload.upload_id)
    if txn.get(key, db=dbs.uploads) is not None:
        raise Invalid("upload id already in use")
    txn.put(key, schema.encode(upload), db=dbs.uploads)
    txn.put(index_key(upload.bucket, upload.key, upload.upload_id), b"", db=dbs.upload_index)
    return {"upload_id": upload.upload_id}


def put_part(txn: lmdb.Transaction, dbs: Dbs, command: PutPart) -> Value:
    get_upload(txn, dbs, command.upload_id)
    part = command.part
    if not 1 <= part.number <= MAX_PART_NUMBER:
        raise Invalid(f"part numbers are 1..{MAX_PART_NUMBER}")
    expected = 0
    for ref in part.segments:
        if ref.offset != expected or ref.length <= 0:
            raise Invalid("part segments must cover the part in order")
        expected += ref.length
    if expected != part.size:
        raise Invalid("part segments do not add up to its size")
    for segment in command.new_segments:
        handlers._check_segment(segment)
    new_ids = {segment.id for segment in command.new_segments}
    for ref in part.segments:
        if ref.id not in new_ids and txn.get(schema.segment_key(ref.id), db=dbs.segments) is None:
            raise Invalid(f"segment {ref.id} is neither stored nor among the new segments")
    for segment in command.new_segments:
        handlers._insert_segment(txn, dbs, segment)
    key = part_key(command.upload_id, part.number)
    old = txn.get(key, db=dbs.parts)
    delta: dict[str, int] = {}
    _release(delta, part.segments, +1)
    if old is not None:
        _release(delta, schema.decode(Part, old).segments, -1)
    handlers._adjust_refcounts(txn, dbs, delta)
    txn.put(key, schema.encode(part), db=dbs.parts)
    return {"etag": part.etag}


def _drop_upload(txn: lmdb.Transaction, dbs: Dbs, upload: Upload, parts: list[Part]) -> None:
    for part in parts:
        txn.delete(part_key(upload.upload_id, part.number), db=dbs.parts)
    txn.delete(upload_key(upload.upload_id), db=dbs.uploads)
    txn.delete(index_key(upload.bucket, upload.key, upload.upload_id), db=dbs.upload_index)


def complete_upload(txn: lmdb.Transaction, dbs: Dbs, command: CompleteUpload) -> Value:
    upload = get_upload(txn, dbs, command.upload_id)
    handlers.require_bucket(txn, dbs, upload.bucket)
    stored = {part.number: part for part in parts_of(txn, dbs, command.upload_id)}
    if not command.parts:
        raise Invalid("You must specify at least one part")
    numbers = [number for number, _ in command.parts]
    if any(b <= a for a, b in zip(numbers, numbers[1:], strict=False)):
        raise InvalidPartOrder("The list of parts was not in ascending order.")
    chosen: list[Part] = []
    for number, etag in command.parts:
        part = stored.get(number)
        if part is None or part.etag != etag.strip('"').lower():
            raise InvalidPart(f"part {number} was not uploaded, or its ETag does not match")
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < MIN_PART_BYTES:
            raise EntityTooSmall(f"part {part.number} is smaller than the minimum of 5 MiB")
    refs: list[SegmentRef] = []
    offset = 0
    md5s = b""
    for part in chosen:
        refs += [SegmentRef(ref.id, offset + ref.offset, ref.length) for ref in part.segments]
        offset += part.size
        md5s += bytes.fromhex(part.etag)
    etag = f"{hashlib.md5(md5s).hexdigest()}-{len(chosen)}"
    version = ObjectVersion(
        bucket=upload.bucket, key=upload.key, version_id=command.version_id, size=offset,
        etag=etag, created_ns=command.created_ns, segments=refs,
        content_type=upload.content_type, user_metadata=upload.user_metadata,
        headers=upload.headers)
    object_key = schema.object_key(upload.bucket, upload.key)
    old_data = txn.get(object_key, db=dbs.objects)
    delta: dict[str, int] = {}
    chosen_numbers = set(numbers)
    for part in stored.values():  # references move from the parts to the object
        if part.number not in chosen_numbers:
            _release(delta, part.segments, -1)
    if old_data is not None:
        _release(delta, schema.decode(ObjectVersion, old_data).segments, -1)
    handlers._adjust_refcounts(txn, dbs, delta)
    txn.put(object_key, schema.encode(version), db=dbs.objects)
    _drop_upload(txn, dbs, upload, list(stored.values()))
    return {"etag": etag, "size": offset, "version_id": command.version_id}


def abort_upload(txn: lmdb.Transaction, dbs: Dbs, command: AbortUpload) -> Value:
    upload = get_upload(txn, dbs, command.upload_id)
    parts = parts_of(txn, dbs, command.upload_id)
    delta: dict[str, int] = {}
    for part in parts:
        _release(delta, part.segments, -1)
    handlers._adjust_refcounts(txn, dbs, delta)
    _drop_upload(txn, dbs, upload, parts)
    return {}


def list_uploads(txn: lmdb.Transaction, dbs: Dbs, bucket: str, prefix: str, key_marker: str,
                 upload_id_marker: str, max_uploads: int) -> tuple[list[Upload], bool]:
    """Uploads of a bucket in (key, upload id) order after the markers; (page, truncated)."""
    handlers.require_bucket(txn, dbs, bucket)
    head = schema.object_head(bucket)
    start = index_key(bucket, key_marker, upload_id_marker) if key_marker else head
    cursor = txn.cursor(dbs.upload_index)
    out: list[Upload] = []
    if not cursor.set_range(start):
        return out, False
    for key, _ in cursor:
        if not key.startswith(head):
            break
        if key_marker and key <= start:
            continue
        upload_id = key.rsplit(b"\x00", 1)[1].decode()
        upload = get_upload(txn, dbs, upload_id)
        if not upload.key.startswith(prefix):
            continue
        if len(out) == max_uploads:
            return out, True
        out.append(upload)
    return out, False


def to_builtins(value: object) -> Any:
    return msgspec.to_builtins(value)


# ---- reads (run by the service's read path on a consistent snapshot) ----------------------


class UploadView(msgspec.Struct, frozen=True):
    upload: Upload
    parts: list[Part]


class UploadList(msgspec.Struct, frozen=True):
    uploads: list[Upload]
    is_truncated: bool


def read_upload(state: Any, upload_id: str) -> UploadView:
    """``state`` is the StateMachine (``env`` and ``dbs``)."""
    with state.env.begin() as txn:
        return UploadView(get_upload(txn, state.dbs, upload_id),
                          parts_of(txn, state.dbs, upload_id))


def read_uploads(state: Any, bucket: str, prefix: str, key_marker: str, upload_id_marker: str,
                 max_uploads: int) -> UploadList:
    with state.env.begin() as txn:
        uploads, truncated = list_uploads(txn, state.dbs, bucket, prefix, key_marker,
                                          upload_id_marker, max_uploads)
        return UploadList(uploads, truncated)
