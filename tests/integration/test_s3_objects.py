"""CopyObject, DeleteObjects, ListObjectVersions, conditionals and response overrides."""

from __future__ import annotations

import datetime
import os

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def bucket(s3):
    s3.create_bucket(Bucket="objects-ops")
    return "objects-ops"


def test_copy_object_copy_and_replace_metadata(s3, bucket):
    data = os.urandom(5 * MIB + 3)
    put = s3.put_object(Bucket=bucket, Key="src", Body=data, ContentType="text/x-src",
                        Metadata={"a": "1"})
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ContentType"] == "text/x-src" and head["Metadata"] == {"a": "1"}
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src",
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/plain")
    head = s3.head_object(Bucket=bucket, Key="dst2")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "text/plain"
    s3.delete_object(Bucket=bucket, Key="src")  # the copies hold their own references
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="dst2")["Body"].read() == data
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "dst"})
    assert info.value.response["Error"]["Code"] == "InvalidRequest"
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "absent"})
    assert info.value.response["Error"]["Code"] == "NoSuchKey"


def test_delete_objects(s3, bucket):
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"batch/{i}", Body=b"x")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "batch/0"}, {"Key": "batch/1", "VersionId": "null"}, {"Key": "batch/none"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["batch/0", "batch/1", "batch/none"]
    left = [c["Key"] for c in s3.list_objects_v2(Bucket=bucket, Prefix="batch/")["Contents"]]
    assert left == ["batch/2", "batch/3", "batch/4"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Quiet": True, "Objects": [
        {"Key": "batch/2"}, {"Key": "batch/3"}, {"Key": "batch/4"}]})
    assert "Deleted" not in quiet
    assert s3.list_objects_v2(Bucket=bucket, Prefix="batch/")["KeyCount"] == 0


def test_list_object_versions_shows_each_object_as_null(s3, bucket):
    s3.put_object(Bucket=bucket, Key="v/one", Body=b"1")
    s3.put_object(Bucket=bucket, Key="v/two", Body=b"22")
    versions = s3.list_object_versions(Bucket=bucket, Prefix="v/")["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in versions] == [
        ("v/one", "null", True, 1), ("v/two", "null", True, 2)]


def test_conditional_gets_and_response_overrides(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="cond", Body=b"conditional")
    etag = put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="cond", IfMatch=etag)["Body"].read() == b"conditional"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="cond", IfMatch='"0000"')
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="cond", IfNoneMatch=etag)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="cond", IfModifiedSince=future)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="cond", IfUnmodifiedSince=past)
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    got = s3.get_object(Bucket=bucket, Key="cond", ResponseContentType="text/x-override",
                        ResponseContentDisposition="attachment; filename=c.txt")
    assert got["ContentType"] == "text/x-override"
    assert got["ContentDisposition"] == "attachment; filename=c.txt"


def test_presigned_get_and_put(cluster, s3, bucket):
    import urllib.request

    import boto3
    from botocore.config import Config

    signer = boto3.client("s3", endpoint_url=cluster.endpoint, region_name="us-east-1",
                          aws_access_key_id=cluster.credentials.access_key,
                          aws_secret_access_key=cluster.credentials.secret_key,
                          config=Config(signature_version="s3v4",
                                        s3={"addressing_style": "path"}))
    url = signer.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre"},
                                        ExpiresIn=60)
    request = urllib.request.Request(url, data=b"presigned body", method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre"},
                                        ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"presigned body"


def test_small_objects_live_inline_and_behave_like_any_other(cluster, s3, bucket):
    """At most inline_max_bytes (16 KiB by default) an object is kept in its meta record:
    no shard on any storage node, yet ranges, copies, part copies and overwrites work."""
    import json

    limit = 16 * 1024
    small, large = os.urandom(limit), os.urandom(limit + 1)
    s3.put_object(Bucket=bucket, Key="inline/small", Body=small)
    s3.put_object(Bucket=bucket, Key="inline/large", Body=large)
    where = json.loads(cluster.cli("locate", "--json", f"s3://{bucket}/inline/small",
                                   check=True).stdout)
    assert where["inline"] and where["segments"] == []
    where = json.loads(cluster.cli("locate", "--json", f"s3://{bucket}/inline/large",
                                   check=True).stdout)
    assert not where["inline"] and len(where["segments"]) == 1
    assert s3.get_object(Bucket=bucket, Key="inline/small")["Body"].read() == small
    ranged = s3.get_object(Bucket=bucket, Key="inline/small", Range="bytes=100-199")
    assert ranged["Body"].read() == small[100:200]
    s3.copy_object(Bucket=bucket, Key="inline/copy", CopySource=f"{bucket}/inline/small")
    s3.put_object(Bucket=bucket, Key="inline/small", Body=b"replaced")
    assert s3.get_object(Bucket=bucket, Key="inline/copy")["Body"].read() == small
    assert s3.get_object(Bucket=bucket, Key="inline/small")["Body"].read() == b"replaced"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="inline/assembled")["UploadId"]
    part = s3.upload_part_copy(Bucket=bucket, Key="inline/assembled", UploadId=upload,
                               PartNumber=1, CopySource=f"{bucket}/inline/copy",
                               CopySourceRange="bytes=10-1009")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="inline/assembled", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1,
                                    "ETag": part["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="inline/assembled")["Body"].read() == small[10:1010]
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="no-such-bucket-here", Key="k", Body=b"tiny")
    assert info.value.response["Error"]["Code"] == "NoSuchBucket"
