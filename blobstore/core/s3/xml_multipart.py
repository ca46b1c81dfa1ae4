"""XML of multipart uploads: Initiate, Complete (request and result), ListParts,
ListMultipartUploads, UploadPartCopy. Same defensive parsing as ``xml.py``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from blobstore.core.s3.errors import InvalidPart, MalformedXML
from blobstore.core.s3.xml import (
    Owner,
    _add,
    _add_owner,
    _bool,
    _children,
    _root,
    _to_bytes,
    format_time,
    parse_document,
    quote_etag,
)

MAX_PARTS = 10_000


def render_initiate(bucket: str, key: str, upload_id: str) -> bytes:
    root = _root("InitiateMultipartUploadResult")
    _add(root, "Bucket", bucket)
    _add(root, "Key", key)
    _add(root, "UploadId", upload_id)
    return _to_bytes(root)


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag) pairs in the order given; validation of order is meta's."""
    root = parse_document(body, "CompleteMultipartUpload")
    parts: list[tuple[int, str]] = []
    for name, child in _children(root):
        if name != "Part":
            raise MalformedXML(f"Unexpected element {name!r} in CompleteMultipartUpload.")
        number, etag = None, None
        for field, value in _children(child):
            text = (value.text or "").strip()
            if field == "PartNumber":
                if not text.isdigit():
                    raise InvalidPart("PartNumber must be a positive integer")
                number = int(text)
            elif field == "ETag":
                etag = text.strip('"')
            elif not field.startswith("Checksum"):
                raise MalformedXML(f"Unexpected element {field!r} in Part.")
        if number is None or etag is None:
            raise MalformedXML("Each Part needs a PartNumber and an ETag.")
        parts.append((number, etag))
        if len(parts) > MAX_PARTS:
            raise MalformedXML(f"At most {MAX_PARTS} parts.")
    if not parts:
        raise MalformedXML("The upload must list at least one part.")
    return parts


def render_complete(location: str, bucket: str, key: str, etag: str) -> bytes:
    root = _root("CompleteMultipartUploadResult")
    _add(root, "Location", location)
    _add(root, "Bucket", bucket)
    _add(root, "Key", key)
    _add(root, "ETag", quote_etag(etag))
    return _to_bytes(root)


@dataclass(frozen=True, slots=True)
class PartEntry:
    number: int
    last_modified: dt.datetime
    etag: str
    size: int


def render_list_parts(*, bucket: str, key: str, upload_id: str, owner: Owner,
                      marker: int, next_marker: int | None, max_parts: int, truncated: bool,
                      parts: Sequence[PartEntry]) -> bytes:
    root = _root("ListPartsResult")
    _add(root, "Bucket", bucket)
    _add(root, "Key", key)
    _add(root, "UploadId", upload_id)
    _add_owner(root, owner)
    _add(root, "StorageClass", "STANDARD")
    _add(root, "PartNumberMarker", str(marker))
    if next_marker is not None:
        _add(root, "NextPartNumberMarker", str(next_marker))
    _add(root, "MaxParts", str(max_parts))
    _add(root, "IsTruncated", _bool(truncated))
    for part in parts:
        entry = _add(root, "Part")
        _add(entry, "PartNumber", str(part.number))
        _add(entry, "LastModified", format_time(part.last_modified))
        _add(entry, "ETag", quote_etag(part.etag))
        _add(entry, "Size", str(part.size))
    return _to_bytes(root)


@dataclass(frozen=True, slots=True)
class UploadEntry:
    key: str
    upload_id: str
    initiated: dt.datetime


def render_list_uploads(*, bucket: str, prefix: str, key_marker: str, upload_id_marker: str,
                        max_uploads: int, truncated: bool, owner: Owner,
                        uploads: Sequence[UploadEntry]) -> bytes:
    root = _root("ListMultipartUploadsResult")
    _add(root, "Bucket", bucket)
    _add(root, "KeyMarker", key_marker)
    _add(root, "UploadIdMarker", upload_id_marker)
    if truncated and uploads:
        _add(root, "NextKeyMarker", uploads[-1].key)
        _add(root, "NextUploadIdMarker", uploads[-1].upload_id)
    _add(root, "Prefix", prefix)
    _add(root, "MaxUploads", str(max_uploads))
    _add(root, "IsTruncated", _bool(truncated))
    for upload in uploads:
        entry = _add(root, "Upload")
        _add(entry, "Key", upload.key)
        _add(entry, "UploadId", upload.upload_id)
        _add_owner(entry, owner)
        _add(entry, "StorageClass", "STANDARD")
        _add(entry, "Initiated", format_time(upload.initiated))
    return _to_bytes(root)
