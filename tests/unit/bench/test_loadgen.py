"""The load generator against an in-memory S3 endpoint: counting, checking, failing well."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from blobstore.bench.loadgen import BenchSpec, LoadGenerator, Op, population_for, run_once
from blobstore.bench.objects import ObjectRef, ObjectSet
from blobstore.bench.payload import STAMP_INTERVAL_BYTES, content_digest
from blobstore.bench.s3 import Target
from blobstore.bench.stats import JSON_FIELDS
from blobstore.bench.units import KIB, MIB
from blobstore.cli.bench import bench
from blobstore.core.errors import Invalid, Unavailable

SEED = 4242


def _target(s3, secret: str | None = None) -> Target:
    return Target(s3.endpoint, s3.access_key, secret or s3.secret_key)


def test_put_writes_distinct_objects_that_get_reads_back(s3):
    async def scenario():
        async with LoadGenerator(_target(s3), "bench", 4, seed=SEED) as generator:
            await generator.prepare()
            written = ObjectSet()
            put = await generator.run(BenchSpec(Op.PUT, 200 * KIB, 4, None, count=12), written)
            get = await generator.run(BenchSpec(Op.GET, 200 * KIB, 4, None, count=30), written)
            return put, get, written

    put, get, written = asyncio.run(scenario())
    assert (put.ops, put.errors, put.total.bytes) == (12, 0, 12 * 200 * KIB)
    assert (get.ops, get.errors, get.total.bytes) == (30, 0, 30 * 200 * KIB)
    assert len(written) == 12
    bodies = list(s3.objects.values())
    assert len(bodies) == 12
    blocks = [body[offset:offset + STAMP_INTERVAL_BYTES] for body in bodies
              for offset in range(0, len(body), STAMP_INTERVAL_BYTES)]
    assert len(set(blocks)) == len(blocks), "a block repeats: a dedup store would gain"
    for ref in written:
        assert content_digest(s3.objects["bench", ref.key]) == ref.xxh3


def test_failed_reads_are_counted_by_kind_not_raised(s3):
    async def scenario():
        async with LoadGenerator(_target(s3), "bench", 2, seed=SEED) as generator:
            await generator.prepare()
            objects = ObjectSet()
            await generator.populate(10 * KIB, 4, objects, 2)
            good, corrupt, short, busy = list(objects)
            s3.corrupt.add(corrupt.key)
            s3.short.add(short.key)
            s3.slow_down.add(busy.key)
            missing = ObjectRef("never/written", 10 * KIB, good.xxh3)
            wrong_size = ObjectRef(good.key, 10 * KIB + 1, good.xxh3)
            objects.add(missing)
            objects.add(wrong_size)
            return await generator.run(BenchSpec(Op.GET, 10 * KIB, 2, None, count=300), objects)

    result = asyncio.run(scenario())
    assert result.ops + result.errors == 300
    assert result.ops > 0
    kinds = result.total.errors_by_kind
    assert set(kinds) == {"checksum_mismatch", "short_body", "http_503", "http_404"}
    assert result.errors == sum(kinds.values())
    assert any("SlowDown" in sample for sample in result.error_samples)


def test_count_bounds_a_run_and_delete_consumes_objects(s3):
    async def scenario():
        async with LoadGenerator(_target(s3), "bench", 3, seed=SEED) as generator:
            await generator.prepare()
            objects = ObjectSet()
            await generator.populate(KIB, 10, objects, 3)
            deleted = await generator.run(BenchSpec(Op.DELETE, KIB, 3, None, count=7), objects)
            return deleted, objects

    deleted, objects = asyncio.run(scenario())
    assert (deleted.ops, deleted.errors, deleted.total.bytes) == (7, 0, 0)
    assert len(objects) == 3 and len(s3.objects) == 3


def test_a_delete_run_stops_when_nothing_is_left(s3):
    async def scenario():
        async with LoadGenerator(_target(s3), "bench", 4, seed=SEED) as generator:
            await generator.prepare()
            objects = ObjectSet()
            await generator.populate(KIB, 5, objects, 4)
            return await generator.run(BenchSpec(Op.DELETE, KIB, 4, duration_s=30.0), objects)

    result = asyncio.run(scenario())
    assert result.ops == 5 and result.duration_s < 10


def test_mixed_splits_gets_and_puts(s3):
    spec = BenchSpec(Op.MIXED, 4 * KIB, 4, None, count=200, get_fraction=0.5)
    result, left = asyncio.run(run_once(_target(s3), spec, bucket="bench", seed=SEED))
    assert result.ops == 200 and result.errors == 0
    assert set(result.by_op) == {"get", "put"}
    assert 50 < result.by_op["get"].ops < 150
    assert left == 0 and not s3.objects  # cleaned up


def test_duration_bounds_a_run(s3):
    spec = BenchSpec(Op.PUT, KIB, 2, duration_s=0.5)
    result, _ = asyncio.run(run_once(_target(s3), spec, bucket="bench", seed=SEED))
    assert result.ops > 0 and 0.5 <= result.duration_s < 5
    assert result.client_cpu_s > 0


def test_bad_keys_or_no_endpoint_refuse_to_start(s3):
    spec = BenchSpec(Op.PUT, KIB, 1, None, count=1)
    with pytest.raises(Invalid, match="refused our keys"):
        asyncio.run(run_once(_target(s3, secret="wrong"), spec, bucket="bench"))
    closed = Target("http://127.0.0.1:1", s3.access_key, s3.secret_key)
    with pytest.raises(Unavailable, match="cannot reach"):
        asyncio.run(run_once(closed, spec, bucket="bench"))


def test_cli_prints_one_json_object_and_exits_0_despite_errors(s3):
    s3.buckets.add("bench")
    base = ["--endpoint", s3.endpoint, "--access-key", s3.access_key, "--secret-key",
            s3.secret_key, "--bucket", "bench", "-c", "2", "--json"]
    runner = CliRunner()
    result = runner.invoke(bench, [*base, "--op", "put", "--size", "4KiB", "--count", "20"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert set(JSON_FIELDS) <= set(document)
    assert document["ops"] == 20 and document["size_bytes"] == 4096

    s3.fail_gets = True
    broken = runner.invoke(bench, [*base, "--op", "get", "--size", "1KiB", "--count", "10",
                                   "--objects", "2"])
    assert broken.exit_code == 0, broken.output
    document = json.loads(broken.output)
    assert (document["ops"], document["errors"]) == (0, 10)
    assert document["errors_by_kind"] == {"http_503": 10}


def test_cli_table_and_refusal(s3):
    runner = CliRunner()
    base = ["--endpoint", s3.endpoint, "--access-key", s3.access_key, "--bucket", "bench"]
    ok = runner.invoke(bench, [*base, "--secret-key", s3.secret_key, "--count", "3", "--size",
                               "1"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines()[0].split()[:4] == ["op", "size", "conc", "secs"]
    refused = runner.invoke(bench, [*base, "--secret-key", "nope", "--count", "3"])
    assert refused.exit_code == 1
    assert "refused our keys" in refused.output


def test_spec_validation_and_population():
    with pytest.raises(Invalid):
        BenchSpec(Op.PUT, KIB, 0)
    with pytest.raises(Invalid):
        BenchSpec(Op.PUT, KIB, 1, duration_s=None, count=None)
    with pytest.raises(Invalid):
        BenchSpec(Op.MIXED, KIB, 1, get_fraction=1.5)
    assert population_for(BenchSpec(Op.PUT, KIB)) == 0
    assert population_for(BenchSpec(Op.GET, 4 * KIB, 4)) == 200
    assert population_for(BenchSpec(Op.GET, 64 * MIB, 32)) == 8
    assert population_for(BenchSpec(Op.GET, 64 * MIB, 1)) == 4
    assert population_for(BenchSpec(Op.DELETE, KIB, 4, None, count=1000)) == 1000
