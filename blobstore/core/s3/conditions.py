"""Conditional requests: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since.

S3's rules (RFC 7232 with S3's precedence), for GET and HEAD:
1. If-Match present and no listed ETag (or ``*``) matches: 412 PreconditionFailed.
2. Else, If-Unmodified-Since present (and If-Match absent) and the object changed after
   it: 412.
3. If-None-Match present and a listed ETag (or ``*``) matches: 304 Not Modified.
4. Else, If-Modified-Since present (and If-None-Match absent) and the object did not
   change after it: 304.
Times compare at whole seconds (HTTP dates carry no more); an unparseable date is ignored.
The same rules, with 412 in place of 304, answer ``x-amz-copy-source-if-*`` for CopyObject.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping

from blobstore.core.s3.errors import PreconditionFailed

NOT_MODIFIED = 304


def _etags(value: str) -> set[str]:
    return {part.strip().removeprefix("W/").strip('"') for part in value.split(",") if part.strip()}


def _matches(value: str, etag: str) -> bool:
    tags = _etags(value)
    return "*" in tags or etag in tags


def _date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def evaluate(headers: Mapping[str, str], etag: str, last_modified: dt.datetime,
             prefix: str = "if-") -> int | None:
    """None to go on, NOT_MODIFIED (304), or PreconditionFailed raised.

    ``headers`` must be looked up case-insensitively (aiohttp's are). ``prefix`` is
    ``"x-amz-copy-source-if-"`` for CopyObject, where a 304 case is a 412 too.
    """
    modified = last_modified.replace(microsecond=0)
    if_match = headers.get(f"{prefix}match")
    if if_match is not None:
        if not _matches(if_match, etag):
            raise PreconditionFailed(resource=None)
    else:
        since = _date(headers.get(f"{prefix}unmodified-since"))
        if since is not None and modified > since:
            raise PreconditionFailed(resource=None)
    if_none_match = headers.get(f"{prefix}none-match")
    not_modified = False
    if if_none_match is not None:
        not_modified = _matches(if_none_match, etag)
    else:
        since = _date(headers.get(f"{prefix}modified-since"))
        not_modified = since is not None and modified <= since
    if not_modified:
        if prefix != "if-":
            raise PreconditionFailed(resource=None)
        return NOT_MODIFIED
    return None
