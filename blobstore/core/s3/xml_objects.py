"""XML of the object-level operations: DeleteObjects, CopyObject, ListObjectVersions.

Same rules as ``xml.py`` (whose helpers this uses): bodies are parsed defensively
(UTF-8 only, no DTD, bounded size, unknown elements refused), results rendered in the S3
namespace. DeleteObjects takes at most 1000 keys, as S3 does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from blobstore.core.s3.errors import MalformedXML
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
    url_encode_name,
)

MAX_DELETE_KEYS = 1000


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    keys: list[tuple[str, str | None]]  # (key, version id or None)
    quiet: bool


def parse_delete_objects(body: bytes) -> DeleteRequest:
    root = parse_document(body, "Delete")
    keys: list[tuple[str, str | None]] = []
    quiet = False
    for name, child in _children(root):
        if name == "Quiet":
            quiet = (child.text or "").strip().lower() == "true"
        elif name == "Object":
            key, version = None, None
            for field, value in _children(child):
                if field == "Key":
                    key = value.text or ""
                elif field == "VersionId":
                    version = (value.text or "").strip()
                elif field not in ("ETag", "LastModifiedTime", "Size"):
                    raise MalformedXML(f"Unexpected element {field!r} in Object.")
            if not key:
                raise MalformedXML("An Object has no Key.")
            keys.append((key, version))
        else:
            raise MalformedXML(f"Unexpected element {name!r} in Delete.")
    if not keys or len(keys) > MAX_DELETE_KEYS:
        raise MalformedXML(f"Delete takes 1 to {MAX_DELETE_KEYS} objects.")
    return DeleteRequest(keys, quiet)


def render_delete_result(deleted: Sequence[tuple[str, str | None]],
                         errors: Sequence[tuple[str, str, str]]) -> bytes:
    """``deleted``: (key, version id echoed); ``errors``: (key, code, message)."""
    root = _root("DeleteResult")
    for key, version in deleted:
        entry = _add(root, "Deleted")
        _add(entry, "Key", key)
        if version is not None:
            _add(entry, "VersionId", version)
    for key, code, message in errors:
        entry = _add(root, "Error")
        _add(entry, "Key", key)
        _add(entry, "Code", code)
        _add(entry, "Message", message)
    return _to_bytes(root)


def render_copy_result(etag: str, last_modified: dt.datetime,
                       root_name: str = "CopyObjectResult") -> bytes:
    """CopyObjectResult, or CopyPartResult (same body) for UploadPartCopy."""
    root = _root(root_name)
    _add(root, "LastModified", format_time(last_modified))
    _add(root, "ETag", quote_etag(etag))
    return _to_bytes(root)


@dataclass(frozen=True, slots=True)
class VersionEntry:
    key: str
    last_modified: dt.datetime
    etag: str
    size: int
    owner: Owner


def render_list_versions(*, bucket: str, prefix: str, delimiter: str, key_marker: str,
                         max_keys: int, is_truncated: bool, versions: Sequence[VersionEntry],
                         common_prefixes: Sequence[str], next_key_marker: str | None,
                         encoding_type: str | None) -> bytes:
    """ListVersionsResult for unversioned buckets: each object is version ``null``."""
    encode = encoding_type == "url"

    def name(value: str) -> str:
        return url_encode_name(value) if encode else value

    root = _root("ListVersionsResult")
    _add(root, "Name", bucket)
    _add(root, "Prefix", name(prefix))
    _add(root, "KeyMarker", name(key_marker))
    _add(root, "VersionIdMarker", "")
    if next_key_marker is not None:
        _add(root, "NextKeyMarker", name(next_key_marker))
        _add(root, "NextVersionIdMarker", "null")
    _add(root, "MaxKeys", str(max_keys))
    if delimiter:
        _add(root, "Delimiter", name(delimiter))
    if encode:
        _add(root, "EncodingType", "url")
    _add(root, "IsTruncated", _bool(is_truncated))
    for item in versions:
        entry = _add(root, "Version")
        _add(entry, "Key", name(item.key))
        _add(entry, "VersionId", "null")
        _add(entry, "IsLatest", "true")
        _add(entry, "LastModified", format_time(item.last_modified))
        _add(entry, "ETag", quote_etag(item.etag))
        _add(entry, "Size", str(item.size))
        _add_owner(entry, item.owner)
        _add(entry, "StorageClass", "STANDARD")
    for prefix in common_prefixes:
        _add(_add(root, "CommonPrefixes"), "Prefix", name(prefix))
    return _to_bytes(root)
