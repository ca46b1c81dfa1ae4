"""The one table of S3 error codes: one class per code, with its HTTP status and message.

Rules:
1. Code in ``core/s3`` raises a subclass of :class:`S3Error`; the gateway's one middleware
   renders it with :func:`blobstore.core.s3.xml.render_error` and ``status``. Nothing else
   chooses an S3 code or status.
2. A class is declared as ``class Code(S3Error, code="Code", status=NNN)`` and its docstring
   is the default message, word for word what S3 says where we know it (clients and people
   search for these strings).
3. Domain errors (``blobstore.core.errors``) become S3 errors in :func:`from_domain` only.
   The most specific class in the domain error's MRO that the table names wins, so a new
   domain subclass inherits its parent's S3 code; anything unnamed is ``InternalError``.
   5xx answers and key lookups keep the S3 default message, so internal detail does not
   leak to clients.
4. ``extra`` holds the additional elements S3 puts in some error documents (``Region``,
   ``StringToSign``, ``ActualObjectSize``, ...); they are rendered after ``Message``.

Every class is named after its S3 code, except :class:`S3NotImplemented` (code
``NotImplemented``), which would otherwise shadow the Python builtin.
"""

from __future__ import annotations

from typing import Any, ClassVar

from blobstore.core import errors as domain


