"""Data commands that talk S3 to a gateway, like ``aws s3``: cp, ls, mb, rb, rm, cat."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from blobstore.cli.common import reports_errors
from blobstore.client import transfer
from blobstore.client.endpoint import resolve_s3_target
from blobstore.client.locations import (
    LocalLocation,
    S3Location,
    check_copy,
    parse_location,
    parse_s3_url,
    require_bucket_only,
    require_object,
)
from blobstore.client.s3 import ObjectEntry, Progress, S3Client

F = TypeVar("F", bound=Callable[..., Any])


def s3_options(function: F) -> F:
    """``--endpoint URL`` / ``--dir D``: where the S3 endpoint and keys come from."""
    function = click.option("--dir", "directory", type=click.Path(file_okay=False),
                            help="Use the first gateway and D/credentials of this cluster.")(
        function)
    function = click.option("--endpoint", help="S3 endpoint URL (default: $BLOBSTORE_ENDPOINT, "
                                               "else ./blobstore-data's gateway).")(function)
    return function


def _client(endpoint: str | None, directory: str | None) -> S3Client:
    target = resolve_s3_target(endpoint, directory)
    return S3Client(target.endpoint, target.access_key, target.secret_key, target.region)


@contextmanager
def _progress(label: str, total: int | None) -> Iterator[Progress | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    if total is None:
        try:
            yield lambda done: click.echo(f"\r{label}: {done:,} bytes", nl=False, err=True)
        finally:
            click.echo("", err=True)
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        last = 0

        def update(done: int) -> None:
            nonlocal last
            bar.update(done - last)
            last = done

        yield update


@click.command()
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option("-r", "--recursive", is_flag=True, help="Copy a directory or prefix, recursively.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print a line per file copied.")
@s3_options
@reports_errors
def cp(source: str, destination: str, recursive: bool, quiet: bool, endpoint: str | None,
       directory: str | None) -> None:
    """Copy between local paths and s3://bucket/key (`-` is stdin or stdout).

    \b
    Example:
      blobstore cp ./cat.jpg s3://photos/2024/cat.jpg
      blobstore cp -r ./album s3://photos/2024/
      tar c . | blobstore cp - s3://backups/home.tar
      blobstore cp s3://photos/2024/cat.jpg -
    """
    src, dst = parse_location(source), parse_location(destination)
    check_copy(src, dst, recursive)
    to_stdout = isinstance(dst, LocalLocation) and dst.is_std_stream
    report = (lambda line: None) if quiet or to_stdout else click.echo
    with _client(endpoint, directory) as client:
        transfer.copy(client, src, dst, recursive, report, _progress)


@click.command()
@click.argument("url", required=False)
@click.option("-r", "--recursive", is_flag=True, help="List every key under the prefix.")
@s3_options
@reports_errors
def ls(url: str | None, recursive: bool, endpoint: str | None, directory: str | None) -> None:
    """List buckets, or the objects and prefixes under s3://bucket[/prefix].

    \b
    Example:
      blobstore ls
      blobstore ls s3://photos/2024/
    """
    location = parse_s3_url(url) if url else None
    with _client(endpoint, directory) as client:
        if location is None:
            for bucket in client.list_buckets():
                click.echo(f"{_when(bucket.created)} {bucket.name}")
            return
        shown_from = 0 if recursive else location.key.rfind("/") + 1
        for item in transfer.list_location(client, location, recursive):
            if isinstance(item, ObjectEntry):
                click.echo(f"{_when(item.last_modified)} {item.size:>10} "
                           f"{item.key[shown_from:]}")
            else:
                click.echo(f"{'PRE':>30} {item.prefix[shown_from:]}")


def _when(iso: str) -> str:
    return iso.replace("T", " ")[:19] if iso else " " * 19


@click.command()
@click.argument("url")
@s3_options
@reports_errors
def mb(url: str, endpoint: str | None, directory: str | None) -> None:
    """Make a bucket.

    \b
    Example:
      blobstore mb s3://photos
    """
    location = require_bucket_only(parse_s3_url(url))
    with _client(endpoint, directory) as client:
        client.create_bucket(location.bucket)
    click.echo(f"make_bucket: {location.bucket}")


@click.command()
@click.argument("url")
@click.option("--force", is_flag=True, help="Delete every object in the bucket first.")
@s3_options
@reports_errors
def rb(url: str, force: bool, endpoint: str | None, directory: str | None) -> None:
    """Remove a bucket (it must be empty, unless --force).

    \b
    Example:
      blobstore rb s3://photos
    """
    location = require_bucket_only(parse_s3_url(url))
    with _client(endpoint, directory) as client:
        transfer.remove_bucket(client, location.bucket, force, click.echo)


@click.command()
@click.argument("url")
@click.option("-r", "--recursive", is_flag=True,
              help="Remove the key and every object under KEY/.")
@s3_options
@reports_errors
def rm(url: str, recursive: bool, endpoint: str | None, directory: str | None) -> None:
    """Remove an object, or with -r every object under a prefix.

    \b
    Example:
      blobstore rm s3://photos/2024/cat.jpg
      blobstore rm -r s3://photos/2024/
    """
    location = parse_s3_url(url) if recursive else require_object(parse_s3_url(url))
    with _client(endpoint, directory) as client:
        transfer.remove(client, location, recursive, click.echo)


@click.command()
@click.argument("url")
@s3_options
@reports_errors
def cat(url: str, endpoint: str | None, directory: str | None) -> None:
    """Write an object to stdout.

    \b
    Example:
      blobstore cat s3://notes/todo.txt
    """
    location: S3Location = require_object(parse_s3_url(url))
    with _client(endpoint, directory) as client:
        client.get_object(location.bucket, location.key, sys.stdout.buffer)
        sys.stdout.buffer.flush()
