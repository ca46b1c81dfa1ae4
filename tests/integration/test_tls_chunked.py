"""Over HTTPS, boto3 and awscli send aws-chunked bodies with checksum trailers: they decode,
verify, and the framing is never stored as data."""

from __future__ import annotations

import hashlib
import os
import subprocess

import boto3
import pytest
from botocore.config import Config

from blobstore.testing.processes import Cluster

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("tls"), meta=1, storage=6, gateway=1,
                 tls=True) as running:
        yield running


def client(cluster: Cluster):
    return boto3.client(
        "s3", endpoint_url=cluster.endpoint, region_name="us-east-1",
        aws_access_key_id=cluster.credentials.access_key,
        aws_secret_access_key=cluster.credentials.secret_key,
        verify=cluster.config.tls_cert_file,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def test_boto3_streams_aws_chunked_with_a_crc_trailer(tls_cluster):
    assert tls_cluster.endpoint.startswith("https://")
    s3 = client(tls_cluster)
    sent: list[dict[str, str]] = []
    s3.meta.events.register("before-send.s3.PutObject",
                            lambda request, **_: sent.append(dict(request.headers)))
    s3.create_bucket(Bucket="chunky")
    for size in (0, 1, 70_000, 9 * MIB + 5):
        data = os.urandom(size)
        s3.put_object(Bucket="chunky", Key=f"k{size}", Body=data)
        got = s3.get_object(Bucket="chunky", Key=f"k{size}")
        assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(data).digest()
        assert got["ContentLength"] == size
        assert "ContentEncoding" not in got  # aws-chunked is framing, not the object's
    kinds = {headers.get("X-Amz-Content-SHA256", headers.get("x-amz-content-sha256"))
             for headers in sent}
    kinds = {k.decode() if isinstance(k, bytes) else k for k in kinds}
    assert "STREAMING-UNSIGNED-PAYLOAD-TRAILER" in kinds, kinds


def test_awscli_cp_over_tls(tls_cluster, tmp_path):
    s3 = client(tls_cluster)
    s3.create_bucket(Bucket="cli-tls")
    source = tmp_path / "file.bin"
    source.write_bytes(os.urandom(3 * MIB + 11))
    env = dict(os.environ, AWS_ACCESS_KEY_ID=tls_cluster.credentials.access_key,
               AWS_SECRET_ACCESS_KEY=tls_cluster.credentials.secret_key,
               AWS_DEFAULT_REGION="us-east-1", AWS_CA_BUNDLE=tls_cluster.config.tls_cert_file)
    for args in (["cp", str(source), "s3://cli-tls/file.bin"],
                 ["cp", "s3://cli-tls/file.bin", str(tmp_path / "back.bin")]):
        result = subprocess.run(["aws", "--endpoint-url", tls_cluster.endpoint, "s3", *args],
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()


def send_chunked(cluster: Cluster, key: str, wire: bytes, decoded_length: int) -> int:
    """PUT a hand-made aws-chunked body (signed headers, unsigned trailer form)."""
    import datetime
    import http.client
    import ssl

    from blobstore.core.s3 import sigv4

    address = cluster.config.by_role("gateway")[0].address
    headers = {"host": address, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(decoded_length),
               "x-amz-trailer": "x-amz-checksum-crc32"}
    headers.update(sigv4.sign_headers(
        "PUT", f"/tamper/{key}", [], headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        cluster.credentials.access_key, cluster.credentials.secret_key, "us-east-1",
        datetime.datetime.now(datetime.UTC)))
    headers["content-length"] = str(len(wire))
    context = ssl.create_default_context(cafile=cluster.config.tls_cert_file)
    host, port = address.split(":")
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    try:
        connection.request("PUT", f"/tamper/{key}", body=wire, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_chunked_bodies_with_bad_trailers_or_framing_store_nothing(tls_cluster):
    import base64
    import zlib

    s3 = client(tls_cluster)
    s3.create_bucket(Bucket="tamper")
    data = b"hello chunks" * 1000
    good_crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))
    framed = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n"
    assert send_chunked(tls_cluster, "good", framed + b"x-amz-checksum-crc32:" + good_crc +
                        b"\r\n\r\n", len(data)) == 200
    assert s3.get_object(Bucket="tamper", Key="good")["Body"].read() == data
    bad_crc = framed + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    assert send_chunked(tls_cluster, "bad-crc", bad_crc, len(data)) == 400
    truncated = framed[:-8]
    assert send_chunked(tls_cluster, "truncated", truncated, len(data)) == 400
    garbage = b"zz\r\n" + data + b"\r\n0\r\n\r\n"
    assert send_chunked(tls_cluster, "garbage", garbage, len(data)) == 400
    keys = [c["Key"] for c in s3.list_objects_v2(Bucket="tamper").get("Contents", [])]
    assert keys == ["good"]
