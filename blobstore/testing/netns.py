"""Test hosts in network namespaces: separate addresses, and links we can cut.

A ``NetnsLab`` makes a bridge in the root namespace (``10.<a>.<b>.1/24``) and, per host, a
namespace joined to the bridge by a veth pair (``10.<a>.<b>.<n>``). Processes started with
``exec_prefix(host)`` live in that namespace: they reach the root namespace (loopback
nodes, the test itself) through the bridge, and each other through the bridge too.
``cut(host)`` takes the host's link down, so it can neither send nor receive: a partition
of one host from everyone; ``heal(host)`` brings it back.

Everything is created with names carrying a random tag and removed by ``close()``, so
parallel runs do not collide and nothing is left behind. Needs root and iproute2;
``available()`` says whether this machine allows it (tests skip with the reason if not).
"""

from __future__ import annotations

import random
import shutil
import subprocess

SUBNET_FIRST_OCTET = 10


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


def available() -> tuple[bool, str]:
    """(usable, reason) for network namespaces on this machine."""
    if shutil.which("ip") is None:
        return False, "iproute2 (ip) is not installed"
    name = f"bsprobe{random.randrange(1 << 30):x}"
    probe = _ip("netns", "add", name, check=False)
    if probe.returncode != 0:
        return False, f"cannot create a network namespace: {probe.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return True, ""


class NetnsLab:
    def __init__(self) -> None:
        rng = random.Random()
        self.tag = f"{rng.randrange(1 << 24):06x}"
        self.subnet = f"{SUBNET_FIRST_OCTET}.{rng.randrange(100, 250)}.{rng.randrange(1, 250)}"
        self.bridge = f"bsbr{self.tag}"
        self.hosts: dict[str, tuple[str, str, str]] = {}  # name -> (netns, host veth, ip)
        self._open = False

    def __enter__(self) -> NetnsLab:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def gateway_ip(self) -> str:
        return f"{self.subnet}.1"

    def open(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._open = True
        _ip("addr", "add", f"{self.gateway_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> str:
        """Create host ``name``; returns its IP address."""
        number = len(self.hosts) + 2
        netns = f"bs{self.tag}{number}"
        outside, inside = f"bv{self.tag}{number}", f"bi{self.tag}{number}"
        address = f"{self.subnet}.{number}"
        _ip("netns", "add", netns)
        self.hosts[name] = (netns, outside, address)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", netns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", netns, "link", "set", inside, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "route", "add", "default", "via", self.gateway_ip)
        return address

    def exec_prefix(self, name: str) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[name][0]]

    def cut(self, name: str) -> None:
        _ip("link", "set", self.hosts[name][1], "down")

    def heal(self, name: str) -> None:
        _ip("link", "set", self.hosts[name][1], "up")

    def degrade(self, name: str, delay_ms: int = 0, loss_percent: float = 0.0,
                rate_kbit: int = 1024) -> str:
        """A slow (and, where the kernel has netem, lossy and delayed) link for one host,
        both ways. Returns what was applied: netem where available, else a tbf rate limit
        (kernels without sch_netem, like this workplace's, still have tbf)."""
        netns, outside, _ = self.hosts[name]
        inside = outside.replace("bv", "bi", 1)
        rules = [(["netem", "delay", f"{delay_ms}ms", "loss", f"{loss_percent}%",
                   "rate", f"{rate_kbit}kbit"], f"netem {delay_ms} ms, {loss_percent:g}% loss"),
                 (["tbf", "rate", f"{rate_kbit}kbit", "burst", "32kbit", "latency",
                   f"{max(delay_ms, 50)}ms"], f"tbf {rate_kbit} kbit/s")]
        for rule, description in rules:
            first = subprocess.run(["tc", "qdisc", "replace", "dev", outside, "root", *rule],
                                   capture_output=True, timeout=20)
            if first.returncode == 0:
                subprocess.run(["ip", "netns", "exec", netns, "tc", "qdisc", "replace", "dev",
                                inside, "root", *rule], check=True, capture_output=True,
                               timeout=20)
                return description
        raise RuntimeError(f"tc can shape no link here: {first.stderr.decode().strip()}")

    def restore(self, name: str) -> None:
        netns, outside, _ = self.hosts[name]
        inside = outside.replace("bv", "bi", 1)
        subprocess.run(["tc", "qdisc", "del", "dev", outside, "root"], capture_output=True,
                       timeout=20)
        subprocess.run(["ip", "netns", "exec", netns, "tc", "qdisc", "del", "dev", inside,
                        "root"], capture_output=True, timeout=20)

    def close(self) -> None:
        for netns, outside, _ in self.hosts.values():
            _ip("link", "del", outside, check=False)
            _ip("netns", "del", netns, check=False)
        self.hosts.clear()
        if self._open:
            _ip("link", "del", self.bridge, check=False)
            self._open = False
