"""The overload burst: many keep-alive connections GET one object as fast as they can, and
each answer is timed from the request to the last byte of its body.

The burst runs in a process of its own, on one asyncio loop, so what it times is the
store's answer and not the chaos runner's threads, which share a GIL with the workload's
boto3 clients. It reports the median, 99th percentile and slowest SlowDown. (The slow
SlowDowns that failed CI twice, 1.01 and 1.07 s, turned out to be the gateway accepting
one new connection per loop turn: see ``runtime/listener.py``.)

``python -m blobstore.chaos.burst`` reads its job as JSON on stdin and prints the result
as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import aiohttp
from yarl import URL

from blobstore.bench.stats import percentile

REQUEST_TIMEOUT_S = 10.0  # an answer slower than this counts as a timeout


@dataclass
class BurstResult:
    requests: int = 0
    served: int = 0
    slowdowns: int = 0
    slowest_slowdown_s: float = 0.0
    slowdown_p50_s: float = 0.0
    slowdown_p99_s: float = 0.0
    timeouts: int = 0
    other: dict[str, int] = field(default_factory=dict)  # any other answer, by status
    _slowdown_times: list[float] = field(default_factory=list, repr=False)

    def summarise(self) -> dict[str, object]:
        """The result as JSON fields, the SlowDown latencies reduced to p50, p99 and max."""
        times = sorted(self._slowdown_times)
        self.slowdown_p50_s = percentile(times, 0.50)
        self.slowdown_p99_s = percentile(times, 0.99)
        self.slowest_slowdown_s = times[-1] if times else 0.0
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def record(self, outcome: str, elapsed_s: float) -> None:
        self.requests += 1
        if outcome == "SlowDown":
            self.slowdowns += 1
            self._slowdown_times.append(elapsed_s)
        elif outcome == "timeout":
            self.timeouts += 1
        elif outcome == "ok":
            self.served += 1
        else:
            self.other[outcome] = self.other.get(outcome, 0) + 1


def run_burst(url: str, verify: str | bool, workers: int, seconds: float) -> BurstResult:
    """GET the presigned ``url`` from ``workers`` connections for ``seconds``, in a child
    process (see the module's docstring)."""
    job = json.dumps({"url": url, "verify": verify, "workers": workers, "seconds": seconds})
    done = subprocess.run([sys.executable, "-m", "blobstore.chaos.burst"], input=job,
                          capture_output=True, text=True, timeout=seconds + 90, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"burst process failed ({done.returncode}): {done.stderr[-2000:]}")
    fields = json.loads(done.stdout)
    return BurstResult(**fields)


async def hammer(url: str, verify: str | bool, workers: int, seconds: float) -> BurstResult:
    result = BurstResult()
    ssl_option: ssl.SSLContext | bool = True
    if isinstance(verify, str):
        ssl_option = ssl.create_default_context(cafile=verify)
    elif verify is False:
        ssl_option = False
    # The presigned query is signed as it is: yarl must not re-quote it.
    target = URL(url, encoded=True)
    connector = aiohttp.TCPConnector(limit=workers, ssl=ssl_option)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    async with session.get(target) as response:
                        body = await response.read()
                    outcome = ("SlowDown" if b"<Code>SlowDown</Code>" in body
                               else "ok" if response.status == 200 else str(response.status))
                except (aiohttp.ClientError, TimeoutError, OSError):
                    outcome = "timeout"
                result.record(outcome, time.monotonic() - started)

        await asyncio.gather(*(worker() for _ in range(workers)))
    return result


def main() -> None:
    job = json.loads(sys.stdin.read())
    result = asyncio.run(hammer(job["url"], job["verify"], job["workers"], job["seconds"]))
    json.dump(result.summarise(), sys.stdout)


if __name__ == "__main__":
    main()
