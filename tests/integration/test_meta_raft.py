"""The replicated metadata service with real processes: 3 meta replicas, 6 storage, 1 gateway.

Writes through S3 go on while the meta leader is SIGKILLed, and every acknowledged object
reads back byte for byte; killing and restarting every meta replica at once loses nothing;
``blobstore status --json`` shows the leader, term, commit index and each replica's match
index; ``blobstore meta remove/add`` change the voters.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.config import Config

from blobstore.core.records import NodeRole
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.meta_client import MetaClient
from blobstore.testing.processes import Cluster

pytestmark = pytest.mark.integration


def s3_client(cluster: Cluster) -> Any:
    return boto3.client(
        "s3", endpoint_url=cluster.endpoint, region_name=cluster.config.region,
        aws_access_key_id=cluster.credentials.access_key,
        aws_secret_access_key=cluster.credentials.secret_key,
        config=Config(s3={"addressing_style": "path"},
                      retries={"max_attempts": 6, "mode": "standard"},
                      connect_timeout=10, read_timeout=60))


def replica_statuses(cluster: Cluster) -> dict[str, dict[str, Any] | None]:
    """Each meta replica's own ``/v1/status`` (None if it does not answer)."""

    async def fetch() -> dict[str, dict[str, Any] | None]:
        async with new_session() as session:
            metas = cluster.config.by_role(NodeRole.META)
            client = MetaClient(RpcClient(session, cluster.config.secret),
                                [node.address for node in metas])

            async def one(address: str) -> dict[str, Any] | None:
                try:
                    return await client.status_of(address, timeout_s=1.0)
                except Exception:
                    return None

            answers = await asyncio.gather(*(one(node.address) for node in metas))
            return {node.id: answer for node, answer in zip(metas, answers, strict=True)}

    return asyncio.run(fetch())


