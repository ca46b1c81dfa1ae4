"""`blobstore cp` and friends against a real cluster: files and stdin/stdout, byte-exact."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def file_sha(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def ok(result):
    assert result.returncode == 0, result.stderr.decode()
    return result


def test_cp_200_mib_up_and_down_and_through_pipes(cluster, tmp_path):
    ok(cluster.cli("mb", "s3://cli-data"))
    source = tmp_path / "source.bin"
    with open(source, "wb") as handle:
        for _ in range(25):
            handle.write(os.urandom(8 * MIB))
    ok(cluster.cli("cp", str(source), "s3://cli-data/big/source.bin", timeout_s=300))
    target = tmp_path / "target.bin"
    ok(cluster.cli("cp", "s3://cli-data/big/source.bin", str(target), timeout_s=300))
    assert file_sha(target) == file_sha(source)
    target.unlink()

    with open(source, "rb") as handle:
        piped_in = handle.read()
    ok(cluster.cli("cp", "-", "s3://cli-data/big/from-stdin", input=piped_in, timeout_s=300))
    piped_out = ok(cluster.cli("cp", "s3://cli-data/big/from-stdin", "-", timeout_s=300)).stdout
    assert hashlib.sha256(piped_out).hexdigest() == hashlib.sha256(piped_in).hexdigest()
    cat = ok(cluster.cli("cat", "s3://cli-data/big/source.bin", timeout_s=300)).stdout
    assert hashlib.sha256(cat).hexdigest() == hashlib.sha256(piped_in).hexdigest()


def test_ls_rm_rb_and_locate(cluster, tmp_path):
    ok(cluster.cli("mb", "s3://cli-misc"))
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello blobstore\n" * 2048)  # 32 KiB: above inline_max_bytes, so sharded
    ok(cluster.cli("cp", str(small), "s3://cli-misc/a/small.txt"))
    listing = ok(cluster.cli("ls", "s3://cli-misc/a/")).stdout.decode()
    assert "small.txt" in listing
    buckets = ok(cluster.cli("ls")).stdout.decode()
    assert "cli-misc" in buckets
    where = json.loads(ok(cluster.cli("locate", "--json", "s3://cli-misc/a/small.txt")).stdout)
    assert where["size"] == len(small.read_bytes())
    shards = where["segments"][0]["shards"]
    assert len(shards) == cluster.config.total_shards
    assert len({s["node"] for s in shards}) == len(shards)
    assert all(os.path.exists(s["path"]) for s in shards)
    failed = cluster.cli("rb", "s3://cli-misc")
    assert failed.returncode == 1 and b"BucketNotEmpty" in failed.stderr
    ok(cluster.cli("rm", "s3://cli-misc/a/small.txt"))
    ok(cluster.cli("rb", "s3://cli-misc"))
    missing = cluster.cli("cat", "s3://cli-misc/a/small.txt")
    assert missing.returncode == 1 and b"Traceback" not in missing.stderr
