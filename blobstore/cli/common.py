"""What every command shares: exit codes, error printing, and the cluster-finding options.

Exit codes (SPEC §2): 0 ok; 1 the operation failed, one ``error: ...`` line on stderr and no
traceback (``BLOBSTORE_DEBUG=1`` shows one); 2 usage error (click's own, and our
``UsageProblem`` / ``InitError`` raised by the layers below for arguments that cannot work).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click

from blobstore.client.locations import UsageProblem
from blobstore.core.errors import BlobstoreError, Invalid
from blobstore.launch.init import InitError

F = TypeVar("F", bound=Callable[..., Any])
DEBUG_ENV = "BLOBSTORE_DEBUG"


class OperationFailed(click.ClickException):
    """Exit 1 with ``error: <message>`` on stderr."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def reports_errors(function: F) -> F:
    """Turn the errors of a command's work into exit codes 1 and 2, without tracebacks."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (UsageProblem, InitError) as exc:
            raise click.UsageError(str(exc), click.get_current_context(silent=True)) from exc
        except BlobstoreError as exc:
            raise OperationFailed(str(exc)) from exc
        except BrokenPipeError:
            _silence_stdout()
            sys.exit(1)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise OperationFailed(f"{where}{exc.strerror or exc}") from exc
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise OperationFailed(f"internal error: {exc!r} (set {DEBUG_ENV}=1 for a "
                                  "traceback)") from exc

    return wrapper  # type: ignore[return-value]


def _silence_stdout() -> None:
    """The reader of our stdout went away (``| head``): stop Python complaining at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def parsed(parse: Callable[[str], Any], name: str) -> click.ParamType:
    """A click type that converts with ``parse`` and reports Invalid as a usage error."""

    class _Parsed(click.ParamType):
        def convert(self, value: Any, param: click.Parameter | None,
                    ctx: click.Context | None) -> Any:
            if not isinstance(value, str):
                return value
            try:
                return parse(value)
            except Invalid as exc:
                self.fail(exc.message, param, ctx)

    _Parsed.name = name
    return _Parsed()


def config_options(function: F) -> F:
    """``--config F`` / ``--dir D``: how an operator command finds its cluster.toml."""
    function = click.option("--dir", "directory", type=click.Path(file_okay=False),
                            help="Cluster directory (its cluster.toml).")(function)
    function = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                            help="Path of cluster.toml (default: $BLOBSTORE_CONFIG, else "
                                 "./blobstore-data/cluster.toml).")(function)
    return function


def dir_option(function: F) -> F:
    return click.option("--dir", "directory", type=click.Path(file_okay=False),
                        default="blobstore-data", show_default=True,
                        help="Cluster directory.")(function)
