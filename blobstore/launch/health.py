"""Starting node processes and waiting for them to answer ``GET /_blobstore/healthz``.

Shared by the supervisor (``blobstore up``) and the test harness (``blobstore.testing``), so a
node is started the same way everywhere: ``python -m blobstore serve --config F --id ID`` with
stdout and stderr appended to its log file, in its own process group (a Ctrl-C on the
terminal reaches the supervisor only, which then stops the nodes in order).

A wait is a polling loop with a deadline: each probe has a 1 s timeout, and the loop gives up
early if the process exits, so a node that fails to start is reported at once with the tail of
its log.
"""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import blobstore
from blobstore.core.errors import Unavailable

HEALTH_PATH = "/_blobstore/healthz"
DEFAULT_HEALTH_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 1.0
POLL_INTERVAL_S = 0.1
LOG_TAIL_LINES = 20


class NodeStartError(Unavailable):
    """A node did not become healthy."""

    code = "NodeStartError"


def child_env() -> dict[str, str]:
    """The environment of a node process: ours, with this blobstore importable."""
    env = dict(os.environ)
    package_parent = str(Path(blobstore.__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_parent not in paths:
        env["PYTHONPATH"] = os.pathsep.join([package_parent, *paths])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn_node(config_path: Path, node_id: str, log_path: Path,
               prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Start one node as a child process, logging to ``log_path`` (appended).

    ``prefix`` wraps the command (tests run nodes in a network namespace this way).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", "blobstore", "serve", "--config", str(config_path),
             "--id", node_id],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
            process_group=0, close_fds=True)


def probe_healthz(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if the node at ``host:port`` answers healthz with 200 (over HTTP, or over
    HTTPS for a gateway that serves TLS; the certificate is not checked by a probe)."""
    return _probe(address, timeout_s, tls=False) or _probe(address, timeout_s, tls=True)


def _probe(address: str, timeout_s: float, tls: bool) -> bool:
    host, _, port = address.rpartition(":")
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host.strip("[]"), int(port), timeout=timeout_s, context=context)
    else:
        connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout_s)
    try:
        connection.request("GET", HEALTH_PATH)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ("" if there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def wait_healthy(node_id: str, address: str, process: subprocess.Popen[bytes] | None,
                 log_path: Path, timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
    """Return once the node answers healthz; NodeStartError (with its log tail) otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise _start_error(node_id, f"exited with code {process.returncode}", log_path)
        if probe_healthz(address):
            return
        if should_stop():
            raise NodeStartError(f"{node_id}: start interrupted")
        if time.monotonic() >= deadline:
            raise _start_error(node_id, f"did not answer {HEALTH_PATH} on {address} within "
                               f"{timeout_s:g}s", log_path)
        time.sleep(POLL_INTERVAL_S)


def _start_error(node_id: str, what: str, log_path: Path) -> NodeStartError:
    tail = log_tail(log_path)
    message = f"{node_id} {what}; log: {log_path}"
    if tail:
        message += "\n" + "\n".join(f"  | {line}" for line in tail.splitlines())
    return NodeStartError(message)
