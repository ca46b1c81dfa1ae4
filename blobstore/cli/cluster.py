"""Commands that make and run a cluster: init, up, down, serve."""

from __future__ import annotations

import time

import click

from blobstore.cli.common import dir_option, parsed, reports_errors
from blobstore.client.endpoint import cluster_keys
from blobstore.config import ClusterConfig
from blobstore.core.records import NodeRole
from blobstore.launch import supervisor
from blobstore.launch.cluster_dir import ClusterDir, cluster_dir, find_config_path
from blobstore.launch.health import DEFAULT_HEALTH_TIMEOUT_S
from blobstore.launch.init import (
    InitOptions,
    init_cluster,
    parse_duration_s,
    parse_ec,
    parse_size_bytes,
)

EC = parsed(parse_ec, "K+M")
SIZE = parsed(parse_size_bytes, "SIZE")
DURATION = parsed(parse_duration_s, "DURATION")


@click.command()
@dir_option
@click.option("--meta", default=3, show_default=True, type=click.IntRange(min=1),
              help="Metadata replicas, one Raft group: 3 survives the loss of one, 5 of two "
                   "(an even count adds no tolerance).")
@click.option("--storage", default=8, show_default=True, type=click.IntRange(min=1),
              help="Storage nodes (at least k+m; k+m+2 leaves spares for repair).")
@click.option("--gateway", default=1, show_default=True, type=click.IntRange(min=0),
              help="S3 gateways (0: none, no S3 endpoint).")
@click.option("--ec", "ec", default="4+2", show_default=True, type=EC,
              help="Erasure coding: K data + M parity shards per segment.")
@click.option("--base-port", default=9000, show_default=True, type=click.IntRange(1, 65535),
              help="Gateways listen from here, meta from +100, storage from +200.")
@click.option("--zones", default=1, show_default=True, type=click.IntRange(min=1),
              help="Failure zones z1..zN, dealt round-robin to the nodes of each role.")
@click.option("--down-after", default="30s", show_default=True, type=DURATION,
              help="A storage node silent this long is down and its shards are rebuilt.")
@click.option("--scrub-interval", default="7d", show_default=True, type=DURATION,
              help="Every shard is re-verified once per interval.")
@click.option("--gc-grace", default="1h", show_default=True, type=DURATION,
              help="Unreferenced shards are kept this long before they are reclaimed.")
@click.option("--segment-size", default="8MiB", show_default=True, type=SIZE,
              help="Objects are cut into segments of this size before erasure coding.")
@click.option("--force", is_flag=True, help="Overwrite an existing cluster.toml.")
@reports_errors
def init(directory: str, meta: int, storage: int, gateway: int, ec: tuple[int, int],
         base_port: int, zones: int, down_after: float, scrub_interval: float, gc_grace: float,
         segment_size: int, force: bool) -> None:
    """Write D/cluster.toml and D/credentials for a cluster on this machine.

    Every node gets an id, role, address on 127.0.0.1, data dir D/data/ID and zone; the
    cluster gets a fresh secret and a first S3 access key. Nothing is started: see `up`.

    \b
    Example:
      blobstore init --dir ./blobstore-data --storage 8 --ec 4+2 --base-port 9000
    """
    options = InitOptions(meta=meta, storage=storage, gateway=gateway, data_shards=ec[0],
                          parity_shards=ec[1], base_port=base_port, zones=zones,
                          down_after_s=down_after, scrub_interval_s=scrub_interval,
                          gc_grace_s=gc_grace, segment_size_bytes=segment_size)
    directory_paths = cluster_dir(directory)
    config = init_cluster(directory_paths, options, force=force)
    _echo_initialized(directory_paths, config)
    click.echo(f"start it with: blobstore up --dir {directory}")


def _echo_initialized(directory: ClusterDir, config: ClusterConfig) -> None:
    counts = ", ".join(f"{len(config.by_role(role))} {role.value}" for role in NodeRole)
    click.echo(f"wrote {directory.config_path} ({counts}; EC "
               f"{config.data_shards}+{config.parity_shards})")
    click.echo(f"wrote {directory.credentials_path}")


