"""Random S3 requests, correctly signed so they reach the handlers: never a 500, never a
hang, and objects they do not address are never changed."""

from __future__ import annotations

import datetime
import hashlib
import http.client
import os
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blobstore.core.s3 import sigv4

pytestmark = pytest.mark.integration

methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"])
buckets = st.sampled_from(["", "fuzz-bucket", "no-such-bucket", "Bad_Name", "ab", "x" * 70,
                           "fuzz-bucket/", "_blobstore"])
keys = st.one_of(st.just(""), st.text(min_size=1, max_size=40),
                 st.sampled_from(["..", "../x", "a//b", "%00", "k?x", "a+b", "\u00fc" * 600]))
query_names = st.sampled_from(["list-type", "prefix", "delimiter", "max-keys",
                               "continuation-token", "start-after", "uploads", "delete",
                               "versions", "location", "marker", "encoding-type", "uploadId",
                               "partNumber", "response-content-type", "fetch-owner", "acl"])
query_values = st.one_of(st.just(""), st.text(max_size=20), st.integers(-5, 5000).map(str))
header_names = st.sampled_from(["Range", "If-Match", "If-None-Match", "If-Modified-Since",
                                "x-amz-copy-source", "Content-MD5", "x-amz-checksum-crc32",
                                "x-amz-meta-a", "Content-Type", "x-amz-metadata-directive",
                                "x-amz-decoded-content-length", "x-amz-trailer"])
header_values = st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                  max_size=40),
                          st.sampled_from(["bytes=0-0", "bytes=-1", "bytes=5-", "bytes=9-1",
                                           "fuzz-bucket/guarded", "*", "COPY", "REPLACE"]))


def send(cluster, method, path, query, headers, body, payload_hash):
    address = cluster.config.by_role("gateway")[0].address
    all_headers = {"host": address, **headers}
    all_headers.update(sigv4.sign_headers(
        method, path, query, all_headers, payload_hash, cluster.credentials.access_key,
        cluster.credentials.secret_key, "us-east-1", datetime.datetime.now(datetime.UTC)))
    target = path + ("?" + sigv4.canonical_query_string(query) if query else "")
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, target, body=body if body else None, headers=all_headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.fixture(scope="module")
def guarded(s3):
    s3.create_bucket(Bucket="fuzz-bucket")
    content = {f"guarded/{i}": os.urandom(1000 * i + 1) for i in range(3)}
    for key, data in content.items():
        s3.put_object(Bucket="fuzz-bucket", Key=key, Body=data)
    return content


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=methods, bucket=buckets, key=keys,
       query=st.lists(st.tuples(query_names, query_values), max_size=4),
       headers=st.dictionaries(header_names, header_values, max_size=4),
       body=st.binary(max_size=2000), sign_body=st.sampled_from(["signed", "unsigned", "wrong"]))
def test_random_signed_requests_never_fail_the_server(cluster, s3, guarded, method, bucket, key,
                                                      query, headers, body, sign_body):
    if key.startswith("guarded"):
        key = "not-" + key
    path = "/" + quote(bucket, safe="/") + ("/" + quote(key, safe="/") if key else "")
    payload_hash = {"signed": hashlib.sha256(body).hexdigest(), "unsigned": "UNSIGNED-PAYLOAD",
                    "wrong": hashlib.sha256(b"other").hexdigest()}[sign_body]
    if method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        body = b""
        payload_hash = hashlib.sha256(b"").hexdigest()
    status = send(cluster, method, path, query, headers, body, payload_hash)
    assert status < 500 or status in (501,), (method, path, query, headers, status)


def test_guarded_objects_are_unchanged_after_fuzzing(s3, guarded):
    for key, data in guarded.items():
        assert s3.get_object(Bucket="fuzz-bucket", Key=key)["Body"].read() == data
