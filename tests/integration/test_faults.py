"""Reads survive lost nodes and corrupt shards, and never return wrong or short bytes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from blobstore.testing.processes import Cluster

from .conftest import s3_client

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def locate(cluster: Cluster, bucket: str, key: str) -> dict:
    result = cluster.cli("locate", "--json", f"s3://{bucket}/{key}", check=True)
    return json.loads(result.stdout)


def flip_byte(path: str | Path, offset_from_end: int = 100) -> None:
    """Flip one payload byte in place (the header is at the front of the file)."""
    with open(path, "r+b") as handle:
        handle.seek(-offset_from_end, os.SEEK_END)
        byte = handle.read(1)
        handle.seek(-offset_from_end, os.SEEK_END)
        handle.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture()
def faulty(tmp_path):
    """A cluster of its own: these tests kill and corrupt."""
    with Cluster(tmp_path, meta=1, storage=6, gateway=1, ec="4+2") as running:
        yield running


def test_two_storage_nodes_killed_every_object_reads_back(faulty):
    s3 = s3_client(faulty)
    s3.create_bucket(Bucket="survive")
    objects = {f"obj{i}": os.urandom(size)
               for i, size in enumerate([1, 1000, 3 * MIB + 7, 9 * MIB + 1, 17 * MIB])}
    for key, data in objects.items():
        s3.put_object(Bucket="survive", Key=key, Body=data)
    for node_id in ("storage-2", "storage-5"):
        faulty.kill(node_id)
    for key, data in objects.items():
        body = s3.get_object(Bucket="survive", Key=key)["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest(), key


def test_a_flipped_byte_in_a_shard_file_is_never_served(faulty):
    s3 = s3_client(faulty)
    s3.create_bucket(Bucket="rot")
    data = os.urandom(6 * MIB)
    s3.put_object(Bucket="rot", Key="victim", Body=data)
    where = locate(faulty, "rot", "victim")
    assert where["size"] == len(data)
    # Corrupt data shard 0 of every segment: the healthy path would serve it directly.
    corrupted = []
    for segment in where["segments"]:
        shard = next(s for s in segment["shards"] if s["index"] == 0)
        flip_byte(shard["path"])
        corrupted.append(shard)
    assert s3.get_object(Bucket="rot", Key="victim")["Body"].read() == data
    for shard in corrupted:  # the read met the bad shard, which its node took out of service
        quarantine = Path(faulty.node(shard["node"]).data_dir) / "quarantine"
        assert not Path(shard["path"]).exists()
        assert any(p.name.startswith(Path(shard["path"]).name) for p in quarantine.iterdir())
    # The node quarantined the bad file; the next read is still exact.
    assert s3.get_object(Bucket="rot", Key="victim")["Body"].read() == data


def _must_fail(s3, bucket: str, key: str, data: bytes) -> None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as error:
        if isinstance(error, ClientError):
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        return
    pytest.fail(f"GET returned {len(body)} bytes (equal: {body == data}) instead of failing")


def test_two_nodes_down_and_a_third_shard_corrupt_fails_cleanly(faulty):
    s3 = s3_client(faulty)
    s3.create_bucket(Bucket="lost")
    small = os.urandom(100_000)
    large = os.urandom(13 * MIB)
    s3.put_object(Bucket="lost", Key="small", Body=small)
    s3.put_object(Bucket="lost", Key="large", Body=large)
    small_where = locate(faulty, "lost", "small")["segments"][0]["shards"]
    down = [small_where[0]["node"], small_where[1]["node"]]
    large_where = locate(faulty, "lost", "large")["segments"]
    for node_id in down:
        faulty.kill(node_id)
    flip_byte(small_where[2]["path"], offset_from_end=10)
    # In the last segment of the large object, corrupt a shard on a node still up.
    last = large_where[-1]["shards"]
    alive = [s for s in last if s["node"] not in down]
    needed_gone = len(last) - len(alive)
    for shard in alive[: max(0, 3 - needed_gone)]:
        flip_byte(shard["path"], offset_from_end=10)
    _must_fail(s3, "lost", "small", small)
    _must_fail(s3, "lost", "large", large)
    # Nothing else broke: the gateway still answers.
    assert s3.head_object(Bucket="lost", Key="small")["ContentLength"] == len(small)
