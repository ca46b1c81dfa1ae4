"""`blobstore chaos`: run the verifying workload under faults against your own cluster."""

from __future__ import annotations

from typing import Any

import click

from blobstore.cli.common import OperationFailed, config_options, reports_errors
from blobstore.config import load_config
from blobstore.launch.cluster_dir import cluster_dir, find_config_path

FAULTS = ("kill", "corrupt", "delete_shard", "overload")


@click.command("chaos")
@config_options
@click.option("--duration", "duration_s", type=float, default=300.0, show_default=True,
              help="Seconds of faults before healing and checking.")
@click.option("--seed", type=int, default=1, show_default=True, help="Replays a schedule.")
@click.option("--workers", type=int, default=4, show_default=True, help="Workload threads.")
@click.option("--faults", default=",".join(FAULTS), show_default=True,
              help="Comma-separated fault kinds to draw from.")
@click.option("--every", "fault_every_s", type=float, default=6.0, show_default=True,
              help="Mean seconds between faults.")
@click.option("--bucket", default="chaos", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON object.")
@reports_errors
def chaos(config_path: str | None, directory: str | None, duration_s: float, seed: int,
          workers: int, faults: str, fault_every_s: float, bucket: str, as_json: bool,
          **_: Any) -> None:
    """Break a running cluster on purpose and check that nothing acknowledged is lost.

    Kills processes by the pids `blobstore up` recorded (the supervisor restarts them),
    flips bytes in and deletes shard files, and bursts ten times the load; then heals,
    runs scrub and repair, reads every object back, and runs fsck --deep. Exit 0 only when
    no object was lost and no read returned wrong bytes.

    \b
    Example:
      blobstore up --detach
      blobstore chaos --dir ./blobstore-data --duration 600 --seed 7 --json
    """
    from blobstore.chaos.faults import SupervisedControl
    from blobstore.chaos.runner import run_chaos
    from blobstore.chaos.workload import Target
    from blobstore.client.endpoint import resolve_s3_target

    path = find_config_path(config_path, directory)
    config = load_config(path)
    root = cluster_dir(directory or path.parent)
    s3 = resolve_s3_target(None, str(root.root))
    kinds = [kind.strip() for kind in faults.split(",") if kind.strip()]
    target = Target(s3.endpoint, s3.access_key, s3.secret_key, bucket=bucket,
                    verify=config.tls_cert_file or True)
    control = SupervisedControl(config, root.pids_path)
    report = run_chaos(control, target, seed=seed, duration_s=duration_s, workers=workers,
                       fault_every_s=fault_every_s, faults=kinds, config_path=path,
                       log=lambda line: click.echo(line, err=True))
    click.echo(report.text())
    if as_json:
        click.echo(report.as_json())
    if report.lost or report.wrong_reads:
        raise OperationFailed(f"{report.lost} objects lost, {report.wrong_reads} wrong reads")
