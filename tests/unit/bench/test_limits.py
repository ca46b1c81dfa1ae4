"""Machine-limit probes: each runs, gives a positive figure, and leaves no file behind."""

from __future__ import annotations

import json
import random

from blobstore.bench.limits import cpu_probes, disk_probes, measure_machine

SEED = 7


def test_disk_probes_measure_and_clean_up(tmp_path):
    measurements = disk_probes(tmp_path, 0.01, random.Random(SEED))
    assert [m.name for m in measurements] == [
        "disk_fsync_1mib_writes_mb_per_s", "disk_durable_4mib_files_mb_per_s",
        "disk_durable_4kib_files_per_s", "disk_durable_4kib_file_ms_p50"]
    assert all(m.value > 0 for m in measurements)
    assert list(tmp_path.iterdir()) == []


def test_cpu_probes_cover_hashes_and_zfec():
    names = {m.name: m.value for m in cpu_probes(0.01, random.Random(SEED))}
    assert set(names) == {"md5_mb_per_s_per_core", "sha256_mb_per_s_per_core",
                          "blake3_mb_per_s_per_core", "xxh3_mb_per_s_per_core", "zfec_encode_4_2_mb_per_s_per_core",
                          "zfec_decode_4_2_mb_per_s_per_core"}
    assert all(value > 0 for value in names.values())


def test_loopback_and_json(tmp_path):
    limits = measure_machine(tmp_path, 0.05, SEED, disk=False, cpu=False)
    document = json.loads(json.dumps(limits.to_json()))
    assert document["cpus"] >= 1
    assert set(document["limits"]) == {"loopback_http_get_1mib_mb_per_s",
                                       "loopback_http_put_1mib_mb_per_s",
                                       "loopback_http_tiny_requests_per_s"}
    assert limits.value("loopback_http_tiny_requests_per_s") > 0
    assert limits.value("no_such_probe") is None
