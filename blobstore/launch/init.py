"""``blobstore init``: plan a one-machine cluster and write its cluster.toml and credentials.

Port plan for a base port B (all on 127.0.0.1)::

    gateway-1..G   B+0   .. B+G-1      (the S3 endpoint is the first gateway: http://127.0.0.1:B)
    meta-1..M      B+100 .. B+100+M-1
    storage-1..S   B+200 .. B+200+S-1

Zones are dealt round-robin ``z1..zN`` within each role. Every node's data dir is the
absolute ``D/data/<id>``. The cluster secret is fresh (64 hex); the first S3 user is a
20-character upper-case alphanumeric access key and a 40-character secret.

Refuses: fewer storage nodes than k+m (a segment's shards must land on distinct nodes), more
than 100 gateways or meta nodes (the port blocks would overlap), ports past 65535, and
overwriting an existing cluster.toml unless forced.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from blobstore.config import (
    DEFAULT_SEGMENT_SIZE_BYTES,
    ClusterConfig,
    ConfigError,
    NodeConfig,
    dump_config,
    parse_config,
)
from blobstore.core.errors import Conflict, Invalid
from blobstore.core.records import NodeRole
from blobstore.launch.cluster_dir import ClusterDir, credentials_text, write_private

ROLE_PORT_OFFSETS = {NodeRole.GATEWAY: 0, NodeRole.META: 100, NodeRole.STORAGE: 200}
MAX_NODES_PER_BLOCK = 100
DEV_DOWN_AFTER_S = 30.0
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}
_DURATIONS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_QUANTITY_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*")
_ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_KEY_ALPHABET = string.ascii_letters + string.digits


class InitError(Invalid):
    """The init options describe a cluster that cannot work."""

    code = "InvalidInitOptions"


class ClusterExists(Conflict):
    """The directory already holds a cluster.toml."""

    code = "ClusterExists"


@dataclass(frozen=True, slots=True)
class InitOptions:
    meta: int = 3  # a Raft group: 3 survives one lost replica, 5 survives two
    storage: int = 8
    gateway: int = 1
    data_shards: int = 4
    parity_shards: int = 2
    base_port: int = 9000
    zones: int = 1
    down_after_s: float = DEV_DOWN_AFTER_S
    scrub_interval_s: float = 7 * 86400.0
    gc_grace_s: float = 3600.0
    segment_size_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES
    host: str = "127.0.0.1"


def parse_ec(text: str) -> tuple[int, int]:
    """``"4+2"`` -> (data_shards, parity_shards)."""
    match = re.fullmatch(r"\s*(\d+)\s*\+\s*(\d+)\s*", text)
    if not match:
        raise InitError(f"EC policy {text!r} is not K+M (for example 4+2)")
    return int(match.group(1)), int(match.group(2))


def parse_size_bytes(text: str) -> int:
    """``"4MiB"``, ``"65536"``, ``"1.5GB"`` -> bytes."""
    match = _QUANTITY_RE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise InitError(f"size {text!r} is not a number with an optional unit (KiB, MiB, GiB, ...)")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_duration_s(text: str) -> float:
    """``"30"``, ``"30s"``, ``"10m"``, ``"1h"``, ``"7d"`` -> seconds."""
    match = _QUANTITY_RE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _DURATIONS:
        raise InitError(f"duration {text!r} is not a number with an optional unit (s, m, h, d)")
    return float(match.group(1)) * _DURATIONS[unit]


def new_access_key() -> str:
    return "".join(secrets.choice(_ACCESS_KEY_ALPHABET) for _ in range(20))


def new_secret_key() -> str:
    return "".join(secrets.choice(_SECRET_KEY_ALPHABET) for _ in range(40))


def plan_cluster(directory: ClusterDir, options: InitOptions) -> ClusterConfig:
    """The cluster ``options`` describe, with fresh secrets; validated like a loaded file."""
    _check_options(options)
    nodes: list[NodeConfig] = []
    for role, count in ((NodeRole.META, options.meta), (NodeRole.STORAGE, options.storage),
                        (NodeRole.GATEWAY, options.gateway)):
        for number in range(1, count + 1):
            node_id = f"{role.value}-{number}"
            port = options.base_port + ROLE_PORT_OFFSETS[role] + number - 1
            nodes.append(NodeConfig(id=node_id, role=role, address=f"{options.host}:{port}",
                                    data_dir=str(directory.data_dir(node_id)),
                                    zone=f"z{(number - 1) % options.zones + 1}"))
    config = ClusterConfig(
        secret=secrets.token_hex(32), nodes=tuple(nodes), data_shards=options.data_shards,
        parity_shards=options.parity_shards, segment_size_bytes=options.segment_size_bytes,
        down_after_s=float(options.down_after_s), scrub_interval_s=float(options.scrub_interval_s),
        gc_grace_s=float(options.gc_grace_s), access_key=new_access_key(),
        secret_key=new_secret_key(), path=str(directory.config_path))
    # Round-trip through the parser so init can never write a file that serve would refuse.
    try:
        parse_config(dump_config(config), str(directory.config_path))
    except ConfigError as exc:
        raise InitError(exc.message.rpartition(": ")[2]) from exc
    return config


def _check_options(options: InitOptions) -> None:
    total = options.data_shards + options.parity_shards
    if options.meta < 1:
        raise InitError("a cluster needs at least one meta node (--meta)")
    if options.meta > MAX_NODES_PER_BLOCK or options.gateway > MAX_NODES_PER_BLOCK:
        raise InitError(f"at most {MAX_NODES_PER_BLOCK} meta and gateway nodes")
    if options.data_shards < 1:
        raise InitError("the EC policy needs at least one data shard")
    if options.storage < total:
        raise InitError(f"EC {options.data_shards}+{options.parity_shards} needs at least "
                        f"{total} storage nodes (--storage {options.storage})")
    if options.gateway < 0 or options.zones < 1:
        raise InitError("--gateway must be >= 0 and --zones >= 1")
    last_port = options.base_port + ROLE_PORT_OFFSETS[NodeRole.STORAGE] + options.storage - 1
    if options.base_port < 1 or last_port > 65535:
        raise InitError(f"ports {options.base_port}..{last_port} are not all valid TCP ports")
    if min(options.down_after_s, options.scrub_interval_s, options.gc_grace_s) <= 0:
        raise InitError("--down-after, --scrub-interval and --gc-grace must be positive")


def write_cluster(directory: ClusterDir, config: ClusterConfig, force: bool = False) -> None:
    """Write cluster.toml and credentials (both 0600) and make the node data dirs."""
    if directory.config_path.exists() and not force:
        raise ClusterExists(f"{directory.config_path} already exists (use --force to overwrite)")
    directory.root.mkdir(parents=True, exist_ok=True)
    for node in config.nodes:
        Path(node.data_dir).mkdir(parents=True, exist_ok=True)
    directory.logs_dir.mkdir(exist_ok=True)
    directory.run_dir.mkdir(exist_ok=True)
    write_private(directory.config_path, dump_config(config))
    write_private(directory.credentials_path,
                  credentials_text(config.access_key, config.secret_key))


def init_cluster(directory: ClusterDir, options: InitOptions,
                 force: bool = False) -> ClusterConfig:
    """Plan and write a cluster; ClusterExists if there is one and ``force`` is off."""
    if directory.config_path.exists() and not force:
        raise ClusterExists(f"{directory.config_path} already exists (use --force to overwrite)")
    config = plan_cluster(directory, options)
    write_cluster(directory, config, force=force)
    return config
