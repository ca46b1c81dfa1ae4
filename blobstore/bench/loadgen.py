"""The load generator: N concurrent workers issuing S3 requests for a duration or a count.

Theory of operation. A :class:`LoadGenerator` owns one aiohttp session (a pool of at
least ``max_concurrency`` kept-alive connections), one bucket, one seed and one key prefix
for a whole run, and runs phases one after another (:meth:`LoadGenerator.run`), so a GET
phase can read what the PUT phase before it wrote. In a phase, ``concurrency`` workers
loop, one request at a time each, until the deadline passes or ``count`` requests have
been started; requests in flight then finish and are counted. Per request the worker
takes a time stamp before sending and after the last body byte (``perf_counter``).

Operations:
- ``put``: a new key each time, body = the worker's reused buffer stamped with a fresh
  tag (see ``payload.py``); the object joins the phase's :class:`ObjectSet`.
- ``get``: a random object of the set (the worker's seeded rng), read in full and checked
  (length, xxh3). Objects come from an earlier PUT phase, or :meth:`populate` writes them
  first, untimed (``population_for``: enough to spread the load, bounded in bytes).
- ``mixed``: each request is a GET with probability ``get_fraction`` (default 0.5), else
  a PUT, on a pre-populated set that the PUTs grow.
- ``delete``: takes objects out of the set, each deleted once; a worker stops when the
  set is empty, so give ``count`` or enough ``objects`` for the duration wanted.

Limits: ``concurrency <= max_concurrency``; memory is ``concurrency x size_bytes`` of
PUT buffers, made before the clock starts and kept for the next phase of the same size.
Determinism: the seed fixes bodies, keys and the choice of objects; the server and the
network are of course not replayed.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from blobstore.bench.objects import ObjectRef, ObjectSet
from blobstore.bench.payload import PayloadSource, WorkerPayload, make_tag
from blobstore.bench.s3 import BenchClient, OpError, Target, new_session
from blobstore.bench.stats import BenchResult, Recorder, Snapshot
from blobstore.bench.units import MIB
from blobstore.core.errors import Invalid, Unavailable

DEFAULT_BUCKET = "blobstore-bench"
DEFAULT_TIMEOUT_S = 300.0
POPULATION_BYTES_MAX = 256 * MIB
POPULATION_OBJECTS_MAX = 200
POPULATION_OBJECTS_MIN = 8
PROGRESS_INTERVAL_S = 0.5
CLEANUP_CONCURRENCY = 16
CLEANUP_TIMEOUT_S = 300.0
EXTRA_CONNECTIONS = 4

Progress = Callable[[Snapshot], None]


class Op(enum.StrEnum):
    PUT = "put"
    GET = "get"
    MIXED = "mixed"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class BenchSpec:
    """One phase. At least one of ``duration_s`` and ``count`` bounds it."""

    op: Op
    size_bytes: int
    concurrency: int = 4
    duration_s: float | None = 10.0
    count: int | None = None
    get_fraction: float = 0.5
    label: str = ""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise Invalid(f"concurrency must be at least 1, not {self.concurrency}")
        if self.size_bytes < 0:
            raise Invalid(f"object size must be >= 0 bytes, not {self.size_bytes}")
        if self.duration_s is None and self.count is None:
            raise Invalid("a benchmark needs a duration or a count")
        if self.duration_s is not None and self.duration_s <= 0:
            raise Invalid(f"duration must be positive, not {self.duration_s}")
        if self.count is not None and self.count < 1:
            raise Invalid(f"count must be at least 1, not {self.count}")
        if not 0.0 <= self.get_fraction <= 1.0:
            raise Invalid(f"get fraction must be in [0, 1], not {self.get_fraction}")


def population_for(spec: BenchSpec) -> int:
    """How many objects a GET/mixed/delete phase needs written first (0 for PUT)."""
    if spec.op is Op.PUT:
        return 0
    if spec.op is Op.DELETE and spec.count is not None:
        return spec.count
    by_bytes = POPULATION_BYTES_MAX // max(1, spec.size_bytes)
    return max(min(spec.concurrency, POPULATION_OBJECTS_MIN), min(POPULATION_OBJECTS_MAX, by_bytes))


class LoadGenerator:
    """One session, bucket, seed and key prefix; phases run one after another.

    Make it inside the event loop that will use it (its aiohttp session binds to it).
    """

    def __init__(self, target: Target, bucket: str = DEFAULT_BUCKET, max_concurrency: int = 4,
                 timeout_s: float = DEFAULT_TIMEOUT_S, seed: int | None = None) -> None:
        self.target = target
        self.bucket = bucket
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.seed = random.SystemRandom().getrandbits(32) if seed is None else seed
        self._rng = random.Random(self.seed)
        self.key_prefix = f"bench-{self._rng.getrandbits(32):08x}"
        self._phases = 0
        self._source: PayloadSource | None = None
        self._payloads: list[WorkerPayload] = []
        self.leftovers = ObjectSet()  # objects whose DELETE failed; they may still exist
        self._session = new_session(target, max_concurrency + EXTRA_CONNECTIONS, timeout_s)
        self.client = BenchClient(self._session, target, bucket)

    async def __aenter__(self) -> LoadGenerator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def prepare(self) -> None:
        """Check the endpoint and keys, and create the bucket if missing (or raise)."""
        await self.client.ensure_bucket()

    async def populate(self, size_bytes: int, count: int, objects: ObjectSet,
                       concurrency: int) -> None:
        """Write ``count`` objects into ``objects``, untimed; Unavailable if any PUT failed."""
        if count <= 0:
            return
        spec = BenchSpec(Op.PUT, size_bytes, min(concurrency, count, self.max_concurrency),
                         duration_s=None, count=count, label="populate")
        result = await self.run(spec, objects)
        if result.errors:
            raise Unavailable(f"could not write the {count} objects of {size_bytes} bytes to "
                              f"read: {result.errors} PUTs failed, e.g. "
                              f"{'; '.join(result.error_samples[:2])}")

    async def run(self, spec: BenchSpec, objects: ObjectSet | None = None,
                  progress: Progress | None = None) -> BenchResult:
        """Run one phase; ``objects`` is read (GET), grown (PUT) or consumed (DELETE)."""
        if spec.concurrency > self.max_concurrency:
            raise Invalid(f"concurrency {spec.concurrency} is over this generator's "
                          f"{self.max_concurrency}")
        objects = ObjectSet() if objects is None else objects
        if spec.op in (Op.GET, Op.MIXED) and not len(objects):
            raise Invalid(f"a {spec.op} phase needs objects: populate first")
        payloads = self._worker_payloads(spec) if spec.op in (Op.PUT, Op.MIXED) else []
        self._phases += 1
        phase = _Phase(self, spec, objects, payloads, nonce=self._rng.getrandbits(64),
                       seed=self._rng.getrandbits(32), number=self._phases)
        return await phase.run(progress)

    async def cleanup(self, objects: ObjectSet, deadline_s: float = CLEANUP_TIMEOUT_S) -> int:
        """Delete ``objects`` and earlier failed deletes (untimed, bounded in time).

        Returns how many objects may be left behind.
        """
        retry, self.leftovers = self.leftovers, ObjectSet()
        for ref in retry:
            objects.add(ref)
        if len(objects):
            concurrency = min(CLEANUP_CONCURRENCY, self.max_concurrency, len(objects))
            spec = BenchSpec(Op.DELETE, 0, concurrency, duration_s=deadline_s,
                             count=len(objects), label="cleanup")
            await self.run(spec, objects)
        return len(objects) + len(self.leftovers)

    def release_buffers(self) -> None:
        """Drop the PUT buffers (``concurrency x size_bytes``) kept for the next phase."""
        self._source, self._payloads = None, []

    def _worker_payloads(self, spec: BenchSpec) -> list[WorkerPayload]:
        """One buffer per worker, made before the clock starts; kept while the size holds."""
        if self._source is None or self._source.size_bytes != spec.size_bytes:
            self._payloads = []  # one size at a time: a matrix goes size by size
            self._source = PayloadSource(spec.size_bytes, self._rng)
        while len(self._payloads) < spec.concurrency:
            self._payloads.append(self._source.worker_payload())
        return self._payloads[: spec.concurrency]


class _Phase:
    """The workers of one phase and the clock they share."""

    def __init__(self, generator: LoadGenerator, spec: BenchSpec, objects: ObjectSet,
                 payloads: list[WorkerPayload], nonce: int, seed: int, number: int) -> None:
        self.generator = generator
        self.client = generator.client
        self.spec = spec
        self.objects = objects
        self.payloads = payloads
        self.nonce = nonce
        self.seed = seed
        self.key_prefix = f"{generator.key_prefix}/{number:03d}"
        self.recorder = Recorder()
        self.started = 0
        self.deadline = float("inf")
        self.done = asyncio.Event()
        self.running = 0

    async def run(self, progress: Progress | None) -> BenchResult:
        spec = self.spec
        loop = asyncio.get_running_loop()
        if spec.duration_s is not None:
            self.deadline = loop.time() + spec.duration_s
        cpu_before, started_s = time.process_time(), time.perf_counter()
        self.running = spec.concurrency
        async with asyncio.TaskGroup() as group:
            for index in range(spec.concurrency):
                group.create_task(self._worker(index))
            if progress is not None:
                group.create_task(self._report(progress, started_s))
        duration_s = time.perf_counter() - started_s
        cpu_s = time.process_time() - cpu_before
        result = BenchResult(
            op=spec.op.value, size_bytes=spec.size_bytes, concurrency=spec.concurrency,
            duration_s=duration_s, total=self.recorder.total(duration_s), client_cpu_s=cpu_s,
            endpoint=self.generator.target.endpoint, bucket=self.generator.bucket,
            objects=len(self.objects), error_samples=tuple(self.recorder.error_samples),
            by_op=self.recorder.summaries(duration_s), label=spec.label,
            key_prefix=self.key_prefix)
        if progress is not None:
            progress(self.recorder.snapshot(duration_s))
        return result

    def _may_start(self) -> bool:
        if self.spec.count is not None and self.started >= self.spec.count:
            return False
        if asyncio.get_running_loop().time() >= self.deadline:
            return False
        self.started += 1
        return True

    async def _worker(self, index: int) -> None:
        rng = random.Random(self.seed * 1_000_003 + index)
        sequence = 0
        try:
            while self._may_start():
                op = self._choose(rng)
                if op is Op.PUT:
                    await self._put(index, sequence)
                    sequence += 1
                elif op is Op.GET:
                    await self._get(rng)
                elif not await self._delete():
                    return
        finally:
            self.running -= 1
            if not self.running:
                self.done.set()

    def _choose(self, rng: random.Random) -> Op:
        op = self.spec.op
        if op is Op.MIXED:
            op = Op.GET if rng.random() < self.spec.get_fraction else Op.PUT
        if op is Op.GET and not len(self.objects):
            op = Op.PUT  # only in a mixed phase whose set is empty
        return op

    async def _put(self, index: int, sequence: int) -> None:
        payload = self.payloads[index]
        digest = payload.stamp(make_tag(self.nonce, index, sequence))
        key = f"{self.key_prefix}/{index:04d}-{sequence:08d}"
        started = time.perf_counter()
        try:
            await self.client.put(key, payload.view)
        except OpError as error:
            self.recorder.failure("put", error.kind, f"{key}: {error.message}")
            return
        self.recorder.success("put", time.perf_counter() - started, payload.size_bytes)
        self.objects.add(ObjectRef(key, payload.size_bytes, digest))

    async def _get(self, rng: random.Random) -> None:
        ref = self.objects.pick(rng)
        assert ref is not None, "_choose never picks GET on an empty set"
        started = time.perf_counter()
        try:
            received = await self.client.get(ref)
        except OpError as error:
            self.recorder.failure("get", error.kind, f"{ref.key}: {error.message}")
            return
        self.recorder.success("get", time.perf_counter() - started, received)

    async def _delete(self) -> bool:
        """Delete one object of the set; False when there is none left."""
        ref = self.objects.pop()
        if ref is None:
            return False
        started = time.perf_counter()
        try:
            await self.client.delete(ref.key)
        except OpError as error:
            self.recorder.failure("delete", error.kind, f"{ref.key}: {error.message}")
            self.generator.leftovers.add(ref)  # it may still exist: cleanup tries again
            return True
        self.recorder.success("delete", time.perf_counter() - started, 0)
        return True

    async def _report(self, progress: Progress, started_s: float) -> None:
        while not self.done.is_set():
            try:
                await asyncio.wait_for(self.done.wait(), PROGRESS_INTERVAL_S)
            except TimeoutError:
                progress(self.recorder.snapshot(time.perf_counter() - started_s))


async def run_once(target: Target, spec: BenchSpec, *, bucket: str = DEFAULT_BUCKET,
                   objects: int | None = None, keep: bool = False,
                   timeout_s: float = DEFAULT_TIMEOUT_S, seed: int | None = None,
                   progress: Progress | None = None,
                   note: Callable[[str], None] | None = None) -> tuple[BenchResult, int]:
    """What ``blobstore bench`` does: check, populate, run one phase, clean up.

    Returns the result and how many objects the run leaves behind (all of them with
    ``keep``). Raises Unavailable/Invalid when the run cannot start. ``note`` hears what
    happens outside the timed phase.
    """
    say = note or (lambda line: None)
    async with LoadGenerator(target, bucket, spec.concurrency, timeout_s, seed) as generator:
        await generator.prepare()
        written = ObjectSet()
        population = population_for(spec) if objects is None else objects
        if spec.op is not Op.PUT:
            say(f"writing {population} objects of {spec.size_bytes} bytes first (untimed)")
            try:
                await generator.populate(spec.size_bytes, population, written, spec.concurrency)
            except Unavailable:
                if not keep:
                    await generator.cleanup(written)  # what did get written
                raise
        result = await generator.run(spec, written, progress)
        if keep:
            return result, len(written) + len(generator.leftovers)
        say(f"deleting {len(written)} objects (untimed)")
        return result, await generator.cleanup(written)
