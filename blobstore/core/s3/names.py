"""Bucket and key names: what S3 accepts, checked before a name reaches metadata or a URL.

Bucket names (S3's general-purpose bucket rules, which also keep every name usable as a
DNS label for virtual-host-style addressing):
1. 3 to 63 characters: lowercase ASCII letters, digits, ``.`` and ``-``.
2. Every dot-separated label starts and ends with a letter or digit (so no ``..``, ``.-``
   or ``-.``, and the name itself starts and ends with a letter or digit).
3. Not shaped like an IPv4 address (``192.168.5.4``).
4. None of the prefixes and suffixes AWS reserves: ``xn--``, ``sthree-``, ``-s3alias``,
   ``--ol-s3``, ``.mrap``, ``--x-s3``.
5. Never starting with ``_``: ``/_blobstore/`` is our own namespace (health, metrics,
   status page), and rule 1 already refuses it; the check is spelled out so that loosening
   rule 1 can never open that path to a bucket.

Keys: non-empty, at most 1024 bytes of UTF-8, no NUL (it ends strings in too many tools and
file systems). Anything else S3 accepts we accept, including control characters, which a
client should list with ``encoding-type=url``. A key that cannot be encoded as UTF-8 (a lone
surrogate from a lenient decoder) is refused.
"""

from __future__ import annotations

import re

from blobstore.core.s3.errors import InvalidArgument, InvalidBucketName, KeyTooLongError

MIN_BUCKET_NAME_LENGTH = 3
MAX_BUCKET_NAME_LENGTH = 63
MAX_KEY_LENGTH_BYTES = 1024
RESERVED_PREFIX = "_"

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_BUCKET_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_IPV4_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}", re.ASCII)
_RESERVED_PREFIXES = ("xn--", "sthree-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3")


def validate_bucket_name(name: str) -> str:
    """Return ``name`` if S3 allows it as a bucket name; raise InvalidBucketName otherwise."""
    if not isinstance(name, str):
        raise InvalidBucketName("The bucket name must be a string.")
    if name.startswith(RESERVED_PREFIX):
        raise InvalidBucketName(f"Bucket names cannot start with {RESERVED_PREFIX!r}.")
    if not MIN_BUCKET_NAME_LENGTH <= len(name) <= MAX_BUCKET_NAME_LENGTH:
        raise InvalidBucketName(
            f"Bucket names must be between {MIN_BUCKET_NAME_LENGTH} and "
            f"{MAX_BUCKET_NAME_LENGTH} characters long."
        )
    if not _BUCKET_RE.fullmatch(name):
        raise InvalidBucketName(
            "Bucket names can consist only of lowercase letters, numbers, dots and hyphens, "
            "and each dot-separated label must begin and end with a letter or number."
        )
    if _IPV4_RE.fullmatch(name):
        raise InvalidBucketName("Bucket names must not be formatted as an IP address.")
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        raise InvalidBucketName("The bucket name uses a reserved prefix or suffix.")
    return name


def validate_key(key: str) -> str:
    """Return ``key`` if S3 allows it as an object key; KeyTooLongError or InvalidArgument."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument("The object key must not be empty.")
    if "\x00" in key:
        raise InvalidArgument("Object keys must not contain the NUL character.")
    try:
        length_bytes = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument("Object keys must be valid UTF-8.") from None
    if length_bytes > MAX_KEY_LENGTH_BYTES:
        raise KeyTooLongError(
            f"Your key is too long: {length_bytes} bytes of UTF-8, the limit is "
            f"{MAX_KEY_LENGTH_BYTES}.",
            extra=(("Size", str(length_bytes)), ("MaxSizeAllowed", str(MAX_KEY_LENGTH_BYTES))),
        )
    return key
