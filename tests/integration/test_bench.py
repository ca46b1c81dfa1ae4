"""`blobstore bench` against a real cluster: it measures, it checks, and failures count.

The command object is invoked in-process (click's CliRunner) with ``--dir``, as an
operator would run ``blobstore bench --dir D``; the cluster is real processes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from blobstore.bench.loadgen import BenchSpec, LoadGenerator, Op
from blobstore.bench.objects import ObjectRef, ObjectSet
from blobstore.bench.s3 import Target
from blobstore.bench.stats import JSON_FIELDS
from blobstore.cli.bench import bench
from blobstore.cli.ops import locate
from blobstore.testing.processes import Cluster

pytestmark = pytest.mark.integration

SEED = 99
MIB = 1024 * 1024


def _bench_json(cluster, *args: str) -> dict:
    result = CliRunner().invoke(bench, ["--dir", str(cluster.root), "--json", "--seed",
                                        str(SEED), *args])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output  # exactly one JSON object
    return json.loads(lines[0])


def test_put_run_reports_the_spec_fields(cluster):
    document = _bench_json(cluster, "--op", "put", "--size", "1MiB", "-c", "4",
                           "--duration", "2.5s")
    assert set(JSON_FIELDS) <= set(document)
    assert document["op"] == "put" and document["size_bytes"] == MIB
    assert document["ops"] > 0 and document["errors"] == 0, document["error_samples"]
    assert document["bytes"] == document["ops"] * MIB
    assert document["mb_per_s"] > 0 and document["latency_ms"]["p50"] > 0
    assert document["client_cpu_s"] > 0
    assert document["objects_left"] == 0


def test_get_run_reads_and_checks_every_body(cluster):
    document = _bench_json(cluster, "--op", "get", "--size", "300KiB", "-c", "4",
                           "--duration", "2s", "--objects", "8")
    assert document["ops"] > 0 and document["errors"] == 0, document["error_samples"]
    assert document["bytes"] == document["ops"] * 300 * 1024
    assert document["objects"] == 8


def _corrupt_shards(cluster, bucket: str, key: str, how_many: int) -> None:
    shown = CliRunner().invoke(locate, ["--dir", str(cluster.root), "--json",
                                        f"s3://{bucket}/{key}"])
    assert shown.exit_code == 0, shown.output
    for segment in json.loads(shown.output)["segments"]:
        for shard in segment["shards"][:how_many]:
            path = Path(shard["path"])
            data = bytearray(path.read_bytes())
            middle = len(data) // 2
            data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
            path.write_bytes(data)


def test_corrupt_and_missing_objects_count_as_errors(cluster):
    target = Target(cluster.endpoint, *cluster.credentials, cluster.config.region)
    parity_shards = cluster.config.parity_shards

    async def scenario():
        async with LoadGenerator(target, "bench-broken", 2, timeout_s=60, seed=SEED) as gen:
            await gen.prepare()
            objects = ObjectSet()
            await gen.populate(MIB, 2, objects, 2)
            healthy, damaged = list(objects)
            await asyncio.to_thread(_corrupt_shards, cluster, "bench-broken", damaged.key,
                                    parity_shards + 1)
            objects.add(ObjectRef(f"{healthy.key}-never-written", MIB, healthy.xxh3))
            result = await gen.run(BenchSpec(Op.GET, MIB, 2, None, count=40), objects)
            await gen.cleanup(ObjectSet([healthy, damaged]))
            return result

    result = asyncio.run(scenario())
    assert result.ops + result.errors == 40
    assert result.ops > 0  # the healthy object still reads, checked
    kinds = result.total.errors_by_kind
    assert kinds.get("http_404", 0) > 0, kinds
    assert set(kinds) - {"http_404"}, f"the corrupted object read without error: {kinds}"
    assert "checksum_mismatch" not in kinds, f"the store served wrong bytes: {kinds}"


def test_https_endpoints_need_a_trusted_certificate_or_insecure(tmp_path):
    with Cluster(tmp_path / "tls", meta=1, storage=6, gateway=1, tls=True) as secure:
        assert secure.endpoint.startswith("https://")
        args = ["--dir", str(secure.root), "--op", "put", "--size", "64KiB", "--count", "8",
                "--json"]
        refused = CliRunner().invoke(bench, args)
        assert refused.exit_code == 1 and "certificate" in refused.output.lower()
        accepted = CliRunner().invoke(bench, [*args, "--insecure"])
        assert accepted.exit_code == 0, accepted.output
        document = json.loads(accepted.output)
        assert document["ops"] == 8 and document["errors"] == 0
