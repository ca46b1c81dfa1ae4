"""``blobstore node``: storage membership. Parse, call ``client/membership.py``, print.

    blobstore node add ID --address HOST:PORT [--zone Z] [--weight W] [--data-dir D] [--dry-run]
    blobstore node rebalance ID [--dry-run] [--wait]
    blobstore node drain ID [--dry-run] [--wait]
    blobstore node remove ID [--dry-run]
    blobstore node list

Every change is checked first and refused (exit 1, with the reason) if it could leave a
segment below k+m placed shards; ``--dry-run`` shows the plan and changes nothing.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from blobstore.cli.common import config_options, reports_errors
from blobstore.config import ClusterConfig, load_config
from blobstore.launch.cluster_dir import find_config_path

dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Check and show what would happen; change nothing.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
wait_options = (
    click.option("--wait", is_flag=True, help="Wait until the shards have moved."),
    click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True,
                 metavar="SECONDS", help="With --wait: give up waiting after this long."),
)


def _config(config_path: str | None, directory: str | None) -> ClusterConfig:
    return load_config(find_config_path(config_path, directory))


def _progress(as_json: bool) -> Any:
    if as_json or not sys.stderr.isatty():
        return lambda _line: None
    return lambda line: click.echo(line, err=True)


def _emit(result: dict[str, Any], as_json: bool, line: str) -> None:
    click.echo(json.dumps(result, indent=2) if as_json else line)


@click.group()
def node() -> None:
    """Add, rebalance, drain and remove storage nodes of a running cluster.

    \b
    Example (retire storage-3, then add a bigger node):
      blobstore node drain storage-3 --dry-run
      blobstore node drain storage-3 --wait
      blobstore node remove storage-3
      blobstore node add storage-9 --address 10.0.1.19:9209 --zone z1 --weight 2
      blobstore serve --config cluster.toml --id storage-9    # on its host
      blobstore node rebalance storage-9 --wait
    """


@node.command("add")
@click.argument("node_id")
@click.option("--address", required=True, metavar="HOST:PORT", help="Where it listens.")
@click.option("--zone", default=None, help="Its failure domain (default: the only zone).")
@click.option("--weight", type=float, default=1.0, show_default=True,
              help="Share of the shards relative to the others (e.g. its disk size).")
@click.option("--data-dir", "data_dir", default=None,
              help="Its data directory (default: <cluster dir>/data/ID).")
@config_options
@dry_run_option
@json_option
@reports_errors
def add(node_id: str, address: str, zone: str | None, weight: float, data_dir: str | None,
        config_path: str | None, directory: str | None, dry_run: bool, as_json: bool) -> None:
    """Register a new storage node and append it to this machine's cluster.toml.

    Then start it (`blobstore serve --config F --id ID`; on other hosts copy cluster.toml
    there first) and move its fair share of shards to it with `blobstore node rebalance`.

    \b
    Example:
      blobstore node add storage-9 --address 127.0.0.1:9208 --dry-run
    """
    from blobstore.client import membership  # aiohttp: load on use

    result = membership.add(_config(config_path, directory), node_id, address, zone=zone,
                            weight=weight, data_dir=data_dir, dry_run=dry_run)
    verb = "would add" if dry_run else "added"
    _emit(result, as_json, f"{verb} {node_id} at {address} (zone {result['zone']}, weight "
                           f"{weight:g}); start it with: {result['start']}")


@node.command("rebalance")
@click.argument("node_id")
@config_options
@dry_run_option
@wait_options[0]
@wait_options[1]
@json_option
@reports_errors
def rebalance(node_id: str, config_path: str | None, directory: str | None, dry_run: bool,
              wait: bool, timeout_s: float, as_json: bool) -> None:
    """Move NODE_ID's fair share of shards (by weight) to it, paced by the repair rate.

    \b
    Example:
      blobstore node rebalance storage-9 --wait
    """
    from blobstore.client import membership

    result = membership.rebalance(_config(config_path, directory), node_id, dry_run=dry_run,
                                  wait=wait, timeout_s=timeout_s, progress=_progress(as_json))
    if dry_run:
        line = (f"would move {result['to_move']} shard(s) to {node_id} (holds "
                f"{result['placed_shards']}, fair share {result['fair_share']}, "
                f"{result['already_queued']} already queued)")
    else:
        line = f"{result['queued']} shard move(s) to {node_id} queued"
        if wait:
            line += (f"; done in {result['rebalance_s']}s, it holds "
                     f"{result['placed_shards_after']} shard(s)")
    _emit(result, as_json, line)


@node.command("drain")
@click.argument("node_id")
@config_options
@dry_run_option
@wait_options[0]
@wait_options[1]
@json_option
@reports_errors
def drain(node_id: str, config_path: str | None, directory: str | None, dry_run: bool,
          wait: bool, timeout_s: float, as_json: bool) -> None:
    """Move every shard off NODE_ID, keeping every segment at k+m shards throughout.

    The node stops taking new shards at once; each shard is copied to another node before
    the placement changes. Refused when the other up storage nodes cannot hold k+m shards
    of every segment on distinct nodes.

    \b
    Example:
      blobstore node drain storage-3 --dry-run
      blobstore node drain storage-3 --wait
    """
    from blobstore.client import membership

    result = membership.drain(_config(config_path, directory), node_id, dry_run=dry_run,
                              wait=wait, timeout_s=timeout_s, progress=_progress(as_json))
    if dry_run:
        line = (f"would drain {node_id}: {result['placed_shards']} shard(s) to move to "
                f"{len(result['targets'])} node(s) ({', '.join(result['targets'])})")
    else:
        line = f"{node_id} draining: {result['queued']} shard move(s) queued"
        if wait:
            line += f"; drained in {result['drain_s']}s (remove it: blobstore node remove " \
                    f"{node_id})"
    _emit(result, as_json, line)


@node.command("remove")
@click.argument("node_id")
@config_options
@dry_run_option
@json_option
@reports_errors
def remove(node_id: str, config_path: str | None, directory: str | None, dry_run: bool,
           as_json: bool) -> None:
    """Remove drained storage node NODE_ID from the cluster map (refused until drained).

    Afterwards stop its process and delete its entry from cluster.toml on every host.

    \b
    Example:
      blobstore node remove storage-3 --dry-run
    """
    from blobstore.client import membership

    result = membership.remove(_config(config_path, directory), node_id, dry_run=dry_run)
    line = (f"would remove {node_id} (no placed shards)" if dry_run else
            f"{node_id} removed: stop its process and delete it from cluster.toml")
    _emit(result, as_json, line)


@node.command("list")
@config_options
@json_option
@reports_errors
def list_nodes(config_path: str | None, directory: str | None, as_json: bool) -> None:
    """Storage nodes with their state, placed shards and queued moves.

    \b
    Example:
      blobstore node list --json
    """
    from blobstore.client import membership

    result = membership.members(_config(config_path, directory))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"map epoch {result['epoch']}; {result['move_backlog']} segment(s) with moves "
               f"queued, {result['moves_leased']} leased, {result['moves_stuck']} backing off")
    for entry in result["nodes"]:
        click.echo(f"{entry['id']:<14} {entry['state']:<9} {entry['zone']:<6} "
                   f"{entry['placed_shards']:>8} shards  -{entry['moves_from']} "
                   f"+{entry['moves_to']} queued  {entry['address']}")
    for reason in result["stuck_reasons"]:
        click.echo(f"  backing off: {reason}")
