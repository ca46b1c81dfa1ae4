"""``blobstore meta``: the metadata Raft group's membership and leadership.

    blobstore meta add ID [--dry-run]       make meta node ID (in cluster.toml) a voter
    blobstore meta remove ID [--dry-run]    stop ID being a voter
    blobstore meta transfer ID              hand leadership to voter ID

Rules (enforced by the leader, ``meta/service.py`` rule 6; ``--dry-run`` shows its plan):
one change at a time; ``add`` needs ID to be a meta node of cluster.toml, already started
(it waits, empty, to be added); a change is refused if the voters the leader can reach now
would not be a quorum of the voters after it, and the last voter is never removed. Add
before you remove when replacing a replica, so the group never runs with fewer voters.
"""

from __future__ import annotations

import json
from typing import Any

import click

from blobstore.cli.common import config_options, reports_errors
from blobstore.config import load_config
from blobstore.launch.cluster_dir import find_config_path


@click.group()
def meta() -> None:
    """Membership and leadership of the metadata replicas (a Raft group).

    \b
    Example:
      blobstore meta add meta-4 --dry-run
      blobstore meta add meta-4
      blobstore meta remove meta-1
      blobstore meta transfer meta-2
    """


def _change(kind: str, node_id: str, config_path: str | None, directory: str | None,
            dry_run: bool, as_json: bool) -> None:
    config = load_config(find_config_path(config_path, directory))
    from blobstore.client.cluster_info import change_membership  # aiohttp: load on use

    result = change_membership(config, kind, node_id, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    _echo_plan(result)


def _echo_plan(result: dict[str, Any]) -> None:
    verb = {"add": "added", "remove": "removed"}[result["kind"]]
    before = ", ".join(result["voters_before"])
    after = ", ".join(result.get("voters") or result["voters_after"])
    reach = (f"{len(result['reachable_after'])} of {len(result['voters_after'])} voters "
             f"reachable after it (quorum {result['quorum_after']})")
    if result.get("dry_run"):
        click.echo(f"would {result['kind']} {result['node_id']}: voters {before} -> {after}; "
                   f"{reach}")
    else:
        click.echo(f"{result['node_id']} {verb}: voters {after} ({reach})")


@meta.command()
@click.argument("node_id")
@config_options
@click.option("--dry-run", is_flag=True, help="Check and show the change; do not make it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@reports_errors
def add(node_id: str, config_path: str | None, directory: str | None, dry_run: bool,
        as_json: bool) -> None:
    """Make meta node NODE_ID (of cluster.toml, started) a voter of the group.

    \b
    Example:
      blobstore meta add meta-4 --dry-run
    """
    _change("add", node_id, config_path, directory, dry_run, as_json)


@meta.command()
@click.argument("node_id")
@config_options
@click.option("--dry-run", is_flag=True, help="Check and show the change; do not make it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@reports_errors
def remove(node_id: str, config_path: str | None, directory: str | None, dry_run: bool,
           as_json: bool) -> None:
    """Stop meta node NODE_ID being a voter (refused if the rest would lack a quorum).

    \b
    Example:
      blobstore meta remove meta-3
    """
    _change("remove", node_id, config_path, directory, dry_run, as_json)


@meta.command()
@click.argument("node_id")
@config_options
@reports_errors
def transfer(node_id: str, config_path: str | None, directory: str | None) -> None:
    """Hand the leadership to voter NODE_ID (e.g. before restarting the leader).

    \b
    Example:
      blobstore meta transfer meta-2
    """
    config = load_config(find_config_path(config_path, directory))
    from blobstore.client.cluster_info import transfer_leadership  # aiohttp: load on use

    result = transfer_leadership(config, node_id)
    click.echo(f"{result['leader']} leads (term {result['term']})")
