"""Which S3 endpoint and keys a data command uses.

Order, per value:
- endpoint: ``--endpoint``; the first gateway of ``--dir D``; ``$BLOBSTORE_ENDPOINT``;
  ``$AWS_ENDPOINT_URL``; the first gateway of ``./blobstore-data`` if that cluster exists.
- keys: ``D/credentials`` (then ``[s3]`` of D/cluster.toml) with ``--dir D``; else
  ``$AWS_ACCESS_KEY_ID`` / ``$AWS_SECRET_ACCESS_KEY``; else ``./blobstore-data/credentials``.
- region: the cluster's with a cluster dir, else ``$AWS_REGION`` / ``$AWS_DEFAULT_REGION``,
  else ``us-east-1``.
The S3 endpoint of a cluster is ``http://<address of its first gateway>`` (SPEC §2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from blobstore.config import ClusterConfig, load_config
from blobstore.core.errors import Invalid
from blobstore.core.records import NodeRole
from blobstore.launch.cluster_dir import ClusterDir, cluster_dir, read_credentials

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class S3Target:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = DEFAULT_REGION


def cluster_endpoint(config: ClusterConfig) -> str:
    """``http://ADDRESS`` of the cluster's first gateway; Invalid if it has none."""
    gateways = config.by_role(NodeRole.GATEWAY)
    if not gateways:
        raise Invalid(f"{config.path or 'the cluster'} has no gateway node, so no S3 endpoint")
    scheme = "https" if config.tls_cert_file else "http"
    return f"{scheme}://{gateways[0].address}"


def cluster_keys(directory: ClusterDir, config: ClusterConfig) -> tuple[str, str]:
    """The S3 keys of a cluster dir: D/credentials, else the [s3] section of cluster.toml."""
    if directory.credentials_path.exists():
        values = read_credentials(directory.credentials_path)
        access, secret = values.get("AWS_ACCESS_KEY_ID", ""), values.get("AWS_SECRET_ACCESS_KEY", "")
        if access and secret:
            return access, secret
    return config.access_key, config.secret_key


def resolve_s3_target(endpoint: str | None = None, directory: str | None = None,
                      environ: Mapping[str, str] | None = None) -> S3Target:
    env = os.environ if environ is None else environ
    if directory:
        return _from_cluster(cluster_dir(directory), endpoint)
    endpoint = endpoint or env.get("BLOBSTORE_ENDPOINT") or env.get("AWS_ENDPOINT_URL")
    access, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    default = cluster_dir(None)
    if (not endpoint or not (access and secret)) and default.config_path.exists():
        local = _from_cluster(default, endpoint)
        if access and secret:
            return S3Target(local.endpoint, access, secret, region)
        return local
    if not endpoint:
        raise Invalid("no S3 endpoint: pass --endpoint URL or --dir D, or set BLOBSTORE_ENDPOINT")
    if not (access and secret):
        raise Invalid("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                      "or pass --dir D")
    return S3Target(endpoint, access, secret, region)


def _from_cluster(directory: ClusterDir, endpoint: str | None) -> S3Target:
    config = load_config(directory.config_path)
    access, secret = cluster_keys(directory, config)
    return S3Target(endpoint or cluster_endpoint(config), access, secret, config.region)
