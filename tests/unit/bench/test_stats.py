"""Percentiles, the recorder, and the `blobstore bench --json` shape (SPEC §2)."""

from __future__ import annotations

import json
import math

import pytest

from blobstore.bench.stats import (
    ERROR_SAMPLES_MAX,
    JSON_FIELDS,
    LATENCY_FIELDS,
    BenchResult,
    Latency,
    Recorder,
    percentile,
)


@pytest.mark.parametrize("values, fraction, expected", [
    ([], 0.5, 0.0),
    ([7.0], 0.0, 7.0), ([7.0], 0.5, 7.0), ([7.0], 1.0, 7.0),
    ([1.0, 2.0], 0.5, 1.0), ([1.0, 2.0], 0.51, 2.0),
    ([float(i) for i in range(1, 11)], 0.5, 5.0),
    ([float(i) for i in range(1, 11)], 0.9, 9.0),
    ([float(i) for i in range(1, 11)], 0.99, 10.0),  # p99 of 10 samples is the largest
    ([float(i) for i in range(1, 101)], 0.99, 99.0),
    ([float(i) for i in range(1, 101)], 0.9, 90.0),
    ([float(i) for i in range(1, 1001)], 0.5, 500.0),
])
def test_percentile_is_nearest_rank(values, fraction, expected):
    assert percentile(values, fraction) == expected


def test_percentile_against_a_dumb_model():
    values = sorted((i * 7919) % 1009 / 3.0 for i in range(1, 500))
    for fraction in (0.0, 0.01, 0.5, 0.9, 0.99, 1.0):
        model = min(v for v in values
                    if sum(1 for w in values if w <= v) >= fraction * len(values))
        assert percentile(values, fraction) == model


def test_percentile_refuses_bad_fractions():
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_latency_in_milliseconds():
    latency = Latency.of_seconds([0.003, 0.001, 0.002, 0.004])
    assert (latency.p50_ms, latency.max_ms) == (pytest.approx(2.0), pytest.approx(4.0))
    assert latency.mean_ms == pytest.approx(2.5)
    assert Latency.of_seconds([]) == Latency()


def _recorded() -> Recorder:
    recorder = Recorder()
    for i in range(10):
        recorder.success("put", 0.010 + i / 1000, 1000)
    for _ in range(5):
        recorder.success("get", 0.001, 2000)
    recorder.failure("get", "checksum_mismatch", "k: content differs")
    recorder.failure("get", "http_503", "k: SlowDown")
    recorder.failure("put", "http_503", "k: SlowDown")
    return recorder


def test_recorder_totals_and_split_by_op():
    recorder = _recorded()
    total = recorder.total(2.0)
    assert (total.ops, total.errors, total.bytes) == (15, 3, 20_000)
    assert total.errors_by_kind == {"checksum_mismatch": 1, "http_503": 2}
    assert total.ops_per_s == 7.5 and total.mb_per_s == pytest.approx(0.01)
    by_op = recorder.summaries(2.0)
    assert by_op["put"].ops == 10 and by_op["get"].errors == 2
    assert by_op["put"].latency.max_ms == pytest.approx(19.0)
    assert recorder.snapshot(1.0).ops == 15


def test_error_samples_are_bounded():
    recorder = Recorder()
    for i in range(ERROR_SAMPLES_MAX + 10):
        recorder.failure("get", "timeout", f"k{i}")
    assert len(recorder.error_samples) == ERROR_SAMPLES_MAX
    assert recorder.errors == ERROR_SAMPLES_MAX + 10


def test_json_has_the_spec_fields_with_their_types():
    recorder = _recorded()
    result = BenchResult(op="mixed", size_bytes=4096, concurrency=4, duration_s=2.0,
                         total=recorder.total(2.0), client_cpu_s=0.25,
                         endpoint="http://127.0.0.1:9000", bucket="b",
                         error_samples=tuple(recorder.error_samples),
                         by_op=recorder.summaries(2.0))
    document = json.loads(json.dumps(result.to_json()))
    assert list(document)[:len(JSON_FIELDS)] == list(JSON_FIELDS)
    assert set(LATENCY_FIELDS) <= set(document["latency_ms"])
    assert document["op"] == "mixed" and document["size_bytes"] == 4096
    for name in ("concurrency", "ops", "errors", "bytes"):
        assert isinstance(document[name], int), name
    for name in ("duration_s", "ops_per_s", "mb_per_s", "client_cpu_s"):
        assert isinstance(document[name], float) and math.isfinite(document[name]), name
    assert all(isinstance(document["latency_ms"][name], float) for name in LATENCY_FIELDS)
    assert document["errors"] == sum(document["errors_by_kind"].values())
    assert set(document["by_op"]) == {"get", "put"}


def test_json_of_a_single_op_run_has_no_split():
    recorder = Recorder()
    recorder.success("put", 0.1, 10)
    result = BenchResult(op="put", size_bytes=10, concurrency=1, duration_s=1.0,
                         total=recorder.total(1.0), client_cpu_s=0.0,
                         by_op=recorder.summaries(1.0))
    assert "by_op" not in result.to_json()
