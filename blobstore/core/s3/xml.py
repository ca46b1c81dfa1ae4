"""S3 XML: render result and ``<Error>`` documents, parse request bodies.

Rendering rules:
1. Every document is UTF-8 bytes starting with ``<?xml version="1.0" encoding="UTF-8"?>``.
   Results carry the S3 namespace ``http://s3.amazonaws.com/doc/2006-03-01/`` as the
   default namespace of the root; ``<Error>`` has none, as on S3.
2. Times are ISO 8601 in UTC with milliseconds and ``Z`` (``2024-05-06T07:08:09.000Z``);
   a naive ``datetime`` is taken to be UTC. ETags are rendered in double quotes.
3. ``encoding_type="url"`` encodes the names S3 encodes (Key, Prefix, Delimiter,
   StartAfter, Marker, NextMarker, CommonPrefixes) the way S3 does: form encoding with
   ``/`` and ``*`` left as they are and ``~`` encoded; any decoder (botocore uses
   ``unquote_plus``) gets the names back. The raw query value may be passed: empty means
   none, anything but ``url`` is InvalidArgument, as on S3. Without it a key holding a
   character XML 1.0 cannot carry (most C0 controls) makes the listing unparseable, as on
   S3, so clients ask for ``url`` (boto3 always does).
4. Inputs are plain values: the small frozen dataclasses below and keyword arguments.

Parsing rules:
1. A body is at most ``MAX_BODY_BYTES`` (4 MiB) unless the caller says less; the caller
   stops reading there, we check again.
2. A body containing ``<!DOCTYPE`` or ``<!ENTITY`` is refused outright: no DTDs means no
   entity expansion (billion laughs) and no external entities. For that check to see what
   expat sees, the body must be UTF-8 without NUL: expat would otherwise detect UTF-16 by
   itself (``<\0``), whatever encoding the parser is given, and a UTF-16 body is valid
   UTF-8 as long as it has NULs. NUL is never legal in XML, so nothing valid is lost.
3. Element names are matched on their local name, in the S3 namespace or in none (clients
   differ). Anything malformed or unexpected is ``MalformedXML``; no other exception escapes.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote_plus

from blobstore.core.s3.errors import InvalidArgument, MalformedXML, S3Error

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
# Large enough for CompleteMultipartUpload with 10,000 parts and checksums, and for
# DeleteObjects with 1,000 keys of 1 KiB each.
MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_REGION = "us-east-1"
_FORBIDDEN_MARKUP = ("<!DOCTYPE", "<!ENTITY")


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class BucketEntry:
    name: str
    created: dt.datetime


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """One ``<Contents>`` of a listing. ``etag`` is bare (``hex`` or ``hex-N``)."""

    key: str
    last_modified: dt.datetime
    etag: str
    size: int
    owner: Owner | None = None
    storage_class: str = "STANDARD"


# -- rendering -----------------------------------------------------------------------------


def format_time(when: dt.datetime) -> str:
    """ISO 8601, UTC, milliseconds, ``Z``: the form of ``LastModified`` and ``CreationDate``."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def quote_etag(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def url_encode_name(name: str) -> str:
    """A name as S3 writes it under ``encoding-type=url``."""
    return quote_plus(name, safe="/*", errors="surrogateescape").replace("~", "%7E")


def _root(tag: str) -> ET.Element:
    return ET.Element(tag, xmlns=S3_NAMESPACE)


