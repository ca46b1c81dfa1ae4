"""Run a chaos schedule: the verifying workload under seeded faults, then heal and check.

Phases:
1. Faults: for ``duration_s`` the workload runs while the injector fires a fault every
   ``fault_every_s`` (seeded jitter) and heals each when its time comes.
2. Heal: every fault is healed and every process restarted; then the store is given
   ``settle_s`` to find and rebuild what was damaged (scrub + repair when the cluster has
   them: ``blobstore scrub --wait`` and ``blobstore repair --wait``).
3. Check: every key is read back and must hold a value legal for its history (``lost`` if
   exactly one value was legal and another came back or none could be read); the listing
   must agree with the history; ``fsck --deep`` must be clean where it exists.
The report's last line is one JSON object (SPEC §2 ``blobstore chaos --json``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from blobstore.chaos.burst import BurstResult
from blobstore.chaos.faults import Control, Injector
from blobstore.chaos.history import ABSENT, History
from blobstore.chaos.workload import Target, Workload, burst, make_client

DEFAULT_FAULTS = ["kill", "kill", "corrupt", "delete_shard", "partition", "overload",
                  "disk_full", "clock_jump", "slow_link"]
BURST_SECONDS = 3.0
FINAL_READ_ATTEMPTS = 20


@dataclass
class Report:
    seed: int
    duration_s: float
    ops: dict[str, int]
    faults: dict[str, int]
    errors: dict[str, int]
    availability: float
    lost: int
    wrong_reads: int
    details: list[str]

    def as_json(self) -> str:
        return json.dumps({"seed": self.seed, "duration_s": round(self.duration_s, 1),
                           "ops": self.ops, "faults": self.faults, "errors": self.errors,
                           "availability": round(self.availability, 4), "lost": self.lost,
                           "wrong_reads": self.wrong_reads})

    def text(self) -> str:
        lines = [f"seed {self.seed}  duration {self.duration_s:.0f}s",
                 "ops:    " + ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items())),
                 "faults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())),
                 "errors: " + (", ".join(f"{k} {v}" for k, v in sorted(self.errors.items()))
                               or "none"),
                 f"availability during faults: {self.availability:.2%}",
                 f"objects lost: {self.lost}   wrong reads: {self.wrong_reads}"]
        lines += [f"  {d}" for d in self.details[:20]]
        lines.append(f"replay with: --seed {self.seed}")
        return "\n".join(lines)


def run_chaos(control: Control, target: Target, *, seed: int, duration_s: float,
              workers: int = 4, fault_every_s: float = 6.0, faults: list[str] | None = None,
              config_path: Path | None = None, settle_s: float = 120.0,
              log=print) -> Report:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    history = History()
    workload = Workload(target, history, seed)
    _ensure_bucket(target)
    bursts: list[BurstResult] = []

    def overload() -> str:
        key = rng.choice(workload.keys)
        outcome = burst(target, key, workers * 10, BURST_SECONDS)
        bursts.append(outcome)
        other = "".join(f", {count} x {status}" for status, count in sorted(outcome.other.items()))
        return (f"{outcome.requests} requests: {outcome.served} served, {outcome.slowdowns} "
                f"SlowDown (p50 {outcome.slowdown_p50_s:.2f}s, p99 {outcome.slowdown_p99_s:.2f}s, "
                f"slowest {outcome.slowest_slowdown_s:.2f}s), {outcome.timeouts} "
                f"timeouts{other}")

    injector = Injector(control, rng, burst=overload)
    started = time.monotonic()
    deadline = started + duration_s
    thread = threading.Thread(target=workload.run, args=(workers, deadline), daemon=True)
    thread.start()
    next_fault = started + rng.uniform(1, fault_every_s)
    while time.monotonic() < deadline:
        injector.heal_due()
        if time.monotonic() >= next_fault:
            log(f"[{time.monotonic() - started:6.1f}s] fault {injector.inject_one(faults or DEFAULT_FAULTS)}")
            next_fault = time.monotonic() + rng.uniform(0.5, 1.5) * fault_every_s
        time.sleep(0.2)
    thread.join(120)
    ops_during = sum(history.counts.values())
    failed_during = sum(history.errors.values())
    log("healing every fault and restarting every process")
    injector.heal_all()
    _settle(config_path, settle_s, log)
    lost, details = _final_check(workload, history, target)
    fsck_problem = _fsck(config_path, log)
    if fsck_problem:
        details.append(fsck_problem)
    disagreement = _meta_replicas_agree(config_path)
    if disagreement:
        details.append(disagreement)
    for outcome in bursts:
        if outcome.slowest_slowdown_s > 1.0 or outcome.timeouts:
            details.append(f"OVERLOAD not shed fast: slowest SlowDown "
                           f"{outcome.slowest_slowdown_s:.2f}s, {outcome.timeouts} timeouts")
        if not outcome.served + outcome.slowdowns:
            # A burst answered only with errors tested nothing (e.g. a client the gateway
            # could not authenticate).
            details.append(f"OVERLOAD burst was neither served nor shed: {outcome.other}")
    availability = (ops_during - failed_during) / ops_during if ops_during else 1.0
    return Report(seed=seed, duration_s=time.monotonic() - started, ops=dict(history.counts),
                  faults=dict(injector.injected), errors=dict(history.errors),
                  availability=availability, lost=lost, wrong_reads=len(history.wrong_reads),
                  details=history.wrong_reads[:10] + details)


def _ensure_bucket(target: Target) -> None:
    client = make_client(target)
    for _ in range(30):
        try:
            client.head_bucket(Bucket=target.bucket)
            return
        except ClientError:
            try:
                client.create_bucket(Bucket=target.bucket)
                return
            except (ClientError, BotoCoreError):
                time.sleep(1)
        except BotoCoreError:
            time.sleep(1)
    raise RuntimeError(f"cannot create bucket {target.bucket} at {target.endpoint}")


def _cli(config_path: Path, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blobstore", *args, "--config",
                           str(config_path)], capture_output=True, text=True, timeout=timeout_s)


def _settle(config_path: Path | None, settle_s: float, log) -> None:  # type: ignore[no-untyped-def]
    time.sleep(3)
    if config_path is None:
        return
    for command in (["scrub", "--wait"], ["repair", "--wait"]):
        try:
            result = _cli(config_path, *command, timeout_s=settle_s)
        except subprocess.TimeoutExpired:
            log(f"{' '.join(command)}: did not finish within {settle_s:.0f}s")
            continue
        if result.returncode == 2:
            log(f"{' '.join(command)}: not available on this cluster; skipped")
        elif result.returncode != 0:
            log(f"{' '.join(command)}: exit {result.returncode}: {result.stderr.strip()[-300:]}")


def _final_check(workload: Workload, history: History, target: Target) -> tuple[int, list[str]]:
    client = make_client(target, timeout_s=30)
    lost, details = 0, []
    for key in history.keys():
        legal, certain = history.final_expectation(key)
        got = _read_final(client, workload, target, key)
        if isinstance(got, set) and got & legal:
            continue
        if certain:
            lost += 1
            details.append(f"LOST {key}: expected generation {sorted(legal)}, read {got}")
        else:
            details.append(f"WRONG {key}: legal {sorted(legal)}, read {got}")
            history.wrong_reads.append(details[-1])
    listed = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket,
                                                                 Prefix="chaos/"):
        listed |= {item["Key"] for item in page.get("Contents", [])}
    for key in history.keys():
        legal, certain = history.final_expectation(key)
        if certain and (ABSENT in legal) == (key in listed):
            details.append(f"LISTING {key}: listed={key in listed}, legal {sorted(legal)}")
            history.wrong_reads.append(details[-1])
    return lost, details


def _read_final(client, workload: Workload, target: Target,  # type: ignore[no-untyped-def]
                key: str) -> set[int] | str:
    for _ in range(FINAL_READ_ATTEMPTS):
        try:
            body = client.get_object(Bucket=target.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchKey":
                return {ABSENT}
            time.sleep(1)
            continue
        except BotoCoreError:
            time.sleep(1)
            continue
        return workload.generations_of(key, body) or f"unrecognisable {len(body)} B"
    return "unreadable"


def _meta_replicas_agree(config_path: Path | None, timeout_s: float = 60.0) -> str | None:
    """Every meta replica is up, in one term, and has applied the leader's commit index."""
    if config_path is None:
        return None
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            result = _cli(config_path, "status", "--json", timeout_s=60)
            replicas = json.loads(result.stdout).get("meta_replicas") or []
        except (subprocess.TimeoutExpired, ValueError):
            replicas = []
        commits = {r.get("commit_index") for r in replicas}
        applied = {r.get("last_applied") for r in replicas}
        terms = {r.get("term") for r in replicas}
        if replicas and len(commits) == len(applied) == len(terms) == 1 and None not in applied \
                and applied == commits:
            return None
        last = json.dumps([{k: r.get(k) for k in ("id", "role", "term", "commit_index",
                                                  "last_applied")} for r in replicas])
        time.sleep(1)
    return f"META replicas disagree: {last}"


FSCK_ROUNDS = 2


def _fsck(config_path: Path | None, log) -> str | None:  # type: ignore[no-untyped-def]
    """fsck --deep must come out clean. A degraded segment it finds right after a mass
    restart (a repair still backing off) is queued by fsck itself, so it gets a few rounds
    of repair --wait; a lost segment, or one still degraded after them, is a failure."""
    if config_path is None:
        return None
    problem = None
    for round_ in range(FSCK_ROUNDS):
        try:
            result = _cli(config_path, "fsck", "--deep", "--json", timeout_s=600)
        except subprocess.TimeoutExpired:
            return "fsck --deep did not finish"
        if result.returncode == 2:
            log("fsck: not available on this cluster; skipped")
            return None
        if result.returncode == 0:
            return None
        problem = f"fsck --deep not clean: {result.stdout.strip()[-500:]}"
        try:
            if json.loads(result.stdout).get("lost"):
                return problem
        except ValueError:
            return problem
        log(f"fsck round {round_ + 1}: degraded segments left; repairing again")
        try:
            _cli(config_path, "repair", "--wait", timeout_s=300)
        except subprocess.TimeoutExpired:
            pass
    return problem
