"""Operator commands that read the cluster's state: status, locate."""

from __future__ import annotations

import json
from typing import Any

import click

from blobstore.cli.common import OperationFailed, config_options, reports_errors
from blobstore.client.locations import parse_s3_url, require_object
from blobstore.config import load_config
from blobstore.launch.cluster_dir import find_config_path


@click.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (SPEC §2).")
@reports_errors
def status(config_path: str | None, directory: str | None, as_json: bool) -> None:
    """Cluster health: nodes, meta leader, term and replicas, repair backlog, degradation.

    \b
    Example:
      blobstore status --dir ./blobstore-data
      blobstore status --json | jq '.nodes[] | select(.state != "up")'
    """
    config = load_config(find_config_path(config_path, directory))
    from blobstore.client.cluster_info import cluster_status  # aiohttp and RPC: load on use
    from blobstore.client.heal_ops import add_heal_status, heal_status_lines

    result = cluster_status(config)
    add_heal_status(config, result)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_status(result)
        for line in heal_status_lines(result):
            click.echo(line)
    if "error" in result:
        raise OperationFailed(result["error"])


def _print_status(result: dict[str, Any]) -> None:
    leader = result["leader"] or "none"
    term = result["term"] if result["term"] is not None else "?"
    click.echo(f"cluster   {result['cluster']}")
    click.echo(f"leader    {leader} (term {term})")
    click.echo(f"endpoint  {result['endpoint'] or 'none (no gateway)'}")
    click.echo("")
    rows = [("ID", "ROLE", "ADDRESS", "ZONE", "STATE", "PID", "USED / CAPACITY")]
    for node in result["nodes"]:
        rows.append((node["id"], node["role"], node["address"], node["zone"], node["state"],
                     str(node["pid"] or "-"), _usage(node)))
    _echo_table(rows)
    replicas = result.get("meta_replicas") or []
    if replicas:
        click.echo("")
        click.echo(f"meta      commit index {_or_unknown(result.get('commit_index'))}")
        rows = [("REPLICA", "ROLE", "VOTER", "TERM", "COMMIT", "APPLIED", "MATCH", "PROGRESS")]
        for replica in replicas:
            rows.append((replica["id"], replica["role"], _yes_no(replica["voter"]),
                         _dash(replica["term"]), _dash(replica["commit_index"]),
                         _dash(replica["last_applied"]), _dash(replica["match_index"]),
                         _dash(replica["progress"])))
        _echo_table(rows)
    click.echo("")
    click.echo(f"repair backlog     {_or_unknown(result['repair_backlog'])}")
    click.echo(f"degraded segments  {_or_unknown(result['degraded_segments'])}")
    durability = result["durability"]
    click.echo(f"durability         {durability['summary']} "
               f"(EC {durability['data_shards']}+{durability['parity_shards']}, "
               f"{durability['storage_nodes_up']}/{durability['storage_nodes']} storage nodes "
               f"up, {durability['spare_storage_nodes']} spare)")


def _echo_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                      strict=True)).rstrip())


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _yes_no(value: object) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _usage(node: dict[str, Any]) -> str:
    if not node["capacity_bytes"]:
        return "-"
    used, capacity = node["used_bytes"] or 0, node["capacity_bytes"]
    return f"{_human(used)} / {_human(capacity)} ({100 * used / capacity:.0f}%)"


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _or_unknown(value: object) -> str:
    return "unknown" if value is None else str(value)


@click.command()
@click.argument("url")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (SPEC §2).")
@reports_errors
def locate(url: str, config_path: str | None, directory: str | None, as_json: bool) -> None:
    """Where an object's bytes are: each segment and, per shard, its node and file.

    \b
    Example:
      blobstore locate s3://photos/2024/cat.jpg
      blobstore locate --json s3://photos/2024/cat.jpg | jq -r '.segments[].shards[].path'
    """
    location = require_object(parse_s3_url(url))
    config = load_config(find_config_path(config_path, directory))
    from blobstore.client.cluster_info import locate_object  # aiohttp and RPC: load on use

    result = locate_object(config, location.bucket, location.key)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"s3://{result['bucket']}/{result['key']}  size {result['size']}  "
               f"etag {result['etag']}")
    if result["inline"]:
        click.echo("stored inline in its metadata record (replicated by the meta quorum; "
                   "no shards)")
    for number, segment in enumerate(result["segments"]):
        click.echo(f"segment {number}: {segment['id']} (offset {segment['offset']}, length "
                   f"{segment['length']}, EC {segment['k']}+{segment['m']})")
        for shard in segment["shards"]:
            click.echo(f"  shard {shard['index']:<3} {shard['node'] or '-':<12} "
                       f"{shard['state']:<8} {shard['path'] or '-'}")
