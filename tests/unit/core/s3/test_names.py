"""Bucket and key names: a table of what S3 accepts and refuses."""

from __future__ import annotations

import pytest

from blobstore.core.s3 import errors, names

GOOD_BUCKETS = [
    "abc",
    "a" * 63,
    "my-bucket",
    "my.bucket.name",
    "1bucket",
    "bucket1",
    "a-b.c-d",
    "192.168.5.4x",
    "xn-ok",
    "docexamplebucket1",
]

BAD_BUCKETS = {
    "ab": "between",
    "a" * 64: "between",
    "": "between",
    "My-Bucket": "lowercase",
    "my_bucket": "lowercase",
    "-bucket": "begin and end",
    "bucket-": "begin and end",
    ".bucket": "begin and end",
    "bucket.": "begin and end",
    "my..bucket": "begin and end",
    "my.-bucket": "begin and end",
    "my-.bucket": "begin and end",
    "my bucket": "lowercase",
    "bücket": "lowercase",
    "192.168.5.4": "IP address",
    "1.2.3.4": "IP address",
    "xn--bucket": "reserved",
    "sthree-bucket": "reserved",
    "bucket-s3alias": "reserved",
    "bucket--ol-s3": "reserved",
    "bucket.mrap": "reserved",
    "bucket--x-s3": "reserved",
    "_blobstore": "cannot start with '_'",
    "_bucket": "cannot start with '_'",
    "abc\n": "lowercase",
}


@pytest.mark.parametrize("name", GOOD_BUCKETS)
def test_good_bucket_names(name: str) -> None:
    assert names.validate_bucket_name(name) == name


@pytest.mark.parametrize("name", sorted(BAD_BUCKETS))
def test_bad_bucket_names(name: str) -> None:
    with pytest.raises(errors.InvalidBucketName, match=BAD_BUCKETS[name]) as caught:
        names.validate_bucket_name(name)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "key",
    ["k", "a/b/c", "/leading", "a b+c=d&e", "ü" * 512, "x" * 1024, "tab\tand\x01ctl", " ", "../.."],
)
def test_good_keys(key: str) -> None:
    assert names.validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", errors.InvalidArgument),
        ("a\x00b", errors.InvalidArgument),
        ("\udcff", errors.InvalidArgument),
        ("x" * 1025, errors.KeyTooLongError),
        ("ü" * 513, errors.KeyTooLongError),
    ],
)
def test_bad_keys(key: str, error: type[errors.S3Error]) -> None:
    with pytest.raises(error):
        names.validate_key(key)


def test_key_too_long_says_how_long() -> None:
    with pytest.raises(errors.KeyTooLongError) as caught:
        names.validate_key("é" * 600)
    assert dict(caught.value.extra) == {"Size": "1200", "MaxSizeAllowed": "1024"}
