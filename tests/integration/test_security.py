"""Nobody without a key gets in; internal RPC refuses anything not signed with the secret."""

from __future__ import annotations

import datetime
import hashlib
import http.client
import urllib.error
import urllib.request

import pytest

from blobstore.core.s3 import sigv4

pytestmark = pytest.mark.integration


def signed_request(cluster, method: str, path: str, body: bytes = b"", *,
                   now: datetime.datetime | None = None, payload_hash: str | None = None,
                   extra: dict[str, str] | None = None) -> tuple[int, bytes]:
    address = cluster.config.by_role("gateway")[0].address
    headers = {"host": address, **(extra or {})}
    headers.update(sigv4.sign_headers(
        method, path, [], headers, payload_hash or hashlib.sha256(body).hexdigest(),
        cluster.credentials.access_key, cluster.credentials.secret_key, "us-east-1",
        now or datetime.datetime.now(datetime.UTC)))
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def bucket(s3):
    s3.create_bucket(Bucket="secure")
    return "secure"


def test_skewed_clock_is_refused(cluster, bucket):
    late = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)
    status, body = signed_request(cluster, "PUT", "/secure/skewed", b"data", now=late)
    assert status == 403 and b"RequestTimeTooSkewed" in body
    status, _ = signed_request(cluster, "GET", "/secure/skewed")
    assert status == 404


def test_expired_presigned_url_is_refused(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="pre", Body=b"secret")
    issued = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=120)
    url = sigv4.presign_url("GET", f"{cluster.endpoint}/secure/pre",
                            cluster.credentials.access_key, cluster.credentials.secret_key,
                            "us-east-1", issued, expires_s=60)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=30)
    assert info.value.code == 403
    fresh = sigv4.presign_url("GET", f"{cluster.endpoint}/secure/pre",
                              cluster.credentials.access_key, cluster.credentials.secret_key,
                              "us-east-1", datetime.datetime.now(datetime.UTC), expires_s=60)
    with urllib.request.urlopen(fresh, timeout=30) as response:
        assert response.read() == b"secret"


def test_body_not_matching_its_signed_hash_is_not_stored(cluster, bucket):
    claimed = hashlib.sha256(b"what was signed").hexdigest()
    status, body = signed_request(cluster, "PUT", "/secure/mismatch", b"what was sent",
                                  payload_hash=claimed)
    assert status == 400 and b"XAmzContentSHA256Mismatch" in body
    status, _ = signed_request(cluster, "GET", "/secure/mismatch")
    assert status == 404


def test_a_wrong_checksum_header_is_bad_digest(cluster, bucket):
    status, body = signed_request(cluster, "PUT", "/secure/crc", b"payload",
                                  extra={"x-amz-checksum-crc32": "AAAAAA=="})
    assert status == 400 and b"BadDigest" in body
    status, _ = signed_request(cluster, "GET", "/secure/crc")
    assert status == 404


def test_oversized_headers_are_refused(cluster, bucket):
    status, _ = signed_request(cluster, "GET", "/secure/pre", extra={"x-amz-meta-big": "x" * 70000})
    assert status in (400, 431)


@pytest.mark.parametrize("role, path", [("storage", "/v1/shards"), ("storage", "/v1/status"),
                                         ("meta", "/v1/buckets"), ("meta", "/v1/status"),
                                         ("meta", "/v1/cluster_map")])
def test_internal_rpc_without_the_cluster_secret_is_refused(cluster, role, path):
    node = cluster.config.by_role(role)[0]
    for headers in ({}, {"X-Blobstore-Auth": "1700000000:" + "0" * 64}):
        request = urllib.request.Request(f"http://{node.address}{path}", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=30)
        assert info.value.code == 401


def test_storage_refuses_a_shard_id_that_is_a_path(cluster):
    import time

    from blobstore.rpc.auth import AUTH_HEADER, sign

    node = cluster.config.by_role("storage")[0]
    for shard in ("..%2F..%2Fx", "x", "a" * 64 + ".999", "..."):
        path = f"/v1/shards/{shard}"
        request = urllib.request.Request(
            f"http://{node.address}{path}", data=b"x", method="PUT",
            headers={AUTH_HEADER: sign(cluster.config.secret, "PUT", path, time.time())})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=30)
        assert info.value.code in (400, 404), shard
