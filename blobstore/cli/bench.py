"""``blobstore bench``: load any S3 endpoint (ours by default) and report what it did.

Parse, resolve the endpoint and keys the way data commands do (``client/endpoint.py``),
call ``blobstore.bench``, print. A run that cannot start (no endpoint, refused keys,
objects to read that cannot be written) exits 1; a run whose requests fail still exits 0
and reports the errors, since that is a measurement too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from blobstore.bench import loadgen
from blobstore.bench.loadgen import BenchSpec, Op
from blobstore.bench.report import heading, progress_line, result_table
from blobstore.bench.s3 import Target
from blobstore.bench.stats import Snapshot
from blobstore.bench.units import format_size, parse_duration_s, parse_size_bytes
from blobstore.cli.common import parsed, reports_errors
from blobstore.client.endpoint import resolve_s3_target
from blobstore.runtime import eventloop, malloc

SIZE = parsed(parse_size_bytes, "SIZE")
DURATION = parsed(parse_duration_s, "DURATION")
DEFAULT_DURATION_S = 10.0


def resolve_target(endpoint: str | None, directory: str | None, config_path: str | None,
                   access_key: str | None, secret_key: str | None, region: str | None,
                   insecure: bool) -> Target:
    """Endpoint and keys: flags first, then ``--dir``/``--config``, then the environment."""
    env = dict(os.environ)
    if access_key and secret_key:
        env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    if config_path and not directory:
        directory = str(Path(config_path).expanduser().parent)
    found = resolve_s3_target(endpoint, directory, env)
    return Target(found.endpoint, access_key or found.access_key, secret_key or found.secret_key,
                  region or found.region, verify_tls=not insecure)


@click.command()
@click.option("--endpoint", help="S3 endpoint URL (default: --dir's gateway, else "
                                 "$BLOBSTORE_ENDPOINT, else ./blobstore-data's gateway).")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Cluster directory: its first gateway and D/credentials.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="A cluster.toml; its directory is used as with --dir.")
@click.option("--access-key", help="S3 access key (default: the cluster's, else "
                                   "$AWS_ACCESS_KEY_ID).")
@click.option("--secret-key", help="S3 secret key (default: the cluster's, else "
                                   "$AWS_SECRET_ACCESS_KEY).")
@click.option("--region", help="SigV4 region (default: the cluster's, else $AWS_REGION, "
                               "else us-east-1).")
@click.option("--op", type=click.Choice([op.value for op in Op]), default="put",
              show_default=True, help="put: new objects; get: read pre-written objects in "
                                      "full and check them; mixed: GET/PUT; delete.")
@click.option("--size", type=SIZE, default="1MiB", show_default=True,
              help="Object size: bytes, or with a unit (4KiB, 1MiB, 64MiB; KB/MB are 10^3/10^6).")
@click.option("-c", "--concurrency", type=click.IntRange(1, 4096), default=4,
              show_default=True, help="Requests in flight (one worker each).")
@click.option("--duration", type=DURATION, default=None,
              help="How long to run (10s, 2m). Default 10s unless --count is given.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after this many requests (with --duration: whichever comes first).")
@click.option("--objects", type=click.IntRange(min=1), default=None,
              help="Objects to write (untimed) before a get/mixed/delete run "
                   "(default: enough for the concurrency, at most 256 MiB or 200 objects).")
@click.option("--get-fraction", type=click.FloatRange(0.0, 1.0), default=0.5,
              show_default=True, help="Share of GETs in a mixed run.")
@click.option("--bucket", default=loadgen.DEFAULT_BUCKET, show_default=True,
              help="Bucket to use; created if missing.")
@click.option("--timeout", "timeout_s", type=DURATION, default="300s", show_default=True,
              help="Per-request timeout; a request over it counts as an error.")
@click.option("--insecure", is_flag=True, help="Accept any TLS certificate (https endpoints).")
@click.option("--seed", type=int, default=None, help="Seed for bodies, keys and choices.")
@click.option("--keep", is_flag=True, help="Leave the objects written; default: delete them.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (SPEC §2).")
@reports_errors
def bench(endpoint: str | None, directory: str | None, config_path: str | None,
          access_key: str | None, secret_key: str | None, region: str | None, op: str,
          size: int, concurrency: int, duration: float | None, count: int | None,
          objects: int | None, get_fraction: float, bucket: str, timeout_s: float,
          insecure: bool, seed: int | None, keep: bool, as_json: bool) -> None:
    """Load an S3 endpoint: PUT, GET, mixed or DELETE; print throughput, latency, errors.

    Every object has distinct content (no free ride from deduplication), every GET body
    is read in full and checked (length and xxh3), and failures count as errors, not as
    slower successes. MB = 10^6 bytes. Progress goes to stderr on a terminal.

    \b
    Example:
      blobstore bench --dir ./blobstore-data --op put --size 64MiB -c 4 --duration 30s
      blobstore bench --op get --size 4KiB -c 32 --duration 10s --json
      blobstore bench --endpoint http://127.0.0.1:8180 --op mixed --size 1MiB \\
          --access-key KEY --secret-key SECRET --count 1000
    """
    target = resolve_target(endpoint, directory, config_path, access_key, secret_key, region,
                            insecure)
    if duration is None and count is None:
        duration = DEFAULT_DURATION_S
    spec = BenchSpec(Op(op), size, concurrency, duration, count, get_fraction)
    malloc.keep_freed_memory()  # the client moves as many bytes as the gateway does
    progress = _terminal_progress(f"{op} {format_size(size)} x{concurrency}")
    note = (lambda line: click.echo(line, err=True)) if progress is not None else None
    result, left = eventloop.run(loadgen.run_once(
        target, spec, bucket=bucket, objects=objects, keep=keep, timeout_s=timeout_s,
        seed=seed, progress=progress, note=note))
    if progress is not None:
        click.echo("\r\x1b[K", nl=False, err=True)  # erase the progress line
    if as_json:
        document = result.to_json()
        document["objects_left"] = left
        click.echo(json.dumps(document))
        return
    click.echo(result_table([result]))
    click.echo(heading(result))
    if left and not keep:
        click.echo(f"warning: {left} objects could not be deleted under "
                   f"s3://{bucket}/{result.key_prefix.split('/')[0]}/", err=True)


def _terminal_progress(label: str) -> loadgen.Progress | None:
    if not sys.stderr.isatty():
        return None

    def show(snapshot: Snapshot) -> None:
        click.echo(f"\r{progress_line(label, snapshot)}", nl=False, err=True)

    return show
