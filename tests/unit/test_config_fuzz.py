"""cluster.toml fuzzing: any text, and any mutation of a valid file, is either a config or a
ConfigError naming what is wrong; never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from blobstore.config import ClusterConfig, ConfigError, NodeConfig, dump_config, parse_config
from blobstore.core.records import NodeRole

VALID = dump_config(ClusterConfig(
    secret="s", access_key="AK", secret_key="SK",
    nodes=(NodeConfig("meta-1", NodeRole.META, "127.0.0.1:9100", "/d/m"),
           NodeConfig("storage-1", NodeRole.STORAGE, "127.0.0.1:9200", "/d/s"),
           NodeConfig("gateway-1", NodeRole.GATEWAY, "127.0.0.1:9000", "/d/g"))))


def parse_or_error(text: str) -> None:
    try:
        config = parse_config(text, "fuzz.toml")
    except ConfigError as error:
        assert str(error).startswith("fuzz.toml")
        return
    assert config.nodes and config.secret


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_random_text(text):
    parse_or_error(text)


@settings(max_examples=400, deadline=None)
@given(line=st.integers(0, 200), replacement=st.one_of(
    st.just(""), st.text(max_size=30),
    st.sampled_from(['data_shards = -1', 'address = "x:99999999"', 'role = 7', '[[nodes]]',
                     'segment_size_bytes = 1', 'zone = []', 'weight = "heavy"', '[cluster',
                     'write_quorum = 99', 'id = ""', 'tls_cert_file = "a"'])))
def test_mutated_valid_file(line, replacement):
    lines = VALID.splitlines()
    lines[line % len(lines)] = replacement
    parse_or_error("\n".join(lines))
