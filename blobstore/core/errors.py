"""Domain errors, typed by cause.

Every error that crosses a process boundary carries a stable ``code`` string; the internal
RPC layer sends ``{"error": {"code", "message"}}`` and the receiving client re-raises the
same class via :func:`error_from_code`. The S3 gateway maps these classes to S3 error codes
in one table (``core/s3/errors.py``); nothing else translates errors.
"""

from __future__ import annotations


class BlobstoreError(Exception):
    """Base of every error we raise on purpose. ``code`` is stable on the wire."""

    code = "InternalError"
    http_status = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()


class Invalid(BlobstoreError):
    """The request is malformed or names something that cannot exist."""

    code = "Invalid"
    http_status = 400


class NotFound(BlobstoreError):
    """The thing asked for does not exist."""

    code = "NotFound"
    http_status = 404


class NoSuchBucket(NotFound):
    """The specified bucket does not exist."""

    code = "NoSuchBucket"


class NoSuchKey(NotFound):
    """The specified key does not exist."""

    code = "NoSuchKey"


class NoSuchShard(NotFound):
    """The shard is not on this node."""

    code = "NoSuchShard"


class NoSuchUpload(NotFound):
    """The specified multipart upload does not exist."""

    code = "NoSuchUpload"


class InvalidPart(Invalid):
    """One or more of the specified parts could not be found or its ETag did not match."""

    code = "InvalidPart"


class InvalidPartOrder(Invalid):
    """The list of parts was not in ascending order."""

    code = "InvalidPartOrder"


class EntityTooSmall(Invalid):
    """A part other than the last is smaller than the minimum part size."""

    code = "EntityTooSmall"


class Conflict(BlobstoreError):
    """The request conflicts with the current state."""

    code = "Conflict"
    http_status = 409


class BucketAlreadyExists(Conflict):
    """The requested bucket name is not available."""

    code = "BucketAlreadyOwnedByYou"


class BucketNotEmpty(Conflict):
    """The bucket you tried to delete is not empty."""

    code = "BucketNotEmpty"


class Corrupt(BlobstoreError):
    """Stored bytes do not match their checksum."""

    code = "Corrupt"
    http_status = 422


class Unavailable(BlobstoreError):
    """Not enough healthy nodes or replicas to serve the request now; retry later."""

    code = "Unavailable"
    http_status = 503


class InsufficientStorage(BlobstoreError):
    """The node has no room for this write."""

    code = "InsufficientStorage"
    http_status = 507


class Unauthorized(BlobstoreError):
    """The internal request is not signed with the cluster secret."""

    code = "Unauthorized"
    http_status = 401


class UnknownAccessKey(NotFound):
    """The access key is not known to the cluster."""

    code = "UnknownAccessKey"


def _all_subclasses(cls: type[BlobstoreError]) -> list[type[BlobstoreError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_from_code(code: str, message: str) -> BlobstoreError:
    """Rebuild the typed error a peer sent; unknown codes become a plain BlobstoreError."""
    for cls in _all_subclasses(BlobstoreError):
        if cls.code == code:
            return cls(message)
    err = BlobstoreError(message)
    err.code = code
    return err
