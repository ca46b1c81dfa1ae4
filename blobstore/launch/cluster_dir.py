"""The files of a cluster directory, and how a command finds its cluster.

A cluster directory ``D`` made by ``blobstore init`` holds::

    D/cluster.toml        the cluster description every process reads (mode 0600: it has secrets)
    D/credentials         AWS_ACCESS_KEY_ID=... / AWS_SECRET_ACCESS_KEY=... (mode 0600)
    D/data/<node id>/     each node's data dir
    D/logs/<node id>.log  each node's stdout/stderr when started by ``up``
    D/run/pids.json       {"supervisor": pid, "ready": bool, "nodes": {id: pid|null}} while up

Rules:
- Operator commands find ``cluster.toml`` by, in order: ``--config F``, ``--dir D``,
  ``$BLOBSTORE_CONFIG``, ``./blobstore-data/cluster.toml``.
- A pid counts as running only if the process exists, is not a zombie and (where /proc
  exists) runs blobstore, so a recycled pid is never signalled by ``down``.
- Private files are written whole (tmp file, fsync, rename) with mode 0600.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_ENV = "BLOBSTORE_CONFIG"
DEFAULT_DIR = Path("blobstore-data")
CONFIG_NAME = "cluster.toml"
CREDENTIALS_NAME = "credentials"


@dataclass(frozen=True, slots=True)
class ClusterDir:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def credentials_path(self) -> Path:
        return self.root / CREDENTIALS_NAME

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def pids_path(self) -> Path:
        return self.run_dir / "pids.json"

    def data_dir(self, node_id: str) -> Path:
        return self.root / "data" / node_id

    def log_path(self, node_id: str) -> Path:
        return self.logs_dir / f"{node_id}.log"

    @property
    def supervisor_log_path(self) -> Path:
        return self.logs_dir / "supervisor.log"


def cluster_dir(directory: str | Path | None) -> ClusterDir:
    """The cluster directory named by ``--dir`` (default ``./blobstore-data``), made absolute."""
    return ClusterDir(Path(directory or DEFAULT_DIR).expanduser().absolute())


def find_config_path(config: str | Path | None = None, directory: str | Path | None = None,
                     environ: dict[str, str] | None = None) -> Path:
    """Where an operator command's cluster.toml is (it may not exist)."""
    env = os.environ if environ is None else environ
    if config:
        return Path(config).expanduser()
    if directory:
        return cluster_dir(directory).config_path
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    return cluster_dir(None).config_path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole and durably, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_credentials(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (``export`` prefixes, comments and blank lines allowed)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def credentials_text(access_key: str, secret_key: str) -> str:
    return f"AWS_ACCESS_KEY_ID={access_key}\nAWS_SECRET_ACCESS_KEY={secret_key}\n"


@dataclass(slots=True)
class PidFile:
    """The pids a supervisor recorded; ``nodes`` maps node id to pid (None while restarting)."""

    supervisor: int | None = None
    ready: bool = False
    nodes: dict[str, int | None] = field(default_factory=dict)

    def all_pids(self) -> list[int]:
        pids = [pid for pid in self.nodes.values() if pid]
        return ([self.supervisor] if self.supervisor else []) + pids


def read_pids(path: Path) -> PidFile | None:
    """The pid file, or None if there is none or it is unreadable (a stale half-write)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    nodes = raw.get("nodes") if isinstance(raw.get("nodes"), dict) else {}
    return PidFile(supervisor=_as_pid(raw.get("supervisor")), ready=bool(raw.get("ready")),
                   nodes={str(k): _as_pid(v) for k, v in nodes.items()})


def write_pids(path: Path, pids: PidFile) -> None:
    text = json.dumps({"supervisor": pids.supervisor, "ready": pids.ready, "nodes": pids.nodes},
                      indent=2)
    write_private(path, text + "\n")


def _as_pid(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process that runs blobstore (where /proc tells)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: a recycled pid, not ours
    proc = Path("/proc") / str(pid)
    if not proc.is_dir():
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    if state and state[0] in ("Z", "X"):
        return False
    return b"blobstore" in cmdline
