"""A 1 GiB upload streams through the gateway in bounded memory (DESIGN.md principle 3)."""

from __future__ import annotations

import hashlib
import io
import random
import shutil

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
    root = tmp_path_factory.mktemp("cluster")
    with Cluster(root, meta=1, storage=6, gateway=1, ec="4+2",
                 segment_size_bytes=DEFAULT_SEGMENT_SIZE_BYTES) as running:
        yield running
    shutil.rmtree(root, ignore_errors=True)  # 7.5 GiB stored: CI machines' disks are not big


@pytest.fixture(scope="module")
def s3(cluster):
    return s3_client(cluster)


class GeneratedBody(io.RawIOBase):
    """A seekable 1 GiB body of distinct pseudo-random bytes, made as it is read.

    The uploads need no source files (4 GiB of disk on top of what the cluster stores), and
    botocore can still seek back after computing its checksum.
    """

    CHUNK = 16 * MIB

    def __init__(self, seed: int, size: int = 1024 * MIB) -> None:
        self.seed, self.size, self.position = seed, size, 0
        self._cached: tuple[int, bytes] = (-1, b"")

    def chunk(self, index: int) -> bytes:
        if self._cached[0] != index:
            self._cached = (index, random.Random(self.seed * 100_003 + index).randbytes(
                min(self.CHUNK, self.size - index * self.CHUNK)))
        return self._cached[1]

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for index in range(-(-self.size // self.CHUNK)):
            digest.update(self.chunk(index))
        return digest.hexdigest()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = min(max(base + offset, 0), self.size)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        done = 0
        while done < len(buffer) and self.position < self.size:
            index, skip = divmod(self.position, self.CHUNK)
            data = memoryview(self.chunk(index))[skip:skip + len(buffer) - done]
            buffer[done:done + len(data)] = data
            done += len(data)
            self.position += len(data)
        return done


def test_generated_body_reads_the_same_bytes_after_a_seek():
    body = GeneratedBody(seed=3, size=3 * GeneratedBody.CHUNK + 5)
    whole = body.read()
    assert len(whole) == body.size and hashlib.sha256(whole).hexdigest() == body.sha256()
    body.seek(GeneratedBody.CHUNK - 2)
    assert body.read(7) == whole[GeneratedBody.CHUNK - 2:GeneratedBody.CHUNK + 5]
    assert GeneratedBody(seed=4, size=body.size).read(64) != whole[:64]


def peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_one_gib_upload_keeps_gateway_peak_rss_under_300_mib(cluster, s3):
    s3.create_bucket(Bucket="big")
    body = GeneratedBody(seed=100)
    expected = body.sha256()
    s3.put_object(Bucket="big", Key="one-gib", Body=body)
    gateway_pid = cluster.pid("gateway-1")
    peak = peak_rss_bytes(gateway_pid)
    print(f"gateway peak RSS after a 1 GiB upload: {peak / MIB:.1f} MiB")
    assert peak < GATEWAY_RSS_CEILING_BYTES
    response = s3.get_object(Bucket="big", Key="one-gib")
    readback = hashlib.sha256()
    for chunk in response["Body"].iter_chunks(4 * MIB):
        readback.update(chunk)
    assert readback.hexdigest() == expected
    peak = peak_rss_bytes(gateway_pid)
    print(f"gateway peak RSS after reading it back: {peak / MIB:.1f} MiB")
    assert peak < GATEWAY_RSS_CEILING_BYTES
    s3.delete_object(Bucket="big", Key="one-gib")


def test_four_concurrent_one_gib_uploads_keep_gateway_peak_rss_under_300_mib(cluster, s3):
    """Issue #7's ceiling: four 1 GiB uploads at once, every segment distinct."""
    from concurrent.futures import ThreadPoolExecutor

    s3.create_bucket(Bucket="big4")
    digests = [GeneratedBody(seed=number).sha256() for number in range(4)]
    gateway_pid = cluster.pid("gateway-1")
    before = peak_rss_bytes(gateway_pid)

    def upload(number: int) -> None:
        s3.put_object(Bucket="big4", Key=f"gib-{number}", Body=GeneratedBody(seed=number))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(upload, range(4)))
    peak = peak_rss_bytes(gateway_pid)
    print(f"gateway peak RSS: {before / MIB:.1f} MiB before, {peak / MIB:.1f} MiB after "
          "four concurrent 1 GiB uploads")
    assert peak < GATEWAY_RSS_CEILING_BYTES
    for number in range(4):
        readback = hashlib.sha256()
        body = s3.get_object(Bucket="big4", Key=f"gib-{number}")["Body"]
        for chunk in body.iter_chunks(4 * MIB):
            readback.update(chunk)
        assert readback.hexdigest() == digests[number]
        s3.delete_object(Bucket="big4", Key=f"gib-{number}")