@click.command()
@dir_option
@click.option("--detach", is_flag=True, help="Run in the background; return once healthy.")
@click.option("--health-timeout", default=DEFAULT_HEALTH_TIMEOUT_S, show_default=True,
              type=click.FloatRange(min=0.1), help="Seconds each node has to become healthy.")
@click.option(supervisor.SUPERVISOR_CHILD_FLAG, "supervisor_child", is_flag=True, hidden=True)
@reports_errors
def up(directory: str, detach: bool, health_timeout: float, supervisor_child: bool) -> None:
    """Start every node of D/cluster.toml on this machine and supervise them.

    Runs `init` with the defaults first if D has no cluster.toml. Nodes start in order
    meta, storage, gateway; a node that crashes is restarted with back-off. Logs go to
    D/logs/ID.log, pids to D/run/pids.json. Ctrl-C (or `down` with --detach) stops all.

    \b
    Example:
      blobstore up --dir ./blobstore-data --detach
      eval "$(blobstore up --dir ./blobstore-data --detach | grep ^export)"
    """
    paths = cluster_dir(directory)
    if supervisor_child:
        supervisor.run_supervisor(paths, _timestamped, health_timeout_s=health_timeout)
        return
    if not paths.config_path.exists():
        _echo_initialized(paths, init_cluster(paths, InitOptions()))
    if detach:
        config = supervisor.start_detached(paths, health_timeout_s=health_timeout)
        _echo_ready(paths, config)
        click.echo(f"running in the background; stop it with: blobstore down --dir {directory}")
        return
    supervisor.run_supervisor(paths, click.echo,
                              on_ready=lambda config: _echo_ready(paths, config),
                              health_timeout_s=health_timeout)


def _timestamped(line: str) -> None:
    click.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor {line}")


def _echo_ready(paths: ClusterDir, config: ClusterConfig) -> None:
    gateways = config.by_role(NodeRole.GATEWAY)
    click.echo(f"cluster up: {len(config.nodes)} nodes (logs in {paths.logs_dir})")
    if not gateways:
        click.echo("this cluster has no gateway, so no S3 endpoint")
        return
    access_key, secret_key = cluster_keys(paths, config)
    click.echo(f"S3 endpoint: {gateways[0].url}")
    click.echo(f"export AWS_ACCESS_KEY_ID={access_key}")
    click.echo(f"export AWS_SECRET_ACCESS_KEY={secret_key}")
    click.echo(f"export AWS_DEFAULT_REGION={config.region}")
    click.echo(f"export AWS_ENDPOINT_URL={gateways[0].url}")
    click.echo(f"export BLOBSTORE_ENDPOINT={gateways[0].url}")


@click.command()
@dir_option
@reports_errors
def down(directory: str) -> None:
    """Stop a cluster started with `up --detach`, by the pids in D/run/pids.json.

    \b
    Example:
      blobstore down --dir ./blobstore-data
    """
    paths = cluster_dir(directory)
    stopped = supervisor.down(paths, click.echo)
    if stopped:
        click.echo(f"stopped the cluster in {paths.root} ({stopped} processes)")
    else:
        click.echo(f"no cluster running in {paths.root}")


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Path of cluster.toml (default: --dir, $BLOBSTORE_CONFIG, "
                   "./blobstore-data/cluster.toml).")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Cluster directory (its cluster.toml).")
@click.option("--id", "node_id", required=True, help="The id of the node to run.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True),
              help="PEM certificate: a gateway serves S3 over HTTPS (overrides cluster.toml).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True),
              help="PEM private key that goes with --tls-cert.")
@reports_errors
def serve(config_path: str | None, directory: str | None, node_id: str,
          tls_cert: str | None, tls_key: str | None) -> None:
    """Run one node of the cluster in the foreground; its role comes from the config.

    This is what systemd units and containers run. SIGTERM or SIGINT stops it cleanly.

    \b
    Example:
      blobstore serve --config /etc/blobstore/cluster.toml --id storage-3
    """
    from blobstore.launch.serve import serve as serve_node  # aiohttp: load only to serve

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    serve_node(find_config_path(config_path, directory), node_id,
               tls=(tls_cert, tls_key) if tls_cert and tls_key else None)
