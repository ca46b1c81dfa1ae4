"""Real S3 clients against a real cluster. The clients are installed by .ci/run (s3cmd and
rclone from Debian, boto3/awscli/minio from PyPI); a missing one skips with the reason."""

from __future__ import annotations

import shutil

import pytest

from blobstore.testing.processes import Cluster


@pytest.fixture(scope="session", params=["http", "https"])
def compat_cluster(request, tmp_path_factory):
    """Each client runs against plain HTTP and against TLS (a self-signed certificate made
    here): current SDKs send aws-chunked bodies with checksum trailers only over HTTPS."""
    with Cluster(tmp_path_factory.mktemp(f"compat-{request.param}"), meta=1, storage=6,
                 gateway=1, tls=request.param == "https") as running:
        yield running


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    return path
