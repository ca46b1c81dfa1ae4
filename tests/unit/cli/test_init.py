"""blobstore init: the file it writes is one that load_config accepts, and it refuses bad input."""

from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner

from blobstore.cli.main import main
from blobstore.config import load_config
from blobstore.core.records import NodeRole
from blobstore.launch.cluster_dir import read_credentials
from blobstore.launch.init import (
    InitError,
    parse_duration_s,
    parse_ec,
    parse_size_bytes,
)


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_init_writes_a_config_load_config_accepts(tmp_path):
    result = _run("init", "--dir", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "c" / "cluster.toml")
    roles = [node.role for node in config.nodes]
    assert roles.count(NodeRole.META) == 3
    assert roles.count(NodeRole.STORAGE) == 8
    assert roles.count(NodeRole.GATEWAY) == 1
    assert (config.data_shards, config.parity_shards) == (4, 2)
    assert config.down_after_s == 30.0
    assert len(config.secret) == 64
    assert config.node("gateway-1").address == "127.0.0.1:9000"
    assert config.node("meta-1").address == "127.0.0.1:9100"
    assert config.node("storage-8").address == "127.0.0.1:9207"
    for node in config.nodes:
        assert node.data_dir == str((tmp_path / "c" / "data" / node.id).absolute())


def test_init_flags_reach_the_config(tmp_path):
    result = _run("init", "--dir", str(tmp_path), "--storage", "5", "--ec", "2+1",
                  "--gateway", "2", "--base-port", "12000", "--zones", "3",
                  "--down-after", "2m", "--scrub-interval", "1h", "--gc-grace", "90",
                  "--segment-size", "1MiB")
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "cluster.toml")
    assert (config.data_shards, config.parity_shards) == (2, 1)
    assert [n.zone for n in config.by_role(NodeRole.STORAGE)] == ["z1", "z2", "z3", "z1", "z2"]
    assert [n.port for n in config.by_role(NodeRole.GATEWAY)] == [12000, 12001]
    assert (config.down_after_s, config.scrub_interval_s, config.gc_grace_s) == (120, 3600, 90)
    assert config.segment_size_bytes == 1024 * 1024


def test_credentials_are_private_and_match_the_config(tmp_path):
    assert _run("init", "--dir", str(tmp_path)).exit_code == 0
    config = load_config(tmp_path / "cluster.toml")
    path = tmp_path / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "cluster.toml").stat().st_mode) == 0o600
    values = read_credentials(path)
    assert values == {"AWS_ACCESS_KEY_ID": config.access_key,
                      "AWS_SECRET_ACCESS_KEY": config.secret_key}
    assert len(config.access_key) == 20
    assert config.access_key.isalnum() and config.access_key.upper() == config.access_key
    assert len(config.secret_key) == 40


def test_init_refuses_to_overwrite_unless_forced(tmp_path):
    assert _run("init", "--dir", str(tmp_path)).exit_code == 0
    before = (tmp_path / "cluster.toml").read_text()
    result = _run("init", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "--force" in result.output
    assert (tmp_path / "cluster.toml").read_text() == before
    assert _run("init", "--dir", str(tmp_path), "--force").exit_code == 0
    assert (tmp_path / "cluster.toml").read_text() != before


@pytest.mark.parametrize("flags", [
    ["--ec", "4x2"],
    ["--ec", "0+2"],
    ["--storage", "5"],  # fewer than k+m = 6
    ["--storage", "0"],
    ["--meta", "0"],
    ["--gateway", "-1"],
    ["--segment-size", "banana"],
    ["--segment-size", "1KiB"],  # below the config's minimum
    ["--down-after", "soon"],
    ["--base-port", "65500"],  # storage ports would pass 65535
    ["--zones", "0"],
    ["--no-such-flag"],
])
def test_bad_flags_exit_2(tmp_path, flags):
    result = _run("init", "--dir", str(tmp_path), *flags)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "cluster.toml").exists()


def test_parsers():
    assert parse_ec("4+2") == (4, 2)
    assert parse_ec(" 10 + 4 ") == (10, 4)
    assert parse_size_bytes("4MiB") == 4 * 1024 * 1024
    assert parse_size_bytes("65536") == 65536
    assert parse_size_bytes("1.5KiB") == 1536
    assert parse_size_bytes("2gb") == 2 * 10**9
    assert parse_duration_s("30") == 30.0
    assert parse_duration_s("10m") == 600.0
    assert parse_duration_s("7d") == 7 * 86400.0
    for bad in ("4", "a+b", "4+"):
        with pytest.raises(InitError):
            parse_ec(bad)
    for bad in ("", "MiB", "4 parsecs"):
        with pytest.raises(InitError):
            parse_size_bytes(bad)
