"""cluster.toml -> frozen dataclasses.

One file describes a whole cluster: every node (id, role, address, data dir, zone), the EC
policy, the timings and the cluster secret. Every process reads the same file. A malformed
or partial file is refused at start with the file, line and field that is wrong.

Example::

    [cluster]
    secret = "9f2c..."            # HMAC key of internal RPC; keep it private
    region = "us-east-1"
    data_shards = 4
    parity_shards = 2
    segment_size_bytes = 8388608
    down_after_s = 30

    [s3]                          # the first S3 user, seeded into meta
    access_key = "BSK..."
    secret_key = "..."

    [[nodes]]
    id = "meta-1"
    role = "meta"
    address = "127.0.0.1:9100"
    data_dir = "/var/lib/blobstore/meta-1"
    zone = "z1"
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from blobstore.core.errors import Invalid
from blobstore.core.ids import validate_node_id
from blobstore.core.records import MAX_INLINE_BYTES, NodeRole

MIB = 1024 * 1024
# Large objects are cut into segments of this size, each erasure-coded into shards of
# segment / data_shards (2 MiB at 4+2). Every shard costs a request and a durable file,
# and that cost, not the bytes, dominated large PUTs and GETs at 4 MiB segments. On the
# 2-core benchmark machine, 64 MiB PUT / cold GET at c=4: 4 MiB 178 / 425 MB/s, 8 MiB
# 210 / 562, 16 MiB 252 / 590; but the gateway's peak RSS with four 1 GiB uploads grew to
# 229 MiB at 8 MiB and 337 MiB at 16 MiB, over the 300 MiB ceiling.
DEFAULT_SEGMENT_SIZE_BYTES = 8 * MIB
ROLES = {r.value for r in NodeRole}


class ConfigError(Invalid):
    """cluster.toml is malformed or incomplete."""

    code = "ConfigError"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str
    role: NodeRole
    address: str  # host:port
    data_dir: str
    zone: str = "z1"
    weight: float = 1.0

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    secret: str
    nodes: tuple[NodeConfig, ...]
    region: str = "us-east-1"
    data_shards: int = 4
    parity_shards: int = 2
    write_quorum: int = 0  # 0 means data_shards + 1
    segment_size_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES
    inline_max_bytes: int = 16 * 1024  # objects up to this size live in their meta record; 0: never
    down_after_s: float = 600.0
    scrub_interval_s: float = 7 * 86400.0
    # Background rates are per storage node; a machine hosting several nodes pays them all.
    scrub_rate_bytes_per_s: int = 16 * MIB  # per storage node (9.4 TiB a week); 0 = unthrottled
    gc_grace_s: float = 3600.0
    # Self-healing workers of the storage nodes (storage/repairer.py, inventory.py, collector.py)
    repair_rate_bytes_per_s: int = 16 * MIB  # per node, shard bytes read + written; 0 = unthrottled
    repair_concurrency: int = 4  # segments one node repairs at once
    repair_lease_s: float = 60.0  # a leased repair task returns to the queue after this
    repair_retry_s: float = 30.0  # back-off after a failed repair attempt
    repair_poll_interval_s: float = 5.0  # an idle repairer looks at the backlog this often
    inventory_interval_s: float = 0.0  # 0: gc_grace_s / 4, within [1 s, 1 h]
    gc_interval_s: float = 0.0  # 0: gc_grace_s / 4, within [1 s, 1 h]
    gc_delete_margin_s: float = 10.0  # clock-skew allowance of GC deletes (<= gc_grace_s / 4)
    s3_domain: str = ""
    allow_stale_reads: bool = False
    gateway_max_requests: int = 256  # in flight per gateway; beyond: 503 SlowDown
    gateway_max_writes: int = 48  # bodies being stored at once per gateway
    tls_cert_file: str = ""  # PEM; when set (with the key), gateways serve S3 over HTTPS
    tls_key_file: str = ""
    access_key: str = ""
    secret_key: str = ""
    path: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def total_shards(self) -> int:
        return self.data_shards + self.parity_shards

    @property
    def effective_write_quorum(self) -> int:
        return self.write_quorum or min(self.data_shards + 1, self.total_shards)

    @property
    def effective_inventory_interval_s(self) -> float:
        return self.inventory_interval_s or min(max(self.gc_grace_s / 4, 1.0), 3600.0)

    @property
    def effective_gc_interval_s(self) -> float:
        return self.gc_interval_s or min(max(self.gc_grace_s / 4, 1.0), 3600.0)

    @property
    def effective_gc_delete_margin_s(self) -> float:
        return min(self.gc_delete_margin_s, self.gc_grace_s / 4)

    def node(self, node_id: str) -> NodeConfig:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise ConfigError(f"{self.path or 'cluster.toml'}: no node with id {node_id!r}")

    def by_role(self, role: NodeRole | str) -> list[NodeConfig]:
        return [n for n in self.nodes if n.role == role]

    @property
    def base_dir(self) -> Path:
        return Path(self.path).parent if self.path else Path(".")


_CLUSTER_FIELDS = {
    "secret": str,
    "region": str,
    "data_shards": int,
    "parity_shards": int,
    "write_quorum": int,
    "segment_size_bytes": int,
    "inline_max_bytes": int,
    "down_after_s": (int, float),
    "scrub_interval_s": (int, float),
    "scrub_rate_bytes_per_s": int,
    "gc_grace_s": (int, float),
    "repair_rate_bytes_per_s": int,
    "repair_concurrency": int,
    "repair_lease_s": (int, float),
    "repair_retry_s": (int, float),
    "repair_poll_interval_s": (int, float),
    "inventory_interval_s": (int, float),
    "gc_interval_s": (int, float),
    "gc_delete_margin_s": (int, float),
    "s3_domain": str,
    "allow_stale_reads": bool,
    "gateway_max_requests": int,
    "gateway_max_writes": int,
    "tls_cert_file": str,
    "tls_key_file": str,
}
_NODE_FIELDS = {"id": str, "role": str, "address": str, "data_dir": str, "zone": str,
                "weight": (int, float)}
_ADDRESS_RE = re.compile(r"[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}")


def _line_of(text: str, pattern: str, start_line: int = 1) -> int:
    lines = text.splitlines()
    for number in range(max(start_line, 1), len(lines) + 1):
        if re.search(pattern, lines[number - 1]):
            return number
    return 0


def _fail(path: str, line: int, what: str) -> ConfigError:
    where = f"{path}:{line}" if line else path
    return ConfigError(f"{where}: {what}")


def _check_type(path: str, text: str, section: str, key: str, value: object, kind: object,
                start_line: int = 1) -> None:
    ok = isinstance(value, kind) and not (kind in (int, (int, float)) and isinstance(value, bool))
    if not ok:
        line = _line_of(text, rf"^\s*{re.escape(key)}\s*=", start_line)
        raise _fail(path, line, f"[{section}] {key} has the wrong type ({value!r})")


def parse_config(text: str, path: str = "cluster.toml") -> ClusterConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    cluster = raw.get("cluster")
    if not isinstance(cluster, dict):
        raise _fail(path, 0, "missing [cluster] section")
    for key, value in cluster.items():
        if key in _CLUSTER_FIELDS:
            _check_type(path, text, "cluster", key, value, _CLUSTER_FIELDS[key])
    if not cluster.get("secret"):
        raise _fail(path, _line_of(text, r"^\s*\[cluster\]"), "[cluster] secret is missing")
    nodes = _parse_nodes(raw.get("nodes"), text, path)
    s3 = raw.get("s3", {})
    if not isinstance(s3, dict):
        raise _fail(path, _line_of(text, r"^\s*s3\s*="), "[s3] must be a table")
    known = {k: v for k, v in cluster.items() if k in _CLUSTER_FIELDS}
    extra = {k: v for k, v in cluster.items() if k not in _CLUSTER_FIELDS}
    config = ClusterConfig(nodes=nodes, access_key=str(s3.get("access_key", "")),
                           secret_key=str(s3.get("secret_key", "")), path=path, extra=extra,
                           **{k: (float(v) if k.endswith("_s") else v) for k, v in known.items()})
    _check_policy(config, text, path)
    return config


def _parse_nodes(raw_nodes: object, text: str, path: str) -> tuple[NodeConfig, ...]:
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise _fail(path, 0, "no [[nodes]] entries")
    nodes: list[NodeConfig] = []
    seen_ids: set[str] = set()
    seen_addresses: set[str] = set()
    for position, entry in enumerate(raw_nodes, start=1):
        start = _nth_line(text, r"^\s*\[\[nodes\]\]", position)
        if not isinstance(entry, dict):
            raise _fail(path, start, f"node #{position} is not a table")
        for key in ("id", "role", "address", "data_dir"):
            if key not in entry:
                raise _fail(path, start, f"node #{position} has no {key}")
        for key, value in entry.items():
            if key in _NODE_FIELDS:
                _check_type(path, text, "nodes", key, value, _NODE_FIELDS[key], start)
        line_of = lambda key, start=start: _line_of(text, rf"^\s*{key}\s*=", start)  # noqa: E731
        try:
            validate_node_id(entry["id"])
        except Invalid as exc:
            raise _fail(path, line_of("id"), str(exc)) from exc
        if entry["role"] not in ROLES:
            raise _fail(path, line_of("role"), f"role must be one of {sorted(ROLES)}")
        if not _ADDRESS_RE.fullmatch(entry["address"]):
            raise _fail(path, line_of("address"), f"address {entry['address']!r} is not host:port")
        if entry["id"] in seen_ids:
            raise _fail(path, line_of("id"), f"duplicate node id {entry['id']!r}")
        if entry["address"] in seen_addresses:
            raise _fail(path, line_of("address"), f"duplicate address {entry['address']!r}")
        seen_ids.add(entry["id"])
        seen_addresses.add(entry["address"])
        nodes.append(NodeConfig(id=entry["id"], role=NodeRole(entry["role"]),
                                address=entry["address"], data_dir=entry["data_dir"],
                                zone=str(entry.get("zone", "z1")),
                                weight=float(entry.get("weight", 1.0))))
    return tuple(nodes)


def _nth_line(text: str, pattern: str, n: int) -> int:
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if re.search(pattern, line):
            count += 1
            if count == n:
                return number
    return 0


def _check_policy(config: ClusterConfig, text: str, path: str) -> None:
    line = lambda key: _line_of(text, rf"^\s*{key}\s*=")  # noqa: E731
    if not 1 <= config.data_shards <= 32:
        raise _fail(path, line("data_shards"), "data_shards must be 1..32")
    if not 0 <= config.parity_shards <= 32:
        raise _fail(path, line("parity_shards"), "parity_shards must be 0..32")
    if config.write_quorum and not config.data_shards <= config.write_quorum <= config.total_shards:
        raise _fail(path, line("write_quorum"), "write_quorum must be between k and k+m")
    if not 64 * 1024 <= config.segment_size_bytes <= 256 * MIB:
        raise _fail(path, line("segment_size_bytes"), "segment_size_bytes must be 64KiB..256MiB")
    if not 0 <= config.inline_max_bytes <= MAX_INLINE_BYTES:
        raise _fail(path, line("inline_max_bytes"), "inline_max_bytes must be 0..256KiB")
    if config.segment_size_bytes % config.data_shards:
        raise _fail(path, line("segment_size_bytes"), "segment_size_bytes must divide by data_shards")
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise _fail(path, line("tls_cert_file") or line("tls_key_file"),
                    "tls_cert_file and tls_key_file go together")
    _check_healing(config, line, path)
    if not config.by_role(NodeRole.META):
        raise _fail(path, 0, "no meta node")


def _check_healing(config: ClusterConfig, line: Callable[[str], int], path: str) -> None:
    if not 1 <= config.repair_concurrency <= 64:
        raise _fail(path, line("repair_concurrency"), "repair_concurrency must be 1..64")
    for name in ("repair_lease_s", "repair_retry_s", "repair_poll_interval_s"):
        if getattr(config, name) <= 0:
            raise _fail(path, line(name), f"{name} must be positive")
    for name in ("repair_rate_bytes_per_s", "inventory_interval_s", "gc_interval_s",
                 "gc_delete_margin_s"):
        if getattr(config, name) < 0:
            raise _fail(path, line(name), f"{name} must not be negative")


def load_config(path: str | Path) -> ClusterConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, str(path.resolve()))


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def dump_config(config: ClusterConfig) -> str:
    """Render a config as cluster.toml (round-trips through parse_config)."""
    lines = ["# blobstore cluster description: every process of the cluster reads this file.",
             "[cluster]"]
    for name in _CLUSTER_FIELDS:
        lines.append(f"{name} = {_toml_value(getattr(config, name))}")
    for name, value in sorted(config.extra.items()):  # knobs of the roles (raft_*, ...)
        if isinstance(value, bool | int | float | str):
            lines.append(f"{name} = {_toml_value(value)}")
    lines += ["", "[s3]", f"access_key = {_toml_value(config.access_key)}",
              f"secret_key = {_toml_value(config.secret_key)}"]
    for node in config.nodes:
        lines += ["", "[[nodes]]"]
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            lines.append(f"{f.name} = {_toml_value(value.value if f.name == 'role' else value)}")
    return "\n".join(lines) + "\n"
