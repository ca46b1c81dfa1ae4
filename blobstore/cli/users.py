"""`blobstore user add NAME`: a new S3 access key and secret."""

from __future__ import annotations

import json
from typing import Any

import click

from blobstore.cli.common import config_options, reports_errors
from blobstore.client.users import add_user
from blobstore.config import load_config
from blobstore.launch.cluster_dir import find_config_path


@click.group("user")
def user() -> None:
    """Manage S3 users (access keys live in the replicated meta service).

    \b
    Example:
      blobstore user add backup-job
    """


@user.command("add")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@config_options
@reports_errors
def add(name: str, as_json: bool, config_path: str | None, directory: str | None,
        **_: Any) -> None:
    """Create user NAME with a fresh access key and secret.

    \b
    Example:
      blobstore user add backup-job --dir ./blobstore-data
    """
    config = load_config(find_config_path(config_path, directory))
    access, secret = add_user(config, name)
    if as_json:
        click.echo(json.dumps({"access_key": access, "secret_key": secret}))
    else:
        click.echo(f"AWS_ACCESS_KEY_ID={access}")
        click.echo(f"AWS_SECRET_ACCESS_KEY={secret}")