def _add(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def _to_bytes(root: ET.Element) -> bytes:
    # "replace": a prefix or marker echoed from the query may hold undecodable bytes
    # (surrogates); they become "?" rather than an exception.
    return XML_DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8", "replace")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def render_error(error: S3Error, request_id: str, resource: str | None = None) -> bytes:
    """The ``<Error>`` document for ``error``; ``resource`` overrides ``error.resource``."""
    root = ET.Element("Error")
    _add(root, "Code", error.code)
    _add(root, "Message", error.message)
    for name, value in error.extra:
        _add(root, name, value)
    resource = resource if resource is not None else error.resource
    if resource is not None:
        _add(root, "Resource", resource)
    _add(root, "RequestId", request_id)
    return _to_bytes(root)


def _add_owner(parent: ET.Element, owner: Owner) -> None:
    element = _add(parent, "Owner")
    _add(element, "ID", owner.id)
    _add(element, "DisplayName", owner.display_name)


def render_list_buckets(owner: Owner, buckets: Sequence[BucketEntry]) -> bytes:
    """ListAllMyBucketsResult, buckets in the order given (S3 sorts them by name)."""
    root = _root("ListAllMyBucketsResult")
    _add_owner(root, owner)
    element = _add(root, "Buckets")
    for bucket in buckets:
        entry = _add(element, "Bucket")
        _add(entry, "Name", bucket.name)
        _add(entry, "CreationDate", format_time(bucket.created))
    return _to_bytes(root)


def render_location(region: str) -> bytes:
    """GetBucketLocation. ``us-east-1`` is the empty element, as on S3 (SDKs expect that)."""
    root = _root("LocationConstraint")
    if region != DEFAULT_REGION:
        root.text = region
    return _to_bytes(root)


def _add_entries(
    root: ET.Element,
    contents: Sequence[ObjectEntry],
    common_prefixes: Sequence[str],
    encode: bool,
) -> None:
    for item in contents:
        entry = _add(root, "Contents")
        _add(entry, "Key", url_encode_name(item.key) if encode else item.key)
        _add(entry, "LastModified", format_time(item.last_modified))
        _add(entry, "ETag", quote_etag(item.etag))
        _add(entry, "Size", str(item.size))
        if item.owner is not None:
            _add_owner(entry, item.owner)
        _add(entry, "StorageClass", item.storage_class)
    for prefix in common_prefixes:
        element = _add(root, "CommonPrefixes")
        _add(element, "Prefix", url_encode_name(prefix) if encode else prefix)


def _check_encoding_type(encoding_type: str | None) -> bool:
    """True for ``url``, False for none; InvalidArgument for anything else (S3's answer)."""
    if not encoding_type:
        return False
    if encoding_type != "url":
        raise InvalidArgument(
            "Invalid Encoding Method specified in Request",
            extra=(("ArgumentName", "encoding-type"), ("ArgumentValue", encoding_type[:256])),
        )
    return True


def render_list_objects_v2(
    *,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    is_truncated: bool,
    contents: Sequence[ObjectEntry],
    common_prefixes: Sequence[str],
    continuation_token: str | None = None,
    next_continuation_token: str | None = None,
    start_after: str | None = None,
    encoding_type: str | None = None,
) -> bytes:
    """ListBucketResult of ListObjectsV2. ``KeyCount`` counts keys and common prefixes.

    Owners are rendered for entries that carry one: pass them only under ``fetch-owner``.
    """
    encode = _check_encoding_type(encoding_type)

    def name(value: str) -> str:
        return url_encode_name(value) if encode else value

    root = _root("ListBucketResult")
    _add(root, "Name", bucket)
    _add(root, "Prefix", name(prefix))
    if delimiter:
        _add(root, "Delimiter", name(delimiter))
    _add(root, "MaxKeys", str(max_keys))
    if encode:
        _add(root, "EncodingType", "url")
    _add(root, "KeyCount", str(len(contents) + len(common_prefixes)))
    _add(root, "IsTruncated", _bool(is_truncated))
    if continuation_token is not None:
        _add(root, "ContinuationToken", continuation_token)
    if next_continuation_token is not None:
        _add(root, "NextContinuationToken", next_continuation_token)
    if start_after is not None:
        _add(root, "StartAfter", name(start_after))
    _add_entries(root, contents, common_prefixes, encode)
    return _to_bytes(root)


def render_list_objects_v1(
    *,
    bucket: str,
    prefix: str,
    delimiter: str | None,
    marker: str | None,
    max_keys: int,
    is_truncated: bool,
    contents: Sequence[ObjectEntry],
    common_prefixes: Sequence[str],
    next_marker: str | None = None,
    encoding_type: str | None = None,
) -> bytes:
    """ListBucketResult of ListObjects (v1). S3 sends ``NextMarker`` only with a delimiter."""
    encode = _check_encoding_type(encoding_type)

    def name(value: str) -> str:
        return url_encode_name(value) if encode else value

    root = _root("ListBucketResult")
    _add(root, "Name", bucket)
    _add(root, "Prefix", name(prefix))
    _add(root, "Marker", name(marker or ""))
    if next_marker is not None:
        _add(root, "NextMarker", name(next_marker))
    _add(root, "MaxKeys", str(max_keys))
    if delimiter:
        _add(root, "Delimiter", name(delimiter))
    if encode:
        _add(root, "EncodingType", "url")
    _add(root, "IsTruncated", _bool(is_truncated))
    _add_entries(root, contents, common_prefixes, encode)
    return _to_bytes(root)


# -- parsing -------------------------------------------------------------------------------


def _local_name(tag: object) -> str | None:
    """``tag`` without the S3 namespace; None for another namespace or a non-element."""
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return local if namespace == S3_NAMESPACE else None
    return tag


def parse_document(body: bytes, root_name: str, max_bytes: int = MAX_BODY_BYTES) -> ET.Element:
    """Parse a request body whose root element must be ``root_name``; MalformedXML if not."""
    if len(body) > max_bytes:
        raise MalformedXML(f"The XML body is larger than {max_bytes} bytes.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedXML("The XML body is not UTF-8.") from None
    if "\x00" in text:
        raise MalformedXML("The XML body holds a NUL character.")
    if any(markup in text for markup in _FORBIDDEN_MARKUP):
        raise MalformedXML("Document type definitions and entities are not accepted.")
    parser = ET.XMLParser(encoding="utf-8")
    try:
        parser.feed(body)
        root = parser.close()
    except (ET.ParseError, ValueError, LookupError) as error:
        raise MalformedXML() from error
    if _local_name(root.tag) != root_name:
        raise MalformedXML(f"The root element must be {root_name}.")
    return root


def _children(element: ET.Element) -> list[tuple[str, ET.Element]]:
    out = []
    for child in element:
        name = _local_name(child.tag)
        if name is None:
            raise MalformedXML(f"Unexpected element {child.tag!r}.")
        out.append((name, child))
    return out


def parse_create_bucket_configuration(body: bytes) -> str | None:
    """The LocationConstraint of a CreateBucket body; None for an empty body or element."""
    if not body.strip():
        return None
    root = parse_document(body, "CreateBucketConfiguration")
    location: str | None = None
    seen = False
    for name, child in _children(root):
        if name != "LocationConstraint" or seen or len(child):
            raise MalformedXML(f"Unexpected element {name!r} in CreateBucketConfiguration.")
        seen = True
        location = (child.text or "").strip() or None
    return location
