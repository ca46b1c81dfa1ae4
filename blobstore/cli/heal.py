"""Operator commands of self-healing: scrub, repair, fsck. Parse, call, print.

The work is in ``client/heal_ops.py`` and ``client/fsck.py``; progress goes to stderr (only
on a terminal unless ``--progress``), results to stdout, as text or one JSON object.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from blobstore.cli.common import OperationFailed, config_options, reports_errors
from blobstore.config import ClusterConfig, load_config
from blobstore.core.errors import Invalid
from blobstore.launch.cluster_dir import find_config_path


def _config(config_path: str | None, directory: str | None) -> ClusterConfig:
    return load_config(find_config_path(config_path, directory))


def _progress(enabled: bool | None) -> Any:
    show = sys.stderr.isatty() if enabled is None else enabled
    return (lambda line: click.echo(line, err=True)) if show else (lambda _line: None)


def _emit(result: dict[str, Any], as_json: bool, text: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for line in text:
            click.echo(line)


progress_option = click.option("--progress/--no-progress", default=None,
                               help="Progress lines on stderr (default: on a terminal).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.command()
@config_options
@click.option("--node", "node_ids", multiple=True, metavar="ID",
              help="Scrub only this storage node (repeatable). Default: every storage node.")
@click.option("--wait", is_flag=True, help="Wait until the pass has visited every shard.")
@click.option("--timeout", "timeout_s", type=float, default=None, metavar="SECONDS",
              help="With --wait: give up after this long.")
@json_option
@progress_option
@reports_errors
def scrub(config_path: str | None, directory: str | None, node_ids: tuple[str, ...],
          wait: bool, timeout_s: float | None, as_json: bool, progress: bool | None) -> None:
    """Start a scrub pass now: re-verify every shard, quarantine and queue the bad ones.

    \b
    Example:
      blobstore scrub --wait
      blobstore scrub --node storage-3 --wait --json
    """
    from blobstore.client.heal_ops import chosen_storage_nodes, run_scrub  # load on use

    config = _config(config_path, directory)
    try:
        chosen_storage_nodes(config, node_ids)
    except Invalid as exc:
        raise click.BadParameter(exc.message, param_hint="--node") from exc
    result = run_scrub(config, node_ids, wait, timeout_s, _progress(progress))
    lines = []
    for entry in result["nodes"]:
        if not entry["ok"]:
            lines.append(f"{entry['id']:<14} unreachable: {entry['error']}")
            continue
        state = "done" if entry["done"] else "running"
        corrupt = entry.get("corrupt_found", 0) - entry.get("corrupt_before", 0)
        lines.append(f"{entry['id']:<14} {state:<8} {entry.get('shards_checked', 0)}/"
                     f"{entry.get('shards_total', 0)} shards checked, {corrupt} corrupt")
    if wait:
        lines.append(f"scrub {'complete' if result['complete'] else 'incomplete'}: "
                     f"{result['corrupt_found']} corrupt shard(s) found, quarantined and "
                     "queued for repair")
    else:
        lines.append("scrub started (blobstore scrub --wait to wait for it)")
    _emit(result, as_json, lines)
    if "error" in result:
        raise OperationFailed(result["error"])
    if wait and not result["complete"]:
        raise OperationFailed("the scrub did not finish in time")


@click.command()
@config_options
@click.option("--wait", is_flag=True, help="Wait until the repair backlog is empty.")
@click.option("--timeout", "timeout_s", type=float, default=None, metavar="SECONDS",
              help="With --wait: give up after this long.")
@json_option
@progress_option
@reports_errors
def repair(config_path: str | None, directory: str | None, wait: bool,
           timeout_s: float | None, as_json: bool, progress: bool | None) -> None:
    """Drain the repair queue now: every storage node's repairer starts at once.

    Fails (exit 1) when --wait ends with segments that cannot be repaired now (fewer than
    k readable shards, or no spare node to rebuild on), naming why.

    \b
    Example:
      blobstore repair --wait
      blobstore repair --wait --timeout 600 --json
    """
    from blobstore.client.heal_ops import run_repair  # aiohttp and RPC: load on use

    result = run_repair(_config(config_path, directory), wait, timeout_s, _progress(progress))
    lines = [f"repair backlog     {result['repair_backlog']}",
             f"degraded segments  {result['degraded_segments']}",
             f"lost segments      {result['lost_segments']}"]
    if result["unreachable"]:
        lines.append(f"not reached        {', '.join(result['unreachable'])}")
    if result["nodes_pending_down"]:
        lines.append(f"down, not yet queued: {', '.join(result['nodes_pending_down'])}")
    if wait and result["done"]:
        lines.append("repair complete")
    _emit(result, as_json, lines)
    if "error" in result:
        raise OperationFailed(result["error"])


@click.command()
@config_options
@click.option("--deep", is_flag=True, help="Read every shard and verify its checksum.")
@click.option("--no-repair", "no_repair", is_flag=True,
              help="Only report: do not queue what is found missing or corrupt.")
@json_option
@progress_option
@reports_errors
def fsck(config_path: str | None, directory: str | None, deep: bool, no_repair: bool,
         as_json: bool, progress: bool | None) -> None:
    """Check that every segment of every object has all its shards, healthy.

    Exit 0 only when nothing is lost or degraded. Missing and corrupt shards found on a
    node that answered are queued for repair (unless --no-repair).

    \b
    Example:
      blobstore fsck
      blobstore fsck --deep --json | jq '.degraded, .lost'
    """
    from blobstore.client.fsck import run_fsck  # aiohttp and RPC: load on use

    result = run_fsck(_config(config_path, directory), deep, not no_repair, _progress(progress))
    lines = [f"objects    {result['objects']}",
             f"segments   {result['segments']}",
             f"healthy    {result['healthy']}",
             f"degraded   {result['degraded']}",
             f"lost       {result['lost']}",
             f"orphans    {result['orphans']} (shards no segment places there; reclaimed "
             "after gc_grace)"]
    for problem in result["problems"][:20]:
        where = " ".join(f"{key}={value}" for key, value in problem.items() if key != "problem")
        lines.append(f"  {where}: {problem['problem']}")
    if result["reported"]:
        lines.append(f"{result['reported']} shard(s) queued for repair")
    _emit(result, as_json, lines)
    if result["lost"] or result["degraded"]:
        raise OperationFailed(f"fsck: {result['degraded']} degraded and {result['lost']} lost "
                              "segment(s)")
