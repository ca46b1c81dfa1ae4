"""Faults the chaos runner injects, each with its own healing, chosen by a seeded rng.

A ``Control`` is what the faults act through: the test harness (``HarnessControl``: kill
and start by pid, partitions through network namespaces) or an operator's cluster started
by ``blobstore up`` (``SupervisedControl``: kill by the recorded pid; the supervisor
restarts the process, which is the recovery being tested).

Faults:
- ``kill``: kill -9 one process (any role); it is restarted after a few seconds.
- ``corrupt``: flip one payload byte of a random shard file (the scrubber or a read must
  find it and repair must rebuild it).
- ``delete_shard``: remove a random shard file.
- ``partition``: cut one namespaced node off from everyone, heal after a few seconds.
- ``slow_link``: a namespaced node's link gets slow (tc tbf), and lossy and delayed where the
  kernel has netem, for a while.
- ``disk_full``: fill a storage node's own filesystem (a small one the test made) to the
  last MiB; it must refuse writes while the gateway places around it, and lose nothing.
- ``clock_jump``: a node's wall clock jumps (minutes back or forward, an hour ahead) and
  returns; signatures it makes or checks may be refused meanwhile, nothing may be lost.
- ``overload``: a burst of ten times the workload's concurrency for a few seconds; the
  excess must get 503 SlowDown within a second (``burst`` does it and says how it went).
Every injected fault is recorded by kind for the report.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from blobstore.config import ClusterConfig
from blobstore.core.records import NodeRole

FILLER_NAME = "chaos-disk-filler"


class Control(Protocol):
    config: ClusterConfig

    def running(self) -> list[str]: ...
    def kill(self, node_id: str) -> None: ...
    def start(self, node_id: str) -> None: ...
    def can_partition(self, node_id: str) -> bool: ...
    def can_jump_clock(self, node_id: str) -> bool: ...
    def jump_clock(self, node_id: str, seconds: float) -> None: ...
    def partition(self, node_id: str) -> None: ...
    def degrade_link(self, node_id: str, delay_ms: int, loss_percent: float,
                     rate_kbit: int) -> str: ...
    def restore_link(self, node_id: str) -> None: ...
    def heal(self, node_id: str) -> None: ...


class HarnessControl:
    """Faults on a ``blobstore.testing.processes.Cluster``."""

    def __init__(self, cluster) -> None:  # type: ignore[no-untyped-def]
        self.cluster = cluster
        self.config = cluster.config

    def running(self) -> list[str]:
        return [n.id for n in self.config.nodes if self.cluster.is_running(n.id)]

    def kill(self, node_id: str) -> None:
        self.cluster.kill(node_id)

    def start(self, node_id: str) -> None:
        if not self.cluster.is_running(node_id):
            self.cluster.start(node_id, wait=False)

    def can_jump_clock(self, node_id: str) -> bool:
        return bool(self.cluster.has_fake_clock(node_id))

    def jump_clock(self, node_id: str, seconds: float) -> None:
        self.cluster.set_clock_offset(node_id, seconds)

    def can_partition(self, node_id: str) -> bool:
        lab = self.cluster.lab
        return lab is not None and node_id in lab.hosts

    def partition(self, node_id: str) -> None:
        self.cluster.partition(node_id)

    def degrade_link(self, node_id: str, delay_ms: int, loss_percent: float,
                     rate_kbit: int) -> str:
        return str(self.cluster.degrade_link(node_id, delay_ms, loss_percent, rate_kbit))

    def restore_link(self, node_id: str) -> None:
        self.cluster.restore_link(node_id)

    def heal(self, node_id: str) -> None:
        self.cluster.heal(node_id)


class SupervisedControl:
    """Faults on a cluster run by ``blobstore up``: pids from ``run/pids.json``."""

    def __init__(self, config: ClusterConfig, pids_path: Path) -> None:
        self.config = config
        self.pids_path = pids_path

    def _pids(self) -> dict[str, int]:
        try:
            data = json.loads(self.pids_path.read_text())
        except (OSError, ValueError):
            return {}
        nodes = data.get("nodes", data) if isinstance(data, dict) else {}
        return {k: int(v) for k, v in nodes.items() if isinstance(v, int | str)
                and str(v).isdigit()}

    def running(self) -> list[str]:
        alive = []
        for node_id, pid in self._pids().items():
            try:
                os.kill(pid, 0)
                alive.append(node_id)
            except OSError:
                pass
        return alive

    def kill(self, node_id: str) -> None:
        pid = self._pids().get(node_id)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def start(self, node_id: str) -> None:
        """The supervisor restarts killed processes itself."""

    def can_partition(self, node_id: str) -> bool:
        return False

    def can_jump_clock(self, node_id: str) -> bool:
        return False

    def jump_clock(self, node_id: str, seconds: float) -> None:
        raise NotImplementedError

    def partition(self, node_id: str) -> None:
        raise NotImplementedError

    def degrade_link(self, node_id: str, delay_ms: int, loss_percent: float,
                     rate_kbit: int) -> str:
        raise NotImplementedError

    def restore_link(self, node_id: str) -> None:
        raise NotImplementedError

    def heal(self, node_id: str) -> None:
        raise NotImplementedError


@dataclass
class Injector:
    control: Control
    rng: random.Random
    burst: Callable[[], str | None] | None = None
    injected: dict[str, int] = field(default_factory=dict)
    _pending: list[tuple[float, str, str]] = field(default_factory=list)  # (due, action, node)

    def _record(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def inject_one(self, kinds: list[str]) -> str:
        kind = self.rng.choice(kinds)
        done = getattr(self, f"_{kind}")()
        if done:
            self._record(kind)
        return f"{kind}: {done or 'skipped'}"

    def _pick(self, eligible: Callable[[str], bool]) -> str | None:
        """A seeded choice among nodes that are eligible and have no fault pending."""
        busy = {node for _, _, node in self._pending}
        candidates = sorted(n.id for n in self.control.config.nodes
                            if n.id not in busy and eligible(n.id))
        return self.rng.choice(candidates) if candidates else None

    def _later(self, low_s: float, high_s: float, action: str, node_id: str) -> None:
        self._pending.append((time.monotonic() + self.rng.uniform(low_s, high_s), action,
                              node_id))

    def _kill(self) -> str | None:
        running = set(self.control.running())
        node_id = self._pick(lambda node: node in running)
        if node_id is None:
            return None
        self.control.kill(node_id)
        self._later(1, 5, "start", node_id)
        return node_id

    def _shard_files(self) -> list[Path]:
        files: list[Path] = []
        for node in self.control.config.by_role(NodeRole.STORAGE):
            root = Path(node.data_dir) / "shards"
            if root.is_dir():
                files += sorted(p for p in root.glob("*/*/*") if ".tmp." not in p.name)
        return files

    def _corrupt(self) -> str | None:
        files = self._shard_files()
        if not files:
            return None
        path = self.rng.choice(files)
        try:
            with open(path, "r+b") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size <= 64:
                    return None
                offset = self.rng.randrange(64, size)  # past the header: a payload byte
                handle.seek(offset)
                byte = handle.read(1)
                handle.seek(offset)
                handle.write(bytes([byte[0] ^ 0x5A]))
        except OSError:
            return None
        return path.name

    def _delete_shard(self) -> str | None:
        files = self._shard_files()
        if not files:
            return None
        path = self.rng.choice(files)
        try:
            path.unlink()
        except OSError:
            return None
        return path.name

    def _partition(self) -> str | None:
        node_id = self._pick(self.control.can_partition)
        if node_id is None:
            return None
        self.control.partition(node_id)
        self._later(3, 8, "heal", node_id)
        return node_id

    def _disk_full(self) -> str | None:
        config = self.control.config
        node_id = self._pick(lambda n: config.node(n).role == NodeRole.STORAGE
                             and os.path.ismount(config.node(n).data_dir))
        if node_id is None:
            return None
        node = config.node(node_id)
        stats = os.statvfs(node.data_dir)
        free = stats.f_bavail * stats.f_frsize - 1024 * 1024
        if free <= 0:
            return None
        filler = os.path.join(node.data_dir, FILLER_NAME)
        try:
            with open(filler, "wb") as handle:
                os.posix_fallocate(handle.fileno(), 0, free)
        except OSError:
            pass  # as full as it gets
        self._later(3, 8, "unfill", node.id)
        return f"{node.id} ({free // (1024 * 1024)} MiB filled)"

    def _clock_jump(self) -> str | None:
        node_id = self._pick(self.control.can_jump_clock)
        if node_id is None:
            return None
        seconds = self.rng.choice([-600, -90, 45, 400, 3600])
        self.control.jump_clock(node_id, seconds)
        self._later(3, 10, "clock_back", node_id)
        return f"{node_id} {seconds:+d}s"

    def _undo_clock_back(self, node_id: str) -> None:
        self.control.jump_clock(node_id, 0)

    def _undo_unfill(self, node_id: str) -> None:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(self.control.config.node(node_id).data_dir, FILLER_NAME))

    def _overload(self) -> str | None:
        return self.burst() if self.burst is not None else None

    def _slow_link(self) -> str | None:
        node_id = self._pick(self.control.can_partition)
        if node_id is None:
            return None
        delay_ms, loss, rate = self.rng.choice([(200, 0.0, 4096), (50, 20.0, 1024),
                                                (400, 5.0, 256), (0, 40.0, 8192)])
        applied = self.control.degrade_link(node_id, delay_ms, loss, rate)
        self._later(4, 10, "restore_link", node_id)
        return f"{node_id}: {applied}"

    def heal_due(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        due = [p for p in self._pending if p[0] <= now]
        self._pending = [p for p in self._pending if p[0] > now]
        for _, action, node_id in due:
            undo = getattr(self, f"_undo_{action}", None)
            (undo or getattr(self.control, action))(node_id)

    def heal_all(self) -> None:
        self.heal_due(float("inf"))
        for node in self.control.config.nodes:
            self.control.start(node.id)
