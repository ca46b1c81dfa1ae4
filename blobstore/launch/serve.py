"""``blobstore serve``: run one node of a cluster in this process.

The node's role (meta, storage, gateway) comes from cluster.toml; its app is built by
``blobstore.<role>.app.create_app(config, node)``, imported by role name only when needed,
so a process never loads the code of another role. The app is served on the node's address
with ``AppRunner`` + ``runtime.listener.BatchAcceptSite``, a TCP site that accepts every
waiting connection at once (uvloop alone accepts one per loop turn). Background work
belongs to the app's ``cleanup_ctx`` and is stopped by ``runner.cleanup()``.

Lifecycle: SIGTERM or SIGINT ends the wait, and the runner is cleaned up (connections drained,
cleanup contexts exited) before the process exits 0. A taken port is refused with a
one-line ``ServeError`` before anything else starts. uvloop is used if it is installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import importlib
import logging
import signal
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from blobstore.config import ClusterConfig, NodeConfig, load_config
from blobstore.core.errors import BlobstoreError
from blobstore.core.records import NodeRole
from blobstore.runtime import eventloop, malloc
from blobstore.runtime.listener import BatchAcceptSite
from blobstore.runtime.logs import setup_logging

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 10.0


class ServeError(BlobstoreError):
    """The node could not start serving."""

    code = "ServeError"


def build_app(config: ClusterConfig, node: NodeConfig) -> web.Application:
    """The role's aiohttp app for ``node`` (the role module is imported here, lazily)."""
    module = importlib.import_module(f"blobstore.{node.role.value}.app")
    return module.create_app(config, node)


def serve(config_path: str | Path, node_id: str, tls: tuple[str, str] | None = None) -> None:
    """Run node ``node_id`` of the cluster at ``config_path`` until SIGTERM or SIGINT.

    ``tls`` (certificate, key) overrides the TLS files of cluster.toml for a gateway.
    """
    config = load_config(config_path)
    if tls is not None:
        config = dataclasses.replace(config, tls_cert_file=tls[0], tls_key_file=tls[1])
    node = config.node(node_id)
    setup_logging(node_id)
    Path(node.data_dir).mkdir(parents=True, exist_ok=True)
    app = build_app(config, node)
    _run(_serve_until_signalled(app, node, _tls_context(config, node)))


def _tls_context(config: ClusterConfig, node: NodeConfig) -> ssl.SSLContext | None:
    """HTTPS for the S3 endpoint when cluster.toml names a certificate and key."""
    if node.role != NodeRole.GATEWAY or not config.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ServeError(f"{node.id}: cannot load the TLS certificate: {exc}") from exc
    return context


def _run(main: Coroutine[Any, Any, None]) -> None:
    malloc.keep_freed_memory()
    eventloop.run(main)


async def _serve_until_signalled(app: web.Application, node: NodeConfig,
                                 tls: ssl.SSLContext | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                           access_log=None)
    await runner.setup()
    try:
        site = BatchAcceptSite(runner, node.host.strip("[]"), node.port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            raise _listen_error(node, exc) from exc
        log.info("serving role=%s address=%s data_dir=%s", node.role.value, node.address,
                 node.data_dir)
        await stop.wait()
        log.info("stopping on signal")
    finally:
        await runner.cleanup()
    log.info("stopped")


def _listen_error(node: NodeConfig, exc: OSError) -> ServeError:
    if exc.errno == errno.EADDRINUSE:
        return ServeError(f"{node.id}: cannot listen on {node.address}: address already in use")
    return ServeError(f"{node.id}: cannot listen on {node.address}: {exc.strerror or exc}")
