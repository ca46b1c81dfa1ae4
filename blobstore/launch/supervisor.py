"""``blobstore up`` / ``down``: run every node of a cluster.toml on this machine, supervised.

Theory of operation:
- Start order is meta -> storage -> gateway; each role's nodes are started together and must
  all answer healthz before the next role starts, so storage nodes find meta and gateways find
  both. A node that does not come up fails ``up`` with its name and the tail of its log, and
  everything already started is stopped again.
- Each node is a child process ``python -m blobstore serve`` in its own process group, logging
  to ``D/logs/<id>.log``. ``D/run/pids.json`` records the supervisor's pid and every child's;
  ``ready`` turns true once every node is healthy (``up --detach`` waits for that).
- A child that exits while the supervisor is not stopping is restarted after a back-off that
  starts at 0.5 s and doubles to 30 s; it resets to 0.5 s once a child has stayed up 60 s.
- SIGINT, SIGTERM or SIGHUP stops the supervisor: SIGTERM to every child, up to 10 s to exit,
  then SIGKILL; the pid file is removed last.
- ``--detach`` re-runs ``up`` in a new session (hidden ``--supervisor-child`` flag, output to
  ``D/logs/supervisor.log``) and returns once pids.json says ready.
- ``down`` signals by recorded pid only, and only pids that still run blobstore (see
  ``cluster_dir.pid_alive``): SIGTERM to the supervisor, then SIGTERM/SIGKILL to any child left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from blobstore.config import ClusterConfig, NodeConfig, load_config
from blobstore.core.errors import Conflict
from blobstore.core.records import NodeRole
from blobstore.launch.cluster_dir import ClusterDir, PidFile, pid_alive, read_pids, write_pids
from blobstore.launch.health import (
    DEFAULT_HEALTH_TIMEOUT_S,
    NodeStartError,
    child_env,
    log_tail,
    spawn_node,
    wait_healthy,
)

START_ORDER = (NodeRole.META, NodeRole.STORAGE, NodeRole.GATEWAY)
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_AFTER_S = 60.0
STOP_GRACE_S = 10.0
POLL_INTERVAL_S = 0.2
DOWN_SUPERVISOR_WAIT_S = STOP_GRACE_S + 5.0
SUPERVISOR_CHILD_FLAG = "--supervisor-child"

Report = Callable[[str], None]


class AlreadyRunning(Conflict):
    """Processes of this cluster are already running."""

    code = "AlreadyRunning"


class _StopRequested(Exception):
    """A signal asked the supervisor to stop while it was starting nodes."""


@dataclass(slots=True)
class _Child:
    node: NodeConfig
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = BACKOFF_INITIAL_S
    restart_at: float | None = None


class Supervisor:
    """Starts, watches and stops the nodes of one cluster directory."""

    def __init__(self, config: ClusterConfig, directory: ClusterDir, report: Report,
                 health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S) -> None:
        self.config = config
        self.directory = directory
        self.report = report
        self.health_timeout_s = health_timeout_s
        self.children = [_Child(node) for role in START_ORDER for node in config.by_role(role)]
        self.ready = False
        self._stopping = False

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._stopping = True

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.request_stop)

    def start_all(self) -> None:
        """Start every node, role by role; NodeStartError or _StopRequested if not all came up."""
        for role in START_ORDER:
            group = [child for child in self.children if child.node.role == role]
            for child in group:
                self._spawn(child)
            for child in group:
                try:
                    wait_healthy(child.node.id, child.node.address, child.process,
                                 self.directory.log_path(child.node.id), self.health_timeout_s,
                                 should_stop=lambda: self._stopping)
                except NodeStartError:
                    if self._stopping:
                        raise _StopRequested from None
                    raise
                self.report(f"{child.node.id} up on {child.node.address} "
                            f"(pid {child.process.pid if child.process else '?'})")
            if self._stopping:
                raise _StopRequested
        self.ready = True
        self._write_pids()

    def supervise(self) -> None:
        """Restart children that exit, until a signal asks to stop."""
        while not self._stopping:
            now = time.monotonic()
            for child in self.children:
                self._check_child(child, now)
            time.sleep(POLL_INTERVAL_S)

    def stop_all(self) -> None:
        """SIGTERM every child, wait up to STOP_GRACE_S, SIGKILL the rest."""
        self._stopping = True
        running = [c for c in self.children if c.process and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            _signal_quietly(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.report(f"{child.node.id} did not stop in {STOP_GRACE_S:g}s; killing it")
                child.process.kill()
                child.process.wait()
            self.report(f"{child.node.id} stopped")

    def _spawn(self, child: _Child) -> None:
        child.process = spawn_node(self.directory.config_path, child.node.id,
                                   self.directory.log_path(child.node.id))
        child.started_at = time.monotonic()
        child.restart_at = None
        self._write_pids()

    def _check_child(self, child: _Child, now: float) -> None:
        if child.process is not None and child.process.poll() is not None:
            code = child.process.returncode
            if now - child.started_at >= BACKOFF_RESET_AFTER_S:
                child.backoff_s = BACKOFF_INITIAL_S
            child.restart_at = now + child.backoff_s
            self.report(f"{child.node.id} exited with code {code}; restarting in "
                        f"{child.backoff_s:g}s (log: {self.directory.log_path(child.node.id)})")
            child.backoff_s = min(child.backoff_s * 2, BACKOFF_MAX_S)
            child.process = None
            self._write_pids()
        elif child.process is None and child.restart_at is not None and now >= child.restart_at:
            self._spawn(child)
            assert child.process is not None
            self.report(f"{child.node.id} restarted (pid {child.process.pid})")

    def _write_pids(self) -> None:
        nodes = {c.node.id: (c.process.pid if c.process else None) for c in self.children}
        write_pids(self.directory.pids_path,
                   PidFile(supervisor=os.getpid(), ready=self.ready, nodes=nodes))


def check_not_running(directory: ClusterDir) -> None:
    """AlreadyRunning if pids.json names live processes; a stale pid file is removed."""
    pids = read_pids(directory.pids_path)
    if pids is None:
        return
    alive = [pid for pid in pids.all_pids() if pid_alive(pid)]
    if alive:
        raise AlreadyRunning(f"the cluster in {directory.root} is already running (pids "
                             f"{', '.join(map(str, alive))}); stop it with "
                             f"`blobstore down --dir {directory.root}`")
    directory.pids_path.unlink(missing_ok=True)


def run_supervisor(directory: ClusterDir, report: Report,
                   on_ready: Callable[[ClusterConfig], None] = lambda config: None,
                   health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S) -> None:
    """Start the cluster, call ``on_ready``, supervise until a signal; always stop everything."""
    config = load_config(directory.config_path)
    check_not_running(directory)
    supervisor = Supervisor(config, directory, report, health_timeout_s)
    supervisor.install_signal_handlers()
    try:
        supervisor.start_all()
        on_ready(config)
        supervisor.supervise()
    except _StopRequested:
        report("start interrupted")
    finally:
        supervisor.stop_all()
        directory.pids_path.unlink(missing_ok=True)


def start_detached(directory: ClusterDir,
                   health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S) -> ClusterConfig:
    """Run the supervisor in its own session; return once every node is healthy."""
    config = load_config(directory.config_path)
    check_not_running(directory)
    directory.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = directory.supervisor_log_path
    command = [sys.executable, "-m", "blobstore", "up", "--dir", str(directory.root),
               "--health-timeout", str(health_timeout_s), SUPERVISOR_CHILD_FLAG]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=child_env(),
                                   start_new_session=True, close_fds=True)
    deadline = time.monotonic() + health_timeout_s * len(START_ORDER) + 15.0
    try:
        _wait_supervisor_ready(process, directory, deadline)
    except BaseException:
        if process.poll() is None:
            process.terminate()
            if not _wait_gone([process.pid], DOWN_SUPERVISOR_WAIT_S):
                process.kill()
        raise
    return config


def _wait_supervisor_ready(process: subprocess.Popen[bytes], directory: ClusterDir,
                           deadline: float) -> None:
    while True:
        if process.poll() is not None:
            raise NodeStartError(_supervisor_failure(directory, process.returncode))
        pids = read_pids(directory.pids_path)
        if pids is not None and pids.supervisor == process.pid and pids.ready:
            return
        if time.monotonic() >= deadline:
            raise NodeStartError(_supervisor_failure(directory, None))
        time.sleep(POLL_INTERVAL_S)


def _supervisor_failure(directory: ClusterDir, code: int | None) -> str:
    what = "did not report ready in time" if code is None else f"exited with code {code}"
    tail = log_tail(directory.supervisor_log_path)
    lines = [f"the supervisor {what}; log: {directory.supervisor_log_path}"]
    lines += [f"  | {line}" for line in tail.splitlines()]
    return "\n".join(lines)


def down(directory: ClusterDir, report: Report) -> int:
    """Stop the cluster recorded in pids.json; the number of processes that were running."""
    pids = read_pids(directory.pids_path)
    if pids is None:
        return 0
    supervisor = pids.supervisor if pids.supervisor and pid_alive(pids.supervisor) else None
    nodes = [pid for pid in pids.nodes.values() if pid and pid_alive(pid)]
    running = len(nodes) + (1 if supervisor else 0)
    if supervisor:
        report(f"stopping supervisor (pid {supervisor})")
        _signal_quietly(supervisor, signal.SIGTERM)
        _wait_gone([supervisor], DOWN_SUPERVISOR_WAIT_S)
    left = [pid for pid in nodes if pid_alive(pid)]
    if left:
        report(f"stopping {len(left)} node process(es) directly: {', '.join(map(str, left))}")
        for pid in left:
            _signal_quietly(pid, signal.SIGTERM)
        _wait_gone(left, STOP_GRACE_S)
    for pid in [p for p in [supervisor, *nodes] if p and pid_alive(p)]:
        report(f"pid {pid} did not stop; killing it")
        _signal_quietly(pid, signal.SIGKILL)
    _wait_gone([p for p in [supervisor, *nodes] if p], 5.0)
    directory.pids_path.unlink(missing_ok=True)
    return running


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_gone(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True
