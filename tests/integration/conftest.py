"""Real clusters for integration tests: processes started as `blobstore init` + `serve` do."""

from __future__ import annotations

import shutil

import boto3
import pytest
from botocore.config import Config

from blobstore.testing.processes import Cluster

MIB = 1024 * 1024


def s3_client(cluster: Cluster, secret: str | None = None, retries: int = 1):
    return boto3.client(
        "s3", endpoint_url=cluster.endpoint, region_name=cluster.config.region,
        aws_access_key_id=cluster.credentials.access_key,
        aws_secret_access_key=secret or cluster.credentials.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": retries},
                      connect_timeout=10, read_timeout=120))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """1 meta, 6 storage, 1 gateway, EC 4+2: the issue's reference layout."""
    root = tmp_path_factory.mktemp("cluster")
    with Cluster(root, meta=1, storage=6, gateway=1, ec="4+2") as running:
        yield running
    shutil.rmtree(root, ignore_errors=True)  # tmp_path's retention policy does not reach here


@pytest.fixture(scope="module")
def s3(cluster):
    return s3_client(cluster)
