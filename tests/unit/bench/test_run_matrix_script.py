"""bench/run_matrix.py's own decisions: the plan from flags, the Swift peer's settings."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

from blobstore.bench.units import KIB, MIB

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "run_matrix.py"


@pytest.fixture(scope="module")
def run_matrix():
    spec = importlib.util.spec_from_file_location("run_matrix_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _args(**overrides) -> argparse.Namespace:
    values = {"quick": False, "sizes": None, "concurrency": None, "duration": None,
              "count": None, "no_degraded": False, "degraded_concurrency": 4, "skip": "",
              "background_mib": None, "repair_mib": None, "scrub_mib": None,
              "meta_concurrency": 64}
    values.update(overrides)
    return argparse.Namespace(**values)


def test_the_default_plan_is_the_standard_matrix(run_matrix):
    plan = run_matrix.make_plan(_args())
    assert plan.sizes_bytes == (4 * KIB, MIB, 64 * MIB)
    assert plan.concurrencies == (1, 4, 32)
    assert plan.duration_s == 10.0 and plan.degraded_size_bytes == 64 * MIB


def test_quick_and_explicit_plans(run_matrix):
    quick = run_matrix.make_plan(_args(quick=True))
    assert quick.concurrencies == (1, 4) and quick.duration_s == 1.5
    custom = run_matrix.make_plan(_args(sizes="1MiB,8MiB", concurrency="2,8", duration="3s",
                                        count=50))
    assert custom.sizes_bytes == (MIB, 8 * MIB) and custom.concurrencies == (2, 8)
    assert (custom.duration_s, custom.count_max) == (3.0, 50)
    assert custom.degraded_size_bytes == 8 * MIB  # the largest size when 64 MiB is absent
    assert run_matrix.make_plan(_args(no_degraded=True)).degraded_size_bytes is None


def test_swift_peer_settings_and_refusals(run_matrix, tmp_path):
    peer = run_matrix.SwiftPeer(tmp_path / "no-peer", tmp_path / "data")
    assert "no Swift peer" in peer.why_not()
    (tmp_path / "data" / "etc").mkdir(parents=True)
    (tmp_path / "data" / "etc" / "peer.env").write_text(
        "# written by setup.sh on the first run\nPROXY_PORT=8180\nS3_ACCESS_KEY=bench:bench\n"
        "S3_SECRET=benchsecret\nS3_REGION=us-east-1\n")
    target = peer.target()
    assert target.endpoint == "http://127.0.0.1:8180"
    assert (target.access_key, target.secret_key, target.region) == (
        "bench:bench", "benchsecret", "us-east-1")


def test_output_dir_does_not_overwrite_a_run(run_matrix, tmp_path, monkeypatch):
    import datetime as dt

    monkeypatch.setattr(run_matrix, "RESULTS_DIR", tmp_path)
    started = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    first = run_matrix.output_dir(None, started)
    assert first == tmp_path / "2026-01-02"
    first.mkdir()
    (first / "results.json").write_text("{}")
    assert run_matrix.output_dir(None, started) == tmp_path / "2026-01-02-030405"
    assert run_matrix.output_dir(tmp_path / "x", started) == tmp_path / "x"


def test_extra_rows_are_sized_and_skipped_by_flags(run_matrix):
    plan = run_matrix.make_plan(_args())
    full = run_matrix.make_extras(_args(), plan)
    assert all(full.wants(name) for name in run_matrix.EXTRAS)
    assert full.background.data_bytes == 2048 * MIB and full.background.duration_s == 20.0
    assert full.background.cells == (("put", 64 * MIB, 4), ("get", 4 * KIB, 32))
    assert (full.repair_bytes, full.scrub_bytes) == (1024 * MIB, 1024 * MIB)
    quick_args = _args(quick=True, skip="repair, meta", scrub_mib=64)
    quick = run_matrix.make_extras(quick_args, run_matrix.make_plan(quick_args))
    assert not quick.wants("repair") and not quick.wants("meta") and quick.wants("scrub")
    assert quick.scrub_bytes == 64 * MIB and quick.background.data_bytes == 256 * MIB
    assert quick.meta_duration_s == 2.0  # at least 2 s even when cells are 1.5 s
    with pytest.raises(SystemExit):
        run_matrix.make_extras(_args(skip="scrub,bogus"), plan)


def test_planned_duration_of_a_full_run_with_swift_is_under_25_minutes(run_matrix):
    plan = run_matrix.make_plan(_args())
    extras = run_matrix.make_extras(_args(), plan)
    steps = run_matrix.planned_seconds(plan, extras, 2.0, True, True)
    assert {"limits", "blobstore", "scrub", "meta", "background", "repair", "swift",
            "swift background"} == set(steps)
    assert 10 * 60 < sum(steps.values()) < 25 * 60
    skipped = run_matrix.make_extras(_args(skip="background,repair"), plan)
    fewer = run_matrix.planned_seconds(plan, skipped, 2.0, False, False)
    assert set(fewer) == {"limits", "blobstore", "scrub", "meta"} and fewer["limits"] == 0


def test_swift_ports_are_the_defaults_when_free_else_a_free_block(run_matrix):
    import random

    assert run_matrix.swift_ports(is_free=lambda port: True) == run_matrix.SWIFT_DEFAULT_PORTS
    taken = {8180}
    ports = run_matrix.swift_ports(random.Random(1), is_free=lambda port: port not in taken)
    assert ports["PROXY_PORT"] != 8180 and 15000 <= ports["OBJ_PORT_BASE"] < 20000
    used = [ports[name] for name in ports if name != "OBJ_PORT_BASE"]
    used += range(ports["OBJ_PORT_BASE"], ports["OBJ_PORT_BASE"] + 6)
    assert len(set(used)) == len(used) == 10


def test_swift_daemons_are_the_peer_scripts_names(run_matrix):
    assert len(run_matrix.SWIFT_DAEMONS) == 21
    assert "object-reconstructor-6" in run_matrix.SWIFT_DAEMONS
    assert "account-replicator" in run_matrix.SWIFT_DAEMONS
