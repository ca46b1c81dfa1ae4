"""Metrics on real processes: every node's /_blobstore/metrics moves when S3 traffic flows,
and the request id of an S3 request shows up in the gateway's, meta's and storage's logs.

What is asserted is what ``runtime/metrics.py``'s middleware provides on every role
(requests, bytes, latencies by operation) and the gateway's view of the cluster; and the
role-specific series (Raft indexes, scrub progress, repairs, fsync latency) that meta and
storage set through the hooks of runtime/metrics.py.
"""

from __future__ import annotations

import os
import random
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blobstore.core.records import NodeRole
from blobstore.testing.processes import Cluster

from .conftest import s3_client

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
SHARD_PUT = "PUT /v1/shards/{shard_id}"
SHARD_GET = "GET /v1/shards/{shard_id}"
COMMAND = "POST /v1/command*"  # meta may name the command type after the route

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str) -> Samples:
    with urllib.request.urlopen(f"http://{address}/_blobstore/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape_all(cluster: Cluster) -> dict[str, Samples]:
    return {node.id: scrape(node.address) for node in cluster.config.nodes}


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (a value ending in
    ``*`` matches by prefix)."""
    def matches(sample_labels: frozenset[tuple[str, str]]) -> bool:
        have = dict(sample_labels)
        return all(key in have and (have[key].startswith(value[:-1]) if value.endswith("*")
                                    else have[key] == value) for key, value in labels.items())

    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and matches(sample_labels))


def grew(before: dict[str, Samples], after: dict[str, Samples], node_ids: list[str],
         name: str, **labels: str) -> float:
    return sum(total(after[n], name, **labels) - total(before[n], name, **labels)
               for n in node_ids)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BLOBSTORE_ACCESS_LOG", "1")  # every request logged, with its id
        with Cluster(tmp_path_factory.mktemp("metrics"), meta=1, storage=6, gateway=1,
                     ec="4+2") as running:
            yield running


def test_every_node_serves_metrics_without_auth(cluster: Cluster) -> None:
    for node_id, samples in scrape_all(cluster).items():
        assert total(samples, "process_resident_memory_bytes") > 0, node_id
        roles = {dict(labels).get("role") for (name, labels) in samples
                 if name == "blobstore_requests_total"}
        expected = "gateway" if cluster.node(node_id).role == NodeRole.GATEWAY else None
        assert roles <= {expected} if expected else roles <= {"meta", "storage", "internal"}


def test_named_series_move_when_traffic_flows(cluster: Cluster) -> None:
    s3 = s3_client(cluster)
    storage = cluster.node_ids(NodeRole.STORAGE)
    meta = cluster.node_ids(NodeRole.META)
    (gateway,) = cluster.node_ids(NodeRole.GATEWAY)
    rng = random.Random(11)
    bodies = {f"k{n}": rng.randbytes(size) for n, size in enumerate([1000, 300 * 1024, 5 * MIB])}
    before = scrape_all(cluster)

    s3.create_bucket(Bucket="metered")
    for key, body in bodies.items():
        s3.put_object(Bucket="metered", Key=key, Body=body)
    for key, body in bodies.items():
        assert s3.get_object(Bucket="metered", Key=key)["Body"].read() == body
    s3.head_object(Bucket="metered", Key="k0")
    s3.list_objects_v2(Bucket="metered")
    s3.delete_object(Bucket="metered", Key="k0")
    after = scrape_all(cluster)
    put_bytes = sum(len(b) for b in bodies.values())

    def gateway_grew(name: str, **labels: str) -> float:
        return grew(before, after, [gateway], name, role="gateway", **labels)

    assert gateway_grew("blobstore_requests_total", operation="CreateBucket", status="200") == 1
    assert gateway_grew("blobstore_requests_total", operation="PutObject", status="200") == 3
    assert gateway_grew("blobstore_requests_total", operation="GetObject", status="200") == 3
    assert gateway_grew("blobstore_requests_total", operation="HeadObject", status="200") == 1
    assert gateway_grew("blobstore_requests_total", operation="ListObjectsV2", status="200") == 1
    assert gateway_grew("blobstore_requests_total", operation="DeleteObject", status="204") == 1
    assert gateway_grew("blobstore_request_bytes_total", operation="PutObject") >= put_bytes
    assert gateway_grew("blobstore_response_bytes_total", operation="GetObject") >= put_bytes
    assert gateway_grew("blobstore_request_duration_seconds_count", operation="PutObject") == 3
    assert gateway_grew("blobstore_request_duration_seconds_sum", operation="PutObject") > 0

    # k0 (1000 B) is inline in its meta record; the others make 3 segments (1 + 2 of 4 MiB)
    # of 6 shards, and a write needs k + 1 = 5 of them
    sharded_bytes = put_bytes - len(bodies["k0"])
    assert grew(before, after, storage, "blobstore_requests_total", operation=SHARD_PUT,
                status="201") >= 3 * 5
    # shards carry the data once and the parity on top: 1.5 x the bytes, at least 5/6 of it
    assert grew(before, after, storage, "blobstore_request_bytes_total",
                operation=SHARD_PUT) >= sharded_bytes
    assert grew(before, after, storage, "blobstore_requests_total", operation=SHARD_GET) >= 3
    assert grew(before, after, storage, "blobstore_response_bytes_total",
                operation=SHARD_GET) >= sharded_bytes
    assert grew(before, after, storage, "blobstore_request_duration_seconds_count",
                operation=SHARD_PUT) >= 3 * 5

    # create_bucket, 3 put_object, delete_object: one command each, on the leader (one at
    # a time, so the gateway's batching client sends each alone)
    assert grew(before, after, meta, "blobstore_requests_total", operation=COMMAND,
                status="200") >= 5
    assert grew(before, after, meta, "blobstore_request_bytes_total", operation=COMMAND) > 0
    assert grew(before, after, meta, "blobstore_requests_total",
                operation="GET /v1/objects/{bucket}") >= 3  # manifests for the reads


def wait_for_lines(path: Path, needle: str, timeout_s: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [line for line in path.read_text().splitlines() if needle in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_request_id_follows_a_request_to_meta_and_storage(cluster: Cluster) -> None:
    s3 = s3_client(cluster)
    s3.create_bucket(Bucket="traced")
    reply = s3.put_object(Bucket="traced", Key="one", Body=os.urandom(100_000))
    request_id = reply["ResponseMetadata"]["RequestId"]
    assert request_id
    needle = f"request_id={request_id}"
    (gateway,) = cluster.node_ids(NodeRole.GATEWAY)
    gateway_lines = wait_for_lines(cluster.log_path(gateway), needle)
    assert any("operation=PutObject" in line for line in gateway_lines), gateway_lines
    meta_lines = [line for node in cluster.node_ids(NodeRole.META)
                  for line in wait_for_lines(cluster.log_path(node), needle)]
    assert any("path=/v1/command" in line for line in meta_lines), meta_lines
    storage_lines = [line for node in cluster.node_ids(NodeRole.STORAGE)
                     for line in wait_for_lines(cluster.log_path(node), needle, 2.0)]
    assert sum("method=PUT path=/v1/shards/" in line for line in storage_lines) >= 5
    for line in gateway_lines + meta_lines + storage_lines:
        assert line.endswith(needle)  # one line per event, the id last


def repair_three_shards(tmp_path: Path) -> tuple[dict[str, Samples], dict[str, Samples],
                                                   dict[NodeRole, list[str]], int, int]:
    """Flip a byte in 3 shards, scrub, repair: the metrics of every node before and after,
    the node ids by role, the shards and the distinct segments damaged."""
    rng = random.Random(5)
    with Cluster(tmp_path, meta=1, storage=6, gateway=1, ec="4+2",
                 segment_size_bytes=MIB) as cluster:
        s3 = s3_client(cluster, retries=3)
        s3.create_bucket(Bucket="heal")
        for n in range(4):
            s3.put_object(Bucket="heal", Key=f"o{n}", Body=rng.randbytes(MIB))
        shard_files = sorted(path for node in cluster.config.by_role(NodeRole.STORAGE)
                             for path in (Path(node.data_dir) / "shards").rglob("*.*")
                             if path.is_file() and ".tmp" not in path.name)
        victims = rng.sample(shard_files, 3)
        for path in victims:  # flip one payload byte (the header is 48 bytes)
            data = bytearray(path.read_bytes())
            data[-1] ^= 0x40
            path.write_bytes(bytes(data))
        before = scrape_all(cluster)
        for args in (("scrub", "--wait"), ("repair", "--wait", "--timeout", "120")):
            result = cluster.cli(*args, "--json", timeout_s=180)
            assert result.returncode == 0, result.stderr.decode()[-2000:]
        time.sleep(2.5)  # one more sample of meta's status by the gateway
        after = scrape_all(cluster)
        roles = {role: cluster.node_ids(role) for role in NodeRole}
    return before, after, roles, len(victims), len({p.name.split(".")[0] for p in victims})


def test_requests_move_when_a_shard_is_repaired(tmp_path: Path) -> None:
    before, after, roles, _, segments = repair_three_shards(tmp_path)
    storage = roles[NodeRole.STORAGE]
    # The repairer of a segment reads k = 4 shards, at most one of them its own (read without
    # HTTP), and writes the rebuilt ones (its own without HTTP too, so no count of shard
    # PUTs is certain); it leases its tasks (several per command) and completes each repair
    # with a meta command.
    shard_bytes = MIB // 4
    assert grew(before, after, storage, "blobstore_requests_total", operation=SHARD_GET,
                status="200") >= 3 * segments
    assert grew(before, after, storage, "blobstore_response_bytes_total",
                operation=SHARD_GET) >= 3 * segments * shard_bytes
    assert grew(before, after, roles[NodeRole.META], "blobstore_requests_total",
                operation=COMMAND, status="200") >= segments + 1
    (gateway,) = roles[NodeRole.GATEWAY]
    assert total(after[gateway], "blobstore_cluster_repair_backlog_segments") == 0
    assert total(after[gateway], "blobstore_cluster_degraded_segments") == 0


def test_role_series_move_when_a_shard_is_repaired(tmp_path: Path) -> None:
    before, after, roles, repaired, _ = repair_three_shards(tmp_path)
    storage = roles[NodeRole.STORAGE]
    assert grew(before, after, storage, "blobstore_scrub_corrupt_shards_found") == repaired
    assert grew(before, after, storage, "blobstore_scrub_passes_completed") >= len(storage)
    assert grew(before, after, storage, "blobstore_worker_events_total",
                worker="repair", event="shards_rebuilt") >= repaired
    (meta,) = roles[NodeRole.META]
    assert total(after[meta], "blobstore_raft_commit_index") > total(
        before[meta], "blobstore_raft_commit_index")
    assert total(after[meta], "blobstore_repair_backlog_segments") == 0
