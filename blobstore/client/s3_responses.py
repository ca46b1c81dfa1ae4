"""S3 responses as values: XML listings, object headers and error documents.

The client in ``s3.py`` sends and streams; this module only reads what came back. XML is
matched on local names, so a response with or without the S3 namespace reads the same. An
error without a body (HEAD) gets its code from the HTTP status.
"""

from __future__ import annotations

import http.client
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from blobstore.core.errors import BlobstoreError, Unavailable

_STATUS_CODES = {301: "PermanentRedirect", 400: "BadRequest", 403: "AccessDenied",
                 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict",
                 412: "PreconditionFailed", 416: "InvalidRange", 500: "InternalError",
                 501: "NotImplemented", 503: "ServiceUnavailable"}


class S3ClientError(BlobstoreError):
    """The S3 server answered with an error."""

    def __init__(self, code: str, message: str, status: int, resource: str = "",
                 request_id: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.http_status = status
        self.s3_message = message
        self.resource = resource
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class BucketEntry:
    name: str
    created: str  # ISO 8601, as the server sent it


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    key: str
    size: int
    etag: str  # without quotes
    last_modified: str  # ISO 8601, as the server sent it


@dataclass(frozen=True, slots=True)
class ObjectPage:
    entries: list[ObjectEntry]
    common_prefixes: list[str]
    is_truncated: bool
    next_token: str | None


@dataclass(frozen=True, slots=True)
class ObjectHead:
    size: int
    etag: str  # without quotes
    content_type: str
    last_modified: str
    metadata: dict[str, str] = field(default_factory=dict)


def parse_buckets(payload: bytes) -> list[BucketEntry]:
    """A ListAllMyBucketsResult document."""
    root = parse_xml(payload)
    return [BucketEntry(_text(b, "Name"), _text(b, "CreationDate"))
            for b in _findall(root, "Buckets", "Bucket")]


def parse_object_page(payload: bytes, bucket: str) -> ObjectPage:
    """A ListBucketResult (v2) document; Unavailable if truncated without a token."""
    root = parse_xml(payload)
    entries = [ObjectEntry(_text(c, "Key"), int(_text(c, "Size") or 0),
                           _text(c, "ETag").strip('"'), _text(c, "LastModified"))
               for c in _findall(root, "Contents")]
    prefixes = [_text(p, "Prefix") for p in _findall(root, "CommonPrefixes")]
    truncated = _text(root, "IsTruncated").lower() == "true"
    token = _text(root, "NextContinuationToken") or None
    if truncated and not token:
        raise Unavailable(f"listing of {bucket} is truncated without a continuation token")
    return ObjectPage(entries, prefixes, truncated, token)


def header(headers: list[tuple[str, str]], name: str) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value
    return ""


def head_from(headers: list[tuple[str, str]]) -> ObjectHead:
    metadata = {k.lower()[len("x-amz-meta-"):]: v for k, v in headers
                if k.lower().startswith("x-amz-meta-")}
    length = header(headers, "content-length")
    return ObjectHead(size=int(length) if length.isdigit() else 0,
                      etag=header(headers, "etag").strip('"'),
                      content_type=header(headers, "content-type"),
                      last_modified=header(headers, "last-modified"), metadata=metadata)


def error_from(response: http.client.HTTPResponse, payload: bytes,
                resource: str) -> S3ClientError:
    code = _STATUS_CODES.get(response.status, f"HTTP{response.status}")
    message, request_id = response.reason, response.getheader("x-amz-request-id", "")
    if payload:
        try:
            root = ET.fromstring(payload)
            code = _text(root, "Code") or code
            message = _text(root, "Message") or message
            resource = _text(root, "Resource") or resource
            request_id = _text(root, "RequestId") or request_id
        except ET.ParseError:
            message = payload[:200].decode("utf-8", "replace")
    if response.status == 404 and not payload:
        code = "NoSuchKey" if resource.count("/") >= 2 else "NoSuchBucket"
    return S3ClientError(code, message, response.status, resource, request_id)


def parse_xml(payload: bytes) -> ET.Element:
    try:
        return ET.fromstring(payload)
    except ET.ParseError as exc:
        raise Unavailable(f"malformed XML from the server: {exc}") from exc


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _findall(element: ET.Element, *path: str) -> list[ET.Element]:
    found = [element]
    for name in path:
        found = [child for parent in found for child in parent if _local(child.tag) == name]
    return found


def _text(element: ET.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return ""
