"""The command line itself: help, version, exit codes, and argument parsing of data commands."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from blobstore import __version__
from blobstore.cli.main import main
from blobstore.client.endpoint import resolve_s3_target
from blobstore.client.locations import (
    LocalLocation,
    S3Location,
    UsageProblem,
    check_copy,
    parse_location,
    parse_s3_url,
)
from blobstore.client.transfer import _safe_parts
from blobstore.launch.cluster_dir import find_config_path

_ENV_NAMES = ("BLOBSTORE_ENDPOINT", "BLOBSTORE_CONFIG", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in _ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no ./blobstore-data here


def _run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_version():
    result = _run("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_with_an_example(command):
    result = _run(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


def test_unknown_command_is_a_usage_error():
    assert _run("frobnicate").exit_code == 2


@pytest.mark.parametrize("args", [
    ["cp"],
    ["cp", "only-one"],
    ["cp", "a.txt", "b.txt"],  # local to local
    ["cp", "-", "s3://bucket/"],  # stdin needs a key
    ["cp", "-", "s3://bucket"],
    ["cp", "-r", "-", "s3://bucket/key"],
    ["cp", "-r", "s3://bucket/prefix", "-"],
    ["cp", "s3://bucket/dir/", "out"],  # an object is needed without -r
    ["cp", "s3://", "out"],
    ["ls", "bucket"],  # not an s3:// URL
    ["mb", "s3://bucket/key"],
    ["rb", "s3://bucket/key"],
    ["rm", "s3://bucket"],  # rm without -r needs a key
    ["cat", "s3://bucket/dir/"],
    ["locate", "s3://bucket"],
    ["cp", "--bogus", "a", "s3://b/k"],
])
def test_bad_data_arguments_exit_2(args):
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_data_command_without_an_endpoint_fails_with_one_line():
    result = _run("ls")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: no S3 endpoint: pass --endpoint URL or --dir D, or set BLOBSTORE_ENDPOINT"]


def test_unreachable_endpoint_fails_with_exit_1(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x" * 40)
    result = _run("ls", "--endpoint", "http://127.0.0.1:1")
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output


def test_status_without_a_cluster_fails_with_exit_1():
    result = _run("status")
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "cluster.toml" in result.output


def test_down_with_nothing_running_exits_0(tmp_path):
    result = _run("down", "--dir", str(tmp_path / "nothing"))
    assert result.exit_code == 0
    assert "no cluster running" in result.output


def test_parse_locations():
    assert parse_s3_url("s3://b") == S3Location("b", "")
    assert parse_s3_url("s3://b/") == S3Location("b", "")
    assert parse_s3_url("s3://b/a/b/c.txt") == S3Location("b", "a/b/c.txt")
    assert parse_s3_url("s3://b/dir/").is_prefix
    assert parse_location("-") == LocalLocation("-")
    assert parse_location("./x") == LocalLocation("./x")
    assert S3Location("b", "dir").as_directory() == "dir/"
    assert S3Location("b", "dir/").child("f") == S3Location("b", "dir/f")
    with pytest.raises(UsageProblem):
        parse_s3_url("http://b/k")
    with pytest.raises(UsageProblem):
        parse_s3_url("s3:///k")


def test_check_copy_accepts_the_usual_forms():
    for source, destination, recursive in [("a", "s3://b/k", False), ("a", "s3://b/", False),
                                           ("-", "s3://b/k", False), ("s3://b/k", "-", False),
                                           ("s3://b/k", "out", False), ("dir", "s3://b/p", True),
                                           ("s3://b/p", "dir", True), ("s3://b/k", "s3://c/k",
                                                                       False)]:
        check_copy(parse_location(source), parse_location(destination), recursive)


@pytest.mark.parametrize("relative", ["", "../x", "a/../../x", "a//b", "./a", "a/."])
def test_downloads_refuse_keys_that_escape(relative):
    with pytest.raises(UsageProblem):
        _safe_parts(relative, relative)


def test_safe_parts_splits_on_slash():
    assert _safe_parts("a/b/c.txt", "p/a/b/c.txt") == ["a", "b", "c.txt"]


def test_endpoint_and_keys_from_a_cluster_dir(tmp_path):
    assert _run("init", "--dir", str(tmp_path / "c"), "--base-port", "13000").exit_code == 0
    target = resolve_s3_target(None, str(tmp_path / "c"), environ={})
    assert target.endpoint == "http://127.0.0.1:13000"
    assert len(target.access_key) == 20 and len(target.secret_key) == 40
    explicit = resolve_s3_target("http://elsewhere:1", str(tmp_path / "c"), environ={})
    assert explicit.endpoint == "http://elsewhere:1"


def test_endpoint_and_keys_from_the_environment():
    env = {"BLOBSTORE_ENDPOINT": "http://h:1", "AWS_ACCESS_KEY_ID": "A",
           "AWS_SECRET_ACCESS_KEY": "S", "AWS_REGION": "eu-west-1"}
    target = resolve_s3_target(None, None, environ=env)
    assert (target.endpoint, target.access_key, target.secret_key, target.region) == (
        "http://h:1", "A", "S", "eu-west-1")


def test_config_lookup_order(tmp_path):
    assert find_config_path("f.toml", "d", {"BLOBSTORE_CONFIG": "e.toml"}).name == "f.toml"
    assert find_config_path(None, "d", {"BLOBSTORE_CONFIG": "e.toml"}) == (
        tmp_path / "d" / "cluster.toml")
    assert str(find_config_path(None, None, {"BLOBSTORE_CONFIG": "e.toml"})) == "e.toml"
    assert find_config_path(None, None, {}) == tmp_path / "blobstore-data" / "cluster.toml"
