"""Multipart uploads with boto3: parts, completion ETag, listing, abort, UploadPartCopy."""

from __future__ import annotations

import hashlib
import os

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def bucket(s3):
    s3.create_bucket(Bucket="multi")
    return "multi"


def test_low_level_multipart_round_trip(s3, bucket):
    parts_data = [os.urandom(5 * MIB), os.urandom(5 * MIB + 7), os.urandom(1234)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp/object", ContentType="text/x-mp",
                                        Metadata={"m": "1"})
    upload_id = upload["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("mp/object", upload_id)]
    etags = []
    for number, data in enumerate(parts_data, start=1):
        answer = s3.upload_part(Bucket=bucket, Key="mp/object", UploadId=upload_id,
                                PartNumber=number, Body=data)
        etags.append(answer["ETag"])
    parts = s3.list_parts(Bucket=bucket, Key="mp/object", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MIB), (2, 5 * MIB + 7),
                                                              (3, 1234)]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp/object", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                   for n, e in enumerate(etags, start=1)]})
    md5s = b"".join(hashlib.md5(d).digest() for d in parts_data)
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    body = s3.get_object(Bucket=bucket, Key="mp/object")
    assert body["Body"].read() == b"".join(parts_data)
    assert body["ContentType"] == "text/x-mp" and body["Metadata"] == {"m": "1"}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    middle = s3.get_object(Bucket=bucket, Key="mp/object", Range=f"bytes={5 * MIB - 2}-{5 * MIB + 2}")
    assert middle["Body"].read() == (b"".join(parts_data))[5 * MIB - 2:5 * MIB + 3]


def test_small_non_last_part_and_bad_etag_are_refused(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp/bad")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="mp/bad", UploadId=upload_id, PartNumber=1,
                        Body=b"tiny")["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp/bad", UploadId=upload_id, PartNumber=2,
                        Body=b"also tiny")["ETag"]
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp/bad", UploadId=upload_id,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                                {"PartNumber": 2, "ETag": e2}]})
    assert info.value.response["Error"]["Code"] == "EntityTooSmall"
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp/bad", UploadId=upload_id,
                                     MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                 "ETag": '"' + "0" * 32 + '"'}]})
    assert info.value.response["Error"]["Code"] == "InvalidPart"
    s3.abort_multipart_upload(Bucket=bucket, Key="mp/bad", UploadId=upload_id)
    with pytest.raises(ClientError) as info:
        s3.list_parts(Bucket=bucket, Key="mp/bad", UploadId=upload_id)
    assert info.value.response["Error"]["Code"] == "NoSuchUpload"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="mp/bad")


def test_transfer_manager_multipart_and_upload_part_copy(s3, bucket, tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(23 * MIB + 5))
    config = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB)
    s3.upload_file(str(source), bucket, "mp/managed", Config=config)
    head = s3.head_object(Bucket=bucket, Key="mp/managed")
    assert head["ETag"].endswith('-3"') and head["ContentLength"] == source.stat().st_size
    s3.download_file(bucket, "mp/managed", str(tmp_path / "back.bin"), Config=config)
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp/copied")["UploadId"]
    first = s3.upload_part_copy(Bucket=bucket, Key="mp/copied", UploadId=upload_id, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "mp/managed"},
                                CopySourceRange=f"bytes=0-{6 * MIB - 1}")
    second = s3.upload_part_copy(Bucket=bucket, Key="mp/copied", UploadId=upload_id,
                                 PartNumber=2, CopySource={"Bucket": bucket, "Key": "mp/managed"},
                                 CopySourceRange=f"bytes={20 * MIB}-{23 * MIB + 4}")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp/copied", UploadId=upload_id,
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
                                     {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]})
    data = source.read_bytes()
    assert s3.get_object(Bucket=bucket, Key="mp/copied")["Body"].read() == \
        data[:6 * MIB] + data[20 * MIB:]
