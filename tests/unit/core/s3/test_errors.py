"""The S3 error table: every code we promised, its status, and the domain mapping."""

from __future__ import annotations

import pytest

from blobstore.core import errors as domain
from blobstore.core.s3 import errors

EXPECTED_STATUS = {
    "AccessDenied": 403,
    "SignatureDoesNotMatch": 403,
    "InvalidAccessKeyId": 403,
    "RequestTimeTooSkewed": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "MissingSecurityHeader": 400,
    "InvalidBucketName": 400,
    "KeyTooLongError": 400,
    "InvalidArgument": 400,
    "InvalidRequest": 400,
    "MalformedXML": 400,
    "InvalidDigest": 400,
    "BadDigest": 400,
    "XAmzContentSHA256Mismatch": 400,
    "IncompleteBody": 400,
    "InvalidRange": 416,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "MethodNotAllowed": 405,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "SlowDown": 503,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "MissingContentLength": 411,
    "RequestHeaderSectionTooLarge": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
}


def test_every_code_has_its_status() -> None:
    assert {code: cls.status for code, cls in errors.BY_CODE.items()} == EXPECTED_STATUS


@pytest.mark.parametrize("code", sorted(EXPECTED_STATUS))
def test_class_is_named_after_its_code(code: str) -> None:
    cls = errors.BY_CODE[code]
    assert cls.__name__ in (code, f"S3{code}")
    assert getattr(errors, cls.__name__) is cls
    error = cls()
    assert error.code == code
    assert error.message == cls.default_message
    assert "\n" not in error.message and "  " not in error.message
    assert str(error) == error.message


def test_message_resource_and_extra() -> None:
    error = errors.NoSuchKey("gone", resource="/b/k", extra=(("Key", "k"),))
    assert (error.message, error.resource, error.extra) == ("gone", "/b/k", (("Key", "k"),))
    assert repr(error) == "NoSuchKey('gone')"
    assert isinstance(error, errors.S3Error)


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        (domain.NoSuchBucket("no bucket b"), errors.NoSuchBucket, None),
        (domain.NoSuchKey(), errors.NoSuchKey, None),
        (domain.BucketAlreadyExists(), errors.BucketAlreadyOwnedByYou, None),
        (domain.BucketNotEmpty(), errors.BucketNotEmpty, None),
        (domain.Unavailable("2 of 6 shards"), errors.ServiceUnavailable, None),
        (domain.InsufficientStorage(), errors.ServiceUnavailable, None),
        (domain.Invalid("part number 0"), errors.InvalidArgument, "part number 0"),
        (domain.UnknownAccessKey("AK"), errors.InvalidAccessKeyId, None),
        (domain.Corrupt("shard 3 of /srv/x"), errors.InternalError, None),
        (domain.NotFound(), errors.InternalError, None),
        (domain.NoSuchShard(), errors.InternalError, None),
        (domain.Unauthorized(), errors.InternalError, None),
        (domain.Conflict(), errors.ServiceUnavailable, None),
        (domain.BlobstoreError("boom"), errors.InternalError, None),
        (domain.error_from_code("SomethingNew", "x"), errors.InternalError, None),
    ],
)
def test_from_domain(
    error: domain.BlobstoreError, expected: type[errors.S3Error], message: str | None
) -> None:
    result = errors.from_domain(error)
    assert type(result) is expected
    assert result.message == (message or expected.default_message)
    assert result.__cause__ is error


def test_domain_subclass_inherits_parent_mapping() -> None:
    class DeeperKey(domain.NoSuchKey):
        pass

    assert type(errors.from_domain(DeeperKey())) is errors.NoSuchKey
