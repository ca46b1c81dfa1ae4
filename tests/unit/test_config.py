"""cluster.toml: a malformed or partial file is refused with the line that is wrong."""

import pytest

from blobstore.config import ClusterConfig, ConfigError, NodeConfig, dump_config, parse_config
from blobstore.core.records import NodeRole


def sample() -> ClusterConfig:
    nodes = (NodeConfig("meta-1", NodeRole.META, "127.0.0.1:9100", "/d/meta-1"),
             NodeConfig("storage-1", NodeRole.STORAGE, "127.0.0.1:9200", "/d/s1", zone="z2"),
             NodeConfig("gateway-1", NodeRole.GATEWAY, "127.0.0.1:9000", "/d/g1"))
    return ClusterConfig(secret="s3cret", nodes=nodes, access_key="AK", secret_key="SK")


def test_round_trip():
    text = dump_config(sample())
    parsed = parse_config(text)
    assert parsed.nodes == sample().nodes
    assert parsed.secret == "s3cret" and parsed.access_key == "AK"
    assert parsed.effective_write_quorum == 5


@pytest.mark.parametrize("old, new, line_fragment", [
    ('address = "127.0.0.1:9200"', 'address = "nowhere"', "address"),
    ('role = "storage"', 'role = "wizard"', "role"),
    ("data_shards = 4", 'data_shards = "four"', "data_shards"),
    ("data_shards = 4", "data_shards = 0", "data_shards"),
    ('id = "storage-1"', 'id = "meta-1"', "duplicate"),
    ('id = "storage-1"', 'id = "../x"', "invalid node id"),
])
def test_bad_fields_name_their_line(old, new, line_fragment):
    text = dump_config(sample()).replace(old, new, 1)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cluster.toml")
    message = str(info.value)
    assert line_fragment in message
    lines = text.splitlines()
    wrong_line = len(lines) - lines[::-1].index(new)  # the last occurrence: the changed one
    assert f"cluster.toml:{wrong_line}:" in message


def test_syntax_error_and_missing_sections():
    with pytest.raises(ConfigError, match="line"):
        parse_config("[cluster\nsecret=1")
    with pytest.raises(ConfigError, match="cluster"):
        parse_config("[[nodes]]\nid='a'")
    with pytest.raises(ConfigError, match="secret"):
        parse_config(dump_config(sample()).replace('secret = "s3cret"', ""))
    with pytest.raises(ConfigError, match="nodes"):
        parse_config('[cluster]\nsecret = "x"\n')