def wait_for_leader(cluster: Cluster, among: list[str], timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = replica_statuses(cluster)
        leaders = {s["leader"] for node, s in statuses.items() if node in among and s}
        answered = [node for node in among if statuses.get(node)]
        if len(leaders) == 1 and None not in leaders and len(answered) == len(among):
            leader = leaders.pop()
            if statuses.get(leader) and statuses[leader]["role"] == "leader":
                return str(leader)
        time.sleep(0.1)
    raise AssertionError(f"no leader among {among} in {timeout_s}s: {replica_statuses(cluster)}")


def wait_caught_up(cluster: Cluster, timeout_s: float = 30.0) -> dict[str, Any]:
    """Every replica has applied the leader's commit index; the leader's status."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = replica_statuses(cluster)
        leader = next((s for s in statuses.values() if s and s["role"] == "leader"), None)
        if leader and all(s and s["last_applied"] >= leader["commit_index"]
                          for s in statuses.values()):
            return leader
        assert time.monotonic() < deadline, f"replicas did not catch up: {statuses}"
        time.sleep(0.2)


class Writer(threading.Thread):
    """PUTs small objects one after the other; remembers what was acknowledged."""

    def __init__(self, s3: Any, bucket: str) -> None:
        super().__init__(daemon=True)
        self.s3 = s3
        self.bucket = bucket
        self.acked: dict[str, str] = {}
        self.failed: list[tuple[str, str]] = []
        self.latencies_s: list[float] = []
        self.ack_times: list[tuple[float, float]] = []  # (started, acknowledged), monotonic
        self.stop = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            key = f"obj-{number:05d}"
            body = os.urandom(1000 + number % 5000)
            started = time.monotonic()
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            except Exception as error:  # noqa: BLE001 - a failed PUT is allowed, not a lost one
                self.failed.append((key, repr(error)))
            else:
                self.acked[key] = hashlib.sha256(body).hexdigest()
                self.latencies_s.append(time.monotonic() - started)
                self.ack_times.append((started, time.monotonic()))
            number += 1


def check_everything_reads_back(s3: Any, bucket: str, acked: dict[str, str]) -> None:
    for key, digest in acked.items():
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digest, key
    listed: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        listed.update(item["Key"] for item in page.get("Contents", []))
    assert set(acked) <= listed


def test_writes_survive_the_loss_of_the_meta_leader_and_a_full_meta_restart(tmp_path):
    with Cluster(tmp_path, meta=3, storage=6, gateway=1, ec="4+2") as cluster:
        metas = cluster.node_ids(NodeRole.META)
        s3 = s3_client(cluster)
        s3.create_bucket(Bucket="raft")
        first = wait_for_leader(cluster, metas)

        writer = Writer(s3, "raft")
        writer.start()
        time.sleep(2.0)
        before_kill = len(writer.acked)
        killed_at = time.monotonic()
        cluster.kill(first)  # SIGKILL
        second = wait_for_leader(cluster, [m for m in metas if m != first])
        failover_s = time.monotonic() - killed_at
        time.sleep(3.0)
        writer.stop.set()
        writer.join(60)
        assert second != first
        assert before_kill > 0 and len(writer.acked) > before_kill, writer.failed[-5:]
        print(f"\nmeta failover {failover_s:.2f}s; {len(writer.acked)} PUTs acknowledged, "
              f"{len(writer.failed)} failed; median PUT "
              f"{sorted(writer.latencies_s)[len(writer.latencies_s) // 2] * 1000:.0f} ms")
        check_everything_reads_back(s3, "raft", writer.acked)

        cluster.start(first)  # it catches up from the new leader
        leader_status = wait_caught_up(cluster)
        assert set(leader_status["replicas"]) == set(metas)

        report = json.loads(cluster.cli("status", "--json", check=True).stdout)
        assert report["leader"] == leader_status["node_id"]
        assert report["term"] >= 2 and report["commit_index"] >= len(writer.acked)
        replicas = {entry["id"]: entry for entry in report["meta_replicas"]}
        assert set(replicas) == set(metas)
        for entry in replicas.values():
            assert entry["voter"] and entry["match_index"] is not None
            assert entry["role"] in ("leader", "follower")

        for node_id in metas:  # every meta replica at once, no warning
            cluster.kill(node_id)
        for node_id in metas:
            cluster.start(node_id, wait=False)
        for node_id in metas:
            cluster.wait_healthy(node_id)
        wait_for_leader(cluster, metas)
        check_everything_reads_back(s3, "raft", writer.acked)
        s3.put_object(Bucket="raft", Key="after-restart", Body=b"still writable")
        assert s3.get_object(Bucket="raft", Key="after-restart")["Body"].read() == (
            b"still writable")


def test_meta_membership_from_the_cli(tmp_path):
    with Cluster(tmp_path, meta=3, storage=6, gateway=0, ec="4+2") as cluster:
        metas = cluster.node_ids(NodeRole.META)
        leader = wait_for_leader(cluster, metas)
        follower, last = [m for m in metas if m != leader]

        plan = json.loads(cluster.cli("meta", "remove", follower, "--dry-run", "--json",
                                      check=True).stdout)
        assert plan["dry_run"] and follower not in plan["voters_after"]
        assert len(wait_caught_up(cluster)["voters"]) == 3  # a dry run changes nothing

        removed = cluster.cli("meta", "remove", follower)
        assert removed.returncode == 0, removed.stderr.decode()
        assert b"removed" in removed.stdout
        status = wait_caught_up(cluster)
        assert sorted(status["voters"]) == sorted([leader, last])
        report = json.loads(cluster.cli("status", "--json", check=True).stdout)
        voters = {entry["id"]: entry["voter"] for entry in report["meta_replicas"]}
        assert voters == {leader: True, last: True, follower: False}

        added = cluster.cli("meta", "add", follower)
        assert added.returncode == 0, added.stderr.decode()
        status = wait_caught_up(cluster)
        assert sorted(status["voters"]) == sorted(metas)

        cluster.kill(last)  # with it down, removing another voter would leave no quorum
        deadline = time.monotonic() + 10
        while True:
            refused = cluster.cli("meta", "remove", follower, "--dry-run")
            if refused.returncode == 1:
                break
            assert time.monotonic() < deadline, refused.stdout.decode()
            time.sleep(0.3)
        assert b"quorum" in refused.stderr, refused.stderr.decode()
        unknown = cluster.cli("meta", "add", "meta-9")
        assert unknown.returncode == 1 and b"not a meta node" in unknown.stderr
