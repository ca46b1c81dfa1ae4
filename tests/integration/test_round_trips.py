"""boto3 round trips through a real cluster, compared by SHA-256; ranges at segment edges."""

from __future__ import annotations

import hashlib
import os

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def bucket(s3):
    s3.create_bucket(Bucket="round-trips")
    return "round-trips"


def test_sizes_around_the_segment_size_round_trip(cluster, s3, bucket):
    segment = cluster.config.segment_size_bytes
    for size in (0, 1, segment - 1, segment, segment + 1, 100 * MIB):
        data = os.urandom(size)
        put = s3.put_object(Bucket=bucket, Key=f"size/{size}", Body=data)
        assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        got = s3.get_object(Bucket=bucket, Key=f"size/{size}")
        body = got["Body"].read()
        assert got["ContentLength"] == size
        assert sha(body) == sha(data), f"size {size}"
        head = s3.head_object(Bucket=bucket, Key=f"size/{size}")
        assert head["ContentLength"] == size and head["ETag"] == put["ETag"]


def test_range_gets_at_segment_boundaries(cluster, s3, bucket):
    segment = cluster.config.segment_size_bytes
    size = 3 * segment + 5
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="ranges", Body=data)
    cases = [(0, 0), (segment - 1, segment - 1), (segment - 1, segment), (segment, segment),
             (0, segment - 1), (segment, 2 * segment - 1), (segment - 3, 2 * segment + 3),
             (2 * segment - 2, size - 1), (size - 1, size - 1), (1, size - 2)]
    shard = segment // cluster.config.data_shards
    cases += [(shard - 1, shard), (shard, 3 * shard - 1), (segment + shard - 1, segment + shard)]
    for first, last in cases:
        got = s3.get_object(Bucket=bucket, Key="ranges", Range=f"bytes={first}-{last}")
        assert got["ContentRange"] == f"bytes {first}-{last}/{size}"
        assert got["Body"].read() == data[first:last + 1], (first, last)
    assert s3.get_object(Bucket=bucket, Key="ranges", Range="bytes=-7")["Body"].read() == data[-7:]
    tail = s3.get_object(Bucket=bucket, Key="ranges", Range=f"bytes={segment}-")["Body"].read()
    assert tail == data[segment:]
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="ranges", Range=f"bytes={size}-")
    assert info.value.response["Error"]["Code"] == "InvalidRange"


def test_overwrite_replaces_and_delete_removes(s3, bucket):
    s3.put_object(Bucket=bucket, Key="over", Body=b"first version")
    s3.put_object(Bucket=bucket, Key="over", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="over")["Body"].read() == b"second"
    s3.delete_object(Bucket=bucket, Key="over")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="over")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"


def test_identical_content_is_stored_once_and_survives_one_delete(s3, bucket):
    data = os.urandom(5 * MIB)
    s3.put_object(Bucket=bucket, Key="dedup/a", Body=data)
    s3.put_object(Bucket=bucket, Key="dedup/b", Body=data)
    s3.delete_object(Bucket=bucket, Key="dedup/a")
    assert sha(s3.get_object(Bucket=bucket, Key="dedup/b")["Body"].read()) == sha(data)


def test_metadata_and_content_type_come_back(s3, bucket):
    s3.put_object(Bucket=bucket, Key="meta", Body=b"x", ContentType="text/plain",
                  Metadata={"colour": "blue"})
    head = s3.head_object(Bucket=bucket, Key="meta")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"colour": "blue"}


def test_list_objects_v2_prefix_delimiter_and_pages(s3):
    s3.create_bucket(Bucket="listing")
    keys = [f"dir{d}/file{f:02d}" for d in range(3) for f in range(7)] + ["top", "zeta/x"]
    for key in keys:
        s3.put_object(Bucket="listing", Key=key, Body=key.encode())
    seen, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket="listing", MaxKeys=4, **kwargs)
        seen += [c["Key"] for c in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == sorted(keys)
    page = s3.list_objects_v2(Bucket="listing", Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["dir0/", "dir1/", "dir2/", "zeta/"]
    assert [c["Key"] for c in page["Contents"]] == ["top"]
    page = s3.list_objects_v2(Bucket="listing", Prefix="dir1/", MaxKeys=100)
    assert len(page["Contents"]) == 7
    prefixes, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket="listing", Delimiter="/", MaxKeys=2, **kwargs)
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert prefixes == ["dir0/", "dir1/", "dir2/", "zeta/"]


def test_bucket_lifecycle(s3):
    s3.create_bucket(Bucket="lifecycle")
    s3.head_bucket(Bucket="lifecycle")
    assert "lifecycle" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.put_object(Bucket="lifecycle", Key="k", Body=b"v")
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket="lifecycle")
    assert info.value.response["Error"]["Code"] == "BucketNotEmpty"
    s3.delete_object(Bucket="lifecycle", Key="k")
    s3.delete_bucket(Bucket="lifecycle")
    assert "lifecycle" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
