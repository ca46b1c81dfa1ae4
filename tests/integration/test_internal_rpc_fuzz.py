"""Internal RPC fuzzing: correctly signed requests with random bodies, headers and ids reach
the meta and storage handlers; each answers a clear 4xx, never a 500, and stays up."""

from __future__ import annotations

import http.client
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blobstore.rpc.auth import AUTH_HEADER, sign

pytestmark = pytest.mark.integration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=12)
command_bodies = st.fixed_dictionaries(
    {"client_id": st.one_of(st.text(max_size=10), st.integers()),
     "sequence": st.one_of(st.integers(-5, 2**64), st.text(max_size=5)),
     "command": st.one_of(json_values, st.fixed_dictionaries(
         {"type": st.sampled_from(["create_bucket", "put_object", "put_part", "lease_repair",
                                   "complete_upload", "gc_begin", "mark_node_down", "nope"])},
         optional={"name": st.text(max_size=10), "version": json_values,
                   "upload_id": st.text(max_size=10), "parts": json_values,
                   "segment_ids": json_values, "node_id": st.text(max_size=8)}))})
bodies = st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                   command_bodies.map(lambda v: json.dumps(v).encode()))
meta_paths = st.sampled_from(["/v1/command", "/v1/heartbeat", "/v1/segments/lookup",
                              "/v1/raft", "/v1/raft/conf_change", "/v1/raft/transfer_leader",
                              "/v1/list/x?max_keys=abc", "/v1/objects/b", "/v1/uploads/one",
                              "/v1/users/%00"])
storage_paths = st.sampled_from(["/v1/shards/" + "a" * 64 + ".0", "/v1/shards/..%2Fx",
                                 "/v1/shards?limit=-1", "/v1/shards?after=%FF", "/v1/scrub",
                                 "/v1/repair", "/v1/shards/" + "b" * 64 + ".999"])
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"])
shard_headers = st.dictionaries(
    st.sampled_from(["X-Shard-Data-Shards", "X-Shard-Parity-Shards", "X-Shard-Segment-Length",
                     "X-Shard-Xxh3", "Range"]),
    st.one_of(st.text(alphabet="0123456789abcdef-=bytes", max_size=20),
              st.integers(-3, 300).map(str)), max_size=5)


def send(cluster, role: str, method: str, path: str, body: bytes, headers: dict[str, str]):
    node = cluster.config.by_role(role)[0]
    host, port = node.address.rsplit(":", 1)
    all_headers = {AUTH_HEADER: sign(cluster.config.secret, method, path, time.time()),
                   **headers}
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body if method != "GET" else None,
                           headers=all_headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=methods, path=meta_paths, body=bodies)
def test_meta_answers_random_bodies_without_500(cluster, method, path, body):
    status = send(cluster, "meta", method, path, body, {"Content-Type": "application/json"})
    assert status < 500 or status == 503, (method, path, body[:200], status)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=methods, path=storage_paths, body=st.binary(max_size=2000), headers=shard_headers)
def test_storage_answers_random_requests_without_500(cluster, method, path, body, headers):
    status = send(cluster, "storage", method, path, body, headers)
    assert status < 500, (method, path, headers, status)


def test_nodes_are_still_healthy_after_fuzzing(cluster, s3):
    s3.create_bucket(Bucket="after-rpc-fuzz")
    s3.put_object(Bucket="after-rpc-fuzz", Key="k", Body=b"still fine")
    assert s3.get_object(Bucket="after-rpc-fuzz", Key="k")["Body"].read() == b"still fine"
