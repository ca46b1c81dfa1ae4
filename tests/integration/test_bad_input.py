"""Bad input answers the right S3 error and changes nothing."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from .conftest import s3_client

pytestmark = pytest.mark.integration


def raw(cluster, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(cluster.endpoint + path, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def error_code(call) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def bucket(s3):
    s3.create_bucket(Bucket="guarded")
    s3.put_object(Bucket="guarded", Key="kept", Body=b"original")
    return "guarded"


def contents(s3, bucket):
    listing = s3.list_objects_v2(Bucket=bucket)
    return {c["Key"]: s3.get_object(Bucket=bucket, Key=c["Key"])["Body"].read()
            for c in listing.get("Contents", [])}


def test_unsigned_requests_are_refused_and_change_nothing(cluster, s3, bucket):
    before = contents(s3, bucket)
    for method, path, body in [("PUT", "/guarded/kept", b"overwritten"),
                               ("PUT", "/guarded/new", b"x"), ("DELETE", "/guarded/kept", None),
                               ("GET", "/guarded/kept", None), ("GET", "/", None),
                               ("PUT", "/unsigned-bucket", None)]:
        status, reply = raw(cluster, method, path, body)
        assert status == 403, (method, path)
        assert b"<Code>AccessDenied</Code>" in reply
    assert contents(s3, bucket) == before
    assert "unsigned-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_wrong_secret_is_signature_does_not_match(cluster, s3, bucket):
    before = contents(s3, bucket)
    intruder = s3_client(cluster, secret="not-the-secret-key-at-all")
    assert error_code(lambda: intruder.put_object(Bucket=bucket, Key="kept", Body=b"evil")) == \
        "SignatureDoesNotMatch"
    assert error_code(lambda: intruder.delete_object(Bucket=bucket, Key="kept")) == \
        "SignatureDoesNotMatch"
    assert error_code(lambda: intruder.create_bucket(Bucket="intruder")) == "SignatureDoesNotMatch"
    assert contents(s3, bucket) == before
    assert "intruder" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_unknown_access_key_is_invalid_access_key_id(cluster, bucket):
    import boto3
    from botocore.config import Config

    stranger = boto3.client("s3", endpoint_url=cluster.endpoint, region_name="us-east-1",
                            aws_access_key_id="AKNOBODY000000000000",
                            aws_secret_access_key="x" * 40,
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))
    assert error_code(lambda: stranger.list_buckets()) == "InvalidAccessKeyId"


def test_bad_bucket_names_are_refused(s3):
    before = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    for name in ("ab", "UPPER", "bad_underscore", "-leading", "a" * 64, "192.168.1.1", "a..b"):
        status_code = error_code(lambda name=name: s3.create_bucket(Bucket=name))
        assert status_code == "InvalidBucketName", name
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == before


def test_missing_key_and_bucket(s3, bucket):
    assert error_code(lambda: s3.get_object(Bucket=bucket, Key="absent")) == "NoSuchKey"
    assert error_code(lambda: s3.get_object(Bucket="no-such-bucket", Key="k")) == "NoSuchBucket"
    assert error_code(lambda: s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"x")) == \
        "NoSuchBucket"
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key="absent")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_body_that_does_not_match_its_digest_is_not_stored(cluster, s3, bucket):
    import base64
    import hashlib

    wrong_md5 = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    assert error_code(lambda: s3.put_object(Bucket=bucket, Key="kept", Body=b"tampered",
                                            ContentMD5=wrong_md5)) == "BadDigest"
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"original"
