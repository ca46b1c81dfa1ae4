"""Real-process test harness: a whole cluster of ``blobstore serve`` processes on 127.0.0.1.

    with Cluster(tmp_path, storage=6, ec="4+2") as cluster:
        s3 = boto3.client("s3", endpoint_url=cluster.endpoint, ...cluster.credentials...)
        cluster.kill("storage-3")            # SIGKILL by default, waits for the exit
        cluster.start("storage-3")           # and waits for healthz

Rules:
- The cluster is written by the same code as ``blobstore init`` into ``root``, on a base port
  whose every node port was free a moment before (chosen at random, so parallel test runs
  rarely collide; retried if a node then finds its port taken).
- Nodes are started exactly as ``blobstore up`` starts them (``launch.health.spawn_node``:
  ``python -m blobstore serve --config F --id ID``, output to ``root/logs/ID.log``), in order
  meta -> storage -> gateway, each waited for on ``/_blobstore/healthz``; a failure names the
  node and shows the tail of its log.
- Every process the harness ever started is killed by pid (SIGKILL) and reaped on exit,
  whether the test passed or not, and at interpreter exit as a last resort.
"""

from __future__ import annotations

import atexit
import dataclasses
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from blobstore.client.endpoint import cluster_endpoint
from blobstore.config import ClusterConfig, NodeConfig
from blobstore.core.records import NodeRole
from blobstore.launch.cluster_dir import ClusterDir, cluster_dir
from blobstore.launch.health import (
    DEFAULT_HEALTH_TIMEOUT_S,
    NodeStartError,
    child_env,
    log_tail,
    spawn_node,
    wait_healthy,
)
from blobstore.launch.init import InitOptions, parse_ec, plan_cluster, write_cluster
from blobstore.launch.supervisor import START_ORDER
from blobstore.testing.netns import NetnsLab

BASE_PORT_RANGE = (20000, 30000)  # below Linux's ephemeral range (32768+)
BASE_PORT_ATTEMPTS = 200
START_ATTEMPTS = 3
KILL_WAIT_S = 10.0


