"""Self-healing on real processes: scrub finds flipped bytes, repair rebuilds them and a lost
node's shards, fsck --deep proves it, a second loss is survived, deletes and an upload cut
off by a dead gateway give the space back (SPEC §4 "Heals itself", "Deletes reclaim space")."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blobstore.client.s3 import S3Client
from blobstore.core.records import NodeRole
from blobstore.testing.processes import Cluster

from .conftest import s3_client

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


# ---- helpers ---------------------------------------------------------------------------------


def cli_json(cluster: Cluster, *args: str, expect: tuple[int, ...] = (0,),
             timeout_s: float = 180.0) -> dict:
    result = cluster.cli(*args, "--json", timeout_s=timeout_s)
    assert result.returncode in expect, (args, result.returncode, result.stderr.decode()[-2000:],
                                         result.stdout.decode()[-2000:])
    return json.loads(result.stdout)


def wait_until(what: str, predicate: Callable[[], bool], timeout_s: float,
               interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


def shard_files(cluster: Cluster, node_ids: list[str] | None = None) -> Iterator[Path]:
    for node in cluster.config.by_role(NodeRole.STORAGE):
        if node_ids is not None and node.id not in node_ids:
            continue
        root = Path(node.data_dir) / "shards"
        if root.exists():
            yield from (p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.name)


def shard_bytes(cluster: Cluster) -> int:
    total = 0
    for path in shard_files(cluster):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


def flip_random_byte(path: Path, rng: random.Random) -> None:
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        offset = rng.randrange(size)
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ (1 << rng.randrange(8))]))


def put_objects(cluster: Cluster, bucket: str, sizes: list[int]) -> dict[str, bytes]:
    s3 = s3_client(cluster, retries=3)
    s3.create_bucket(Bucket=bucket)
    objects = {f"obj-{number:03d}": os.urandom(size) for number, size in enumerate(sizes)}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return objects


def assert_all_read_back(cluster: Cluster, bucket: str, objects: dict[str, bytes]) -> None:
    s3 = s3_client(cluster, retries=3)
    for key, data in objects.items():
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest(), key


def assert_fsck_clean(cluster: Cluster, *flags: str) -> dict:
    report = cli_json(cluster, "fsck", *flags)
    assert (report["degraded"], report["lost"]) == (0, 0), report
    assert report["healthy"] == report["segments"] > 0, report
    return report


def node_state(cluster: Cluster, node_id: str) -> str:
    status = cli_json(cluster, "status", expect=(0, 1))
    return next(node["state"] for node in status["nodes"] if node["id"] == node_id)


# ---- must-show 1: flipped bytes ------------------------------------------------------------------


def test_fifty_flipped_bytes_are_found_by_scrub_and_repaired(tmp_path):
    rng = random.Random(4242)
    with Cluster(tmp_path, storage=8, segment_size_bytes=MIB, scrub_interval_s=3600) as cluster:
        objects = put_objects(cluster, "rot", [rng.randrange(MIB // 2, 4 * MIB)
                                               for _ in range(14)])
        by_segment: dict[str, list[Path]] = {}
        for path in shard_files(cluster):
            by_segment.setdefault(path.name.split(".")[0], []).append(path)
        victims: list[Path] = []
        for segment in rng.sample(sorted(by_segment), len(by_segment)):  # at most m=2 each
            victims += rng.sample(sorted(by_segment[segment]), min(2, 50 - len(victims)))
            if len(victims) == 50:
                break
        assert len(victims) == 50
        for path in victims:
            flip_random_byte(path, rng)

        scrub = cli_json(cluster, "scrub", "--wait")
        assert scrub["complete"] and scrub["corrupt_found"] == 50, scrub
        repaired = cli_json(cluster, "repair", "--wait", "--timeout", "120")
        assert repaired["done"] and repaired["repair_backlog"] == 0, repaired
        assert_fsck_clean(cluster, "--deep")
        assert_all_read_back(cluster, "rot", objects)


# ---- must-show 2: a node lost for good, then a second -------------------------------------------


def test_a_lost_node_is_rebuilt_elsewhere_and_a_second_loss_is_survived(tmp_path):
    with Cluster(tmp_path, storage=8, segment_size_bytes=MIB, down_after_s=6) as cluster:
        rng = random.Random(7)
        objects = put_objects(cluster, "keep", [rng.randrange(1, 3 * MIB) for _ in range(12)])
        lost = "storage-3"
        cluster.kill(lost)
        shutil.rmtree(cluster.node(lost).data_dir)
        wait_until(f"{lost} declared down", lambda: node_state(cluster, lost) == "down", 60)
        repaired = cli_json(cluster, "repair", "--wait", "--timeout", "120")
        assert repaired["done"], repaired
        report = assert_fsck_clean(cluster, "--deep")
        assert report["objects"] == len(objects)
        for key in objects:
            located = cli_json(cluster, "locate", f"s3://keep/{key}")
            nodes = [s["node"] for seg in located["segments"] for s in seg["shards"]]
            assert lost not in nodes and None not in nodes
        cluster.kill("storage-5")
        assert_all_read_back(cluster, "keep", objects)


# ---- must-show 3 and 4: space comes back ----------------------------------------------------------


def test_deleted_objects_give_their_space_back_after_gc_grace(tmp_path):
    grace_s = 8.0
    with Cluster(tmp_path, storage=8, segment_size_bytes=MIB, gc_grace_s=grace_s) as cluster:
        objects = put_objects(cluster, "tmp", [2 * MIB + n for n in range(10)])
        objects["dup"] = objects["obj-000"]  # dedup: one segment, two references
        s3 = s3_client(cluster, retries=3)
        s3.put_object(Bucket="tmp", Key="dup", Body=objects["dup"])
        full = shard_bytes(cluster)
        assert full > 30 * MIB
        for key in objects:
            s3.delete_object(Bucket="tmp", Key=key)
        deleted_at = time.monotonic()
        wait_until("every shard file collected", lambda: shard_bytes(cluster) == 0,
                   timeout_s=3 * grace_s + 30)
        assert time.monotonic() - deleted_at >= grace_s  # never before the grace
        assert cli_json(cluster, "fsck")["objects"] == 0
        again = put_objects(cluster, "tmp2", [MIB + 3])  # the cluster still works
        assert_all_read_back(cluster, "tmp2", again)


def test_shards_of_an_upload_cut_off_by_a_dead_gateway_are_reclaimed(tmp_path):
    grace_s = 8.0
    with Cluster(tmp_path, storage=8, segment_size_bytes=MIB, gc_grace_s=grace_s) as cluster:
        s3 = s3_client(cluster, retries=3)
        s3.create_bucket(Bucket="big")
        sent = threading.Event()
        errors: list[BaseException] = []

        def chunks() -> Iterator[bytes]:
            for number in range(500):  # 500 MiB, each MiB distinct (no dedup)
                if number == 100:
                    sent.set()
                yield os.urandom(MIB)

        def upload() -> None:
            client = S3Client(cluster.endpoint, *cluster.credentials)
            try:
                client.put_stream("big", "half", chunks())
            except BaseException as exc:  # noqa: BLE001 - the gateway dies under it
                errors.append(exc)
            finally:
                client.close()

        uploader = threading.Thread(target=upload, daemon=True)
        uploader.start()
        assert sent.wait(120), "the upload did not get going"
        wait_until("shards on disk", lambda: shard_bytes(cluster) > 32 * MIB, 60, 0.1)
        cluster.kill("gateway-1")
        uploader.join(60)
        assert errors, "the upload should have failed with its gateway"
        assert shard_bytes(cluster) > 0
        wait_until("the orphan shards reclaimed", lambda: shard_bytes(cluster) == 0,
                   timeout_s=3 * grace_s + 30)
        cluster.start("gateway-1")
        with pytest.raises(subprocess.CalledProcessError):
            cluster.cli("cat", "s3://big/half", check=True)
