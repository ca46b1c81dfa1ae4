"""A 1 GiB upload streams through the gateway in bounded memory (DESIGN.md principle 3)."""

from __future__ import annotations

import hashlib
import os

import pytest

from blobstore.config import DEFAULT_SEGMENT_SIZE_BYTES
from blobstore.testing.processes import Cluster

from .conftest import s3_client

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
GATEWAY_RSS_CEILING_BYTES = 300 * MIB


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # The ceiling is a claim about what users run: the default segment size, not the
    # smaller one most tests use to get many segments out of little data.
    with Cluster(tmp_path_factory.mktemp("cluster"), meta=1, storage=6, gateway=1, ec="4+2",
                 segment_size_bytes=DEFAULT_SEGMENT_SIZE_BYTES) as running:
        yield running


@pytest.fixture(scope="module")
def s3(cluster):
    return s3_client(cluster)


def peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_one_gib_upload_keeps_gateway_peak_rss_under_300_mib(cluster, s3, tmp_path):
    s3.create_bucket(Bucket="big")
    path = tmp_path / "one-gib"
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for _ in range(64):
            chunk = os.urandom(16 * MIB)
            digest.update(chunk)
            handle.write(chunk)
    with open(path, "rb") as body:
        s3.put_object(Bucket="big", Key="one-gib", Body=body)
    path.unlink()
    gateway_pid = cluster.pid("gateway-1")
    peak = peak_rss_bytes(gateway_pid)
    print(f"gateway peak RSS after a 1 GiB upload: {peak / MIB:.1f} MiB")
    assert peak < GATEWAY_RSS_CEILING_BYTES
    response = s3.get_object(Bucket="big", Key="one-gib")
    readback = hashlib.sha256()
    for chunk in response["Body"].iter_chunks(4 * MIB):
        readback.update(chunk)
    assert readback.hexdigest() == digest.hexdigest()
    peak = peak_rss_bytes(gateway_pid)
    print(f"gateway peak RSS after reading it back: {peak / MIB:.1f} MiB")
    assert peak < GATEWAY_RSS_CEILING_BYTES
    s3.delete_object(Bucket="big", Key="one-gib")


def test_four_concurrent_one_gib_uploads_keep_gateway_peak_rss_under_300_mib(cluster, s3,
                                                                             tmp_path):
    """Issue #7's ceiling: four 1 GiB uploads at once, every segment distinct."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    s3.create_bucket(Bucket="big4")
    paths, digests = [], []
    for number in range(4):
        rng = random.Random(number)
        path = tmp_path / f"gib-{number}"
        digest = hashlib.sha256()
        with open(path, "wb") as handle:
            for _ in range(64):
                chunk = rng.randbytes(16 * MIB)
                digest.update(chunk)
                handle.write(chunk)
        paths.append(path)
        digests.append(digest.hexdigest())
    gateway_pid = cluster.pid("gateway-1")
    before = peak_rss_bytes(gateway_pid)

    def upload(number: int) -> None:
        with open(paths[number], "rb") as body:
            s3.put_object(Bucket="big4", Key=f"gib-{number}", Body=body)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(upload, range(4)))
    peak = peak_rss_bytes(gateway_pid)
    print(f"gateway peak RSS: {before / MIB:.1f} MiB before, {peak / MIB:.1f} MiB after "
          "four concurrent 1 GiB uploads")
    assert peak < GATEWAY_RSS_CEILING_BYTES
    for number, path in enumerate(paths):
        path.unlink()
        readback = hashlib.sha256()
        body = s3.get_object(Bucket="big4", Key=f"gib-{number}")["Body"]
        for chunk in body.iter_chunks(4 * MIB):
            readback.update(chunk)
        assert readback.hexdigest() == digests[number]
        s3.delete_object(Bucket="big4", Key=f"gib-{number}")