class S3Error(Exception):
    """We encountered an internal error. Please try again."""

    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "We encountered an internal error. Please try again."

    def __init_subclass__(cls, *, code: str, status: int, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        assert cls.__doc__, f"{cls.__name__} needs a docstring: it is the default message"
        cls.code = code
        cls.status = status
        cls.default_message = " ".join(cls.__doc__.split())

    def __init__(
        self,
        message: str | None = None,
        *,
        resource: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.message = message or self.default_message
        self.resource = resource
        self.extra = extra
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


# -- 4xx: authentication -------------------------------------------------------------------


class AccessDenied(S3Error, code="AccessDenied", status=403):
    """Access Denied"""


class SignatureDoesNotMatch(S3Error, code="SignatureDoesNotMatch", status=403):
    """The request signature we calculated does not match the signature you provided.
    Check your key and signing method."""


class InvalidAccessKeyId(S3Error, code="InvalidAccessKeyId", status=403):
    """The AWS Access Key Id you provided does not exist in our records."""


class RequestTimeTooSkewed(S3Error, code="RequestTimeTooSkewed", status=403):
    """The difference between the request time and the current time is too large."""


class AuthorizationHeaderMalformed(S3Error, code="AuthorizationHeaderMalformed", status=400):
    """The authorization header is malformed."""


class AuthorizationQueryParametersError(
    S3Error, code="AuthorizationQueryParametersError", status=400
):
    """The authorization query parameters are malformed."""


class MissingSecurityHeader(S3Error, code="MissingSecurityHeader", status=400):
    """Your request was missing a required header."""


# -- 4xx: the request itself ---------------------------------------------------------------


class InvalidBucketName(S3Error, code="InvalidBucketName", status=400):
    """The specified bucket is not valid."""


class KeyTooLongError(S3Error, code="KeyTooLongError", status=400):
    """Your key is too long."""


class InvalidArgument(S3Error, code="InvalidArgument", status=400):
    """Invalid Argument"""


class InvalidRequest(S3Error, code="InvalidRequest", status=400):
    """Invalid Request"""


class MalformedXML(S3Error, code="MalformedXML", status=400):
    """The XML you provided was not well-formed or did not validate against our published
    schema."""


class InvalidDigest(S3Error, code="InvalidDigest", status=400):
    """The Content-MD5 you specified is not valid."""


class BadDigest(S3Error, code="BadDigest", status=400):
    """The Content-MD5 you specified did not match what we received."""


class XAmzContentSHA256Mismatch(S3Error, code="XAmzContentSHA256Mismatch", status=400):
    """The provided 'x-amz-content-sha256' header does not match what was computed."""


class IncompleteBody(S3Error, code="IncompleteBody", status=400):
    """You did not provide the number of bytes specified by the Content-Length HTTP header."""


class InvalidRange(S3Error, code="InvalidRange", status=416):
    """The requested range is not satisfiable"""


class EntityTooLarge(S3Error, code="EntityTooLarge", status=400):
    """Your proposed upload exceeds the maximum allowed size"""


class EntityTooSmall(S3Error, code="EntityTooSmall", status=400):
    """Your proposed upload is smaller than the minimum allowed object size."""


class MissingContentLength(S3Error, code="MissingContentLength", status=411):
    """You must provide the Content-Length HTTP header."""


class RequestHeaderSectionTooLarge(S3Error, code="RequestHeaderSectionTooLarge", status=400):
    """Your request header section exceeds the maximum allowed size."""


class InvalidPart(S3Error, code="InvalidPart", status=400):
    """One or more of the specified parts could not be found. The part may not have been
    uploaded, or the specified entity tag may not match the part's entity tag."""


class InvalidPartOrder(S3Error, code="InvalidPartOrder", status=400):
    """The list of parts was not in ascending order. Parts must be ordered by part number."""


class MethodNotAllowed(S3Error, code="MethodNotAllowed", status=405):
    """The specified method is not allowed against this resource."""


class PreconditionFailed(S3Error, code="PreconditionFailed", status=412):
    """At least one of the pre-conditions you specified did not hold"""


# -- 4xx: state ----------------------------------------------------------------------------


class NoSuchBucket(S3Error, code="NoSuchBucket", status=404):
    """The specified bucket does not exist"""


class NoSuchKey(S3Error, code="NoSuchKey", status=404):
    """The specified key does not exist."""


class NoSuchUpload(S3Error, code="NoSuchUpload", status=404):
    """The specified multipart upload does not exist. The upload ID might be invalid, or the
    multipart upload might have been aborted or completed."""


class BucketAlreadyOwnedByYou(S3Error, code="BucketAlreadyOwnedByYou", status=409):
    """Your previous request to create the named bucket succeeded and you already own it."""


class BucketNotEmpty(S3Error, code="BucketNotEmpty", status=409):
    """The bucket you tried to delete is not empty"""


# -- 5xx -----------------------------------------------------------------------------------


class InternalError(S3Error, code="InternalError", status=500):
    """We encountered an internal error. Please try again."""


class S3NotImplemented(S3Error, code="NotImplemented", status=501):
    """A header you provided implies functionality that is not implemented"""


class ServiceUnavailable(S3Error, code="ServiceUnavailable", status=503):
    """Please reduce your request rate."""


class SlowDown(S3Error, code="SlowDown", status=503):
    """Please reduce your request rate."""


def _by_code() -> dict[str, type[S3Error]]:
    table: dict[str, type[S3Error]] = {}
    for cls in S3Error.__subclasses__():
        assert cls.code not in table, f"two classes for S3 code {cls.code}"
        table[cls.code] = cls
    return table


BY_CODE: dict[str, type[S3Error]] = _by_code()
"""S3 code -> class: for clients (our CLI) turning an ``<Error>`` document back into a class."""

# Domain class -> (S3 class, keep the domain message). Looked up along the MRO, so order
# here does not matter.
_FROM_DOMAIN: dict[type[domain.BlobstoreError], tuple[type[S3Error], bool]] = {
    domain.NoSuchBucket: (NoSuchBucket, False),
    domain.NoSuchKey: (NoSuchKey, False),
    domain.NoSuchUpload: (NoSuchUpload, False),
    domain.InvalidPart: (InvalidPart, True),
    domain.InvalidPartOrder: (InvalidPartOrder, True),
    domain.EntityTooSmall: (EntityTooSmall, True),
    domain.BucketAlreadyExists: (BucketAlreadyOwnedByYou, False),
    domain.BucketNotEmpty: (BucketNotEmpty, False),
    domain.Invalid: (InvalidArgument, True),
    domain.UnknownAccessKey: (InvalidAccessKeyId, False),
    domain.Unavailable: (ServiceUnavailable, False),
    # A conflict that reaches a client is a race with background work (a segment being
    # garbage-collected while an upload references it): retryable, so 503, not 500.
    domain.Conflict: (ServiceUnavailable, False),
    domain.InsufficientStorage: (ServiceUnavailable, False),
    domain.Corrupt: (InternalError, False),
}


def from_domain(error: domain.BlobstoreError) -> S3Error:
    """The S3 error a client sees for ``error``; ``error`` is chained as its ``__cause__``."""
    s3_class: type[S3Error] = InternalError
    keep_message = False
    for cls in type(error).__mro__:
        if cls in _FROM_DOMAIN:
            s3_class, keep_message = _FROM_DOMAIN[cls]
            break
    result = s3_class(error.message if keep_message else None)
    result.__cause__ = error
    return result