class Credentials(NamedTuple):
    access_key: str
    secret_key: str


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could listen on ``port`` now (SO_REUSEADDR, as our servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_base_port(options: InitOptions, rng: random.Random | None = None) -> int:
    """A base port for ``blobstore init`` at which every node of ``options`` can listen now."""
    rng = rng or random.Random()
    probe_dir = cluster_dir("/nonexistent")  # only the ports of the plan are looked at
    for _ in range(BASE_PORT_ATTEMPTS):
        base = rng.randrange(*BASE_PORT_RANGE) // 10 * 10
        config = plan_cluster(probe_dir, _with_base_port(options, base))
        if all(port_is_free(node.port, node.host) for node in config.nodes):
            return base
    raise RuntimeError(f"no free block of ports in {BASE_PORT_RANGE} after "
                       f"{BASE_PORT_ATTEMPTS} tries")


def plan_with_free_ports(directory: ClusterDir, options: InitOptions,
                         rng: random.Random | None = None) -> ClusterConfig:
    """Plan ``options`` (as ``blobstore init`` would) on a base port whose ports are free."""
    return plan_cluster(directory, _with_base_port(options, free_base_port(options, rng)))


def _with_base_port(options: InitOptions, base_port: int) -> InitOptions:
    return dataclasses.replace(options, base_port=base_port)


def faketime_library() -> str | None:
    """libfaketime's path (Debian's faketime package), or None where it is missing."""
    import glob

    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def make_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (openssl), as a test CA bundle too."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class Cluster:
    """A cluster of real processes in ``root``; a context manager that always cleans up."""

    def __init__(self, root: str | Path, *, meta: int = 1, storage: int = 8, gateway: int = 1,
                 ec: str = "4+2", zones: int = 1, down_after_s: float = 30.0,
                 scrub_interval_s: float = 7 * 86400.0, gc_grace_s: float = 3600.0,
                 segment_size_bytes: int = 4 * 1024 * 1024,  # small: many segments per test MiB
                 health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S, start: bool = True,
                 netns_roles: tuple[str, ...] = (), tls: bool = False,
                 s3_domain: str = "", settings: dict[str, object] | None = None,
                 storage_disk_bytes: int = 0, fake_clock_roles: tuple[str, ...] = ()) -> None:
        data_shards, parity_shards = parse_ec(ec)
        self.options = InitOptions(meta=meta, storage=storage, gateway=gateway,
                                   data_shards=data_shards, parity_shards=parity_shards,
                                   zones=zones, down_after_s=down_after_s,
                                   scrub_interval_s=scrub_interval_s, gc_grace_s=gc_grace_s,
                                   segment_size_bytes=segment_size_bytes)
        self.directory = cluster_dir(root)
        self.health_timeout_s = health_timeout_s
        self.start_on_enter = start
        self._config: ClusterConfig | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._every_process: list[subprocess.Popen[bytes]] = []
        # Nodes of these roles run as separate hosts in network namespaces (needs root):
        # their own address, and a link that ``partition`` cuts.
        self.netns_roles = netns_roles
        self.tls = tls  # gateways serve HTTPS with a self-signed certificate made here
        self.s3_domain = s3_domain  # virtual-host-style addressing under this domain
        self.settings = settings or {}  # other [cluster] fields of cluster.toml to set
        # Each storage node on its own small filesystem (tmpfs, needs root), so that a
        # test can fill one up: SPEC §5's "disk full on a node".
        self.storage_disk_bytes = storage_disk_bytes
        self._mounts: list[str] = []
        # Nodes of these roles read their wall clock through libfaketime, whose offset
        # ``set_clock_offset`` changes while they run (monotonic time is left alone).
        self.fake_clock_roles = fake_clock_roles if faketime_library() else ()
        self.lab: NetnsLab | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        atexit.register(self.close)
        try:
            self.write_config()
            if self.start_on_enter:
                self.start_all()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write_config(self) -> ClusterConfig:
        """Write cluster.toml and credentials (as ``blobstore init``) on free ports."""
        config = plan_with_free_ports(self.directory, self.options)
        if self.netns_roles:
            config = self._move_into_namespaces(config)
        if self.s3_domain:
            config = dataclasses.replace(config, s3_domain=self.s3_domain)
        if self.settings:
            config = dataclasses.replace(config, **self.settings)  # type: ignore[arg-type]
        if self.tls:
            cert, key = make_self_signed_certificate(self.root / "tls")
            config = dataclasses.replace(config, tls_cert_file=str(cert), tls_key_file=str(key))
        self._config = config
        write_cluster(self.directory, self._config, force=True)
        if self.storage_disk_bytes:
            self._mount_storage_disks(config)
        return self._config

    def reload_config(self) -> ClusterConfig:
        """Read cluster.toml again (after ``blobstore node add`` appended a node to it)."""
        from blobstore.config import load_config

        self._config = load_config(self.directory.config_path)
        return self._config

    def _mount_storage_disks(self, config: ClusterConfig) -> None:
        for node in config.by_role(NodeRole.STORAGE):
            path = Path(node.data_dir)
            path.mkdir(parents=True, exist_ok=True)
            if str(path) in self._mounts:
                continue
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.storage_disk_bytes}",
                            "tmpfs", str(path)], check=True, capture_output=True, timeout=30)
            self._mounts.append(str(path))

    def _move_into_namespaces(self, config: ClusterConfig) -> ClusterConfig:
        if self.lab is None:
            self.lab = NetnsLab()
            self.lab.open()
        nodes = []
        for node in config.nodes:
            if node.role in self.netns_roles:
                address = self.lab.hosts[node.id][2] if node.id in self.lab.hosts \
                    else self.lab.add_host(node.id)
                node = dataclasses.replace(node, address=f"{address}:{node.port}")
            nodes.append(node)
        return dataclasses.replace(config, nodes=tuple(nodes))

    def _clock_file(self, node_id: str) -> Path:
        return self.root / "clocks" / node_id

    def _faketime_env(self, node_id: str) -> list[str]:
        clock = self._clock_file(node_id)
        clock.parent.mkdir(parents=True, exist_ok=True)
        if not clock.exists():
            clock.write_text("+0\n")
        return ["env", f"LD_PRELOAD={faketime_library()}", f"FAKETIME_TIMESTAMP_FILE={clock}",
                "FAKETIME_CACHE_DURATION=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"]

    def has_fake_clock(self, node_id: str) -> bool:
        return self.config.node(node_id).role in self.fake_clock_roles

    def set_clock_offset(self, node_id: str, seconds: float) -> None:
        """Jump a fake-clock node's wall clock to real time + ``seconds`` (within ~1 s)."""
        assert self.has_fake_clock(node_id), f"{node_id} has no fake clock"
        self._clock_file(node_id).write_text(f"{seconds:+.0f}\n")

    def partition(self, node_id: str) -> None:
        """Cut a namespaced node off from every other process (both directions)."""
        assert self.lab is not None, "partition needs netns_roles"
        self.lab.cut(node_id)

    def degrade_link(self, node_id: str, delay_ms: int, loss_percent: float,
                     rate_kbit: int = 1024) -> str:
        """Make a namespaced node's link slow (and lossy where netem exists), both ways."""
        assert self.lab is not None, "degrade_link needs netns_roles"
        return self.lab.degrade(node_id, delay_ms, loss_percent, rate_kbit)

    def restore_link(self, node_id: str) -> None:
        assert self.lab is not None, "restore_link needs netns_roles"
        self.lab.restore(node_id)

    def heal(self, node_id: str) -> None:
        assert self.lab is not None, "heal needs netns_roles"
        self.lab.heal(node_id)

    def start_all(self) -> None:
        """Start every node, meta -> storage -> gateway, each waited for on healthz."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_roles()
                return
            except NodeStartError as error:
                if attempt == START_ATTEMPTS or "address already in use" not in str(error):
                    raise
                self._kill_all()  # someone took one of our ports meanwhile: replan and retry
                self.write_config()

    def _start_roles(self) -> None:
        for role in START_ORDER:
            nodes = self.config.by_role(role)
            for node in nodes:
                self.start(node.id, wait=False)
            for node in nodes:
                self.wait_healthy(node.id)

    def close(self) -> None:
        """Kill (SIGKILL) and reap every process this harness started. Idempotent."""
        self._kill_all()
        if self.lab is not None:
            self.lab.close()
            self.lab = None
        for mount in reversed(self._mounts):
            subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)
        self._mounts.clear()
        atexit.unregister(self.close)

    def _kill_all(self) -> None:
        for process in self._every_process:
            if process.poll() is None:
                try:
                    process.kill()
                except ProcessLookupError:
                    pass
        for process in self._every_process:
            try:
                process.wait(KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
        self._every_process.clear()
        self._processes.clear()

    # -- nodes -------------------------------------------------------------------------------

    def start(self, node_id: str, wait: bool = True) -> int:
        """Start one node (it must not be running); returns its pid."""
        current = self._processes.get(node_id)
        if current is not None and current.poll() is None:
            raise RuntimeError(f"{node_id} is already running (pid {current.pid})")
        self.config.node(node_id)  # ConfigError for an unknown id
        prefix = self.lab.exec_prefix(node_id) if self.lab and node_id in self.lab.hosts else []
        if self.config.node(node_id).role in self.fake_clock_roles:
            prefix = [*prefix, *self._faketime_env(node_id)]
        process = spawn_node(self.directory.config_path, node_id, self.log_path(node_id), prefix)
        self._processes[node_id] = process
        self._every_process.append(process)
        if wait:
            self.wait_healthy(node_id)
        return process.pid

    def kill(self, node_id: str, sig: int = signal.SIGKILL, wait: bool = True) -> None:
        """Send ``sig`` to a node; for SIGKILL/SIGTERM/SIGINT (and ``wait``), reap it."""
        process = self._processes.get(node_id)
        if process is None or process.poll() is not None:
            raise RuntimeError(f"{node_id} is not running")
        process.send_signal(sig)
        if wait and sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            process.wait(KILL_WAIT_S)

    def stop(self, node_id: str, timeout_s: float = KILL_WAIT_S) -> None:
        """Stop a node cleanly (SIGTERM), or SIGKILL it after ``timeout_s``."""
        process = self._processes.get(node_id)
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(KILL_WAIT_S)

    def restart(self, node_id: str) -> int:
        self.stop(node_id)
        return self.start(node_id)

    def wait_healthy(self, node_id: str, timeout_s: float | None = None) -> None:
        node = self.config.node(node_id)
        wait_healthy(node_id, node.address, self._processes.get(node_id),
                     self.log_path(node_id), timeout_s or self.health_timeout_s)

    def pid(self, node_id: str) -> int | None:
        process = self._processes.get(node_id)
        return process.pid if process is not None and process.poll() is None else None

    def is_running(self, node_id: str) -> bool:
        return self.pid(node_id) is not None

    def pids(self) -> dict[str, int]:
        return {node_id: pid for node_id in self._processes if (pid := self.pid(node_id))}

    def node(self, node_id: str) -> NodeConfig:
        return self.config.node(node_id)

    def node_ids(self, role: NodeRole | str | None = None) -> list[str]:
        return [node.id for node in self.config.nodes if role is None or node.role == role]

    def log_path(self, node_id: str) -> Path:
        return self.directory.log_path(node_id)

    def log_tail(self, node_id: str, lines: int = 50) -> str:
        return log_tail(self.log_path(node_id), lines)

    # -- what tests talk to ------------------------------------------------------------------

    @property
    def config(self) -> ClusterConfig:
        if self._config is None:
            raise RuntimeError("the cluster is not written yet (use it as a context manager)")
        return self._config

    @property
    def config_path(self) -> Path:
        return self.directory.config_path

    @property
    def root(self) -> Path:
        return self.directory.root

    @property
    def endpoint(self) -> str:
        """``http://ADDRESS`` of the first gateway."""
        return cluster_endpoint(self.config)

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.config.access_key, self.config.secret_key)

    def env(self) -> dict[str, str]:
        """An environment in which ``blobstore`` and AWS tools talk to this cluster."""
        env = child_env()
        env.update({"BLOBSTORE_CONFIG": str(self.config_path),
                    "AWS_ACCESS_KEY_ID": self.config.access_key,
                    "AWS_SECRET_ACCESS_KEY": self.config.secret_key,
                    "AWS_DEFAULT_REGION": self.config.region, "AWS_REGION": self.config.region})
        if self.config.by_role(NodeRole.GATEWAY):
            env["BLOBSTORE_ENDPOINT"] = env["AWS_ENDPOINT_URL"] = self.endpoint
        return env

    def cli(self, *args: str, input: bytes | None = None, timeout_s: float = 120.0,
            check: bool = False) -> subprocess.CompletedProcess[bytes]:
        """Run ``python -m blobstore ARGS`` against this cluster; output captured."""
        return subprocess.run([sys.executable, "-m", "blobstore", *args], input=input,
                              capture_output=True, env=self.env(), timeout=timeout_s,
                              check=check, cwd=self.root)


__all__ = ["Cluster", "Credentials", "free_base_port", "free_port", "plan_with_free_ports", "port_is_free"]
