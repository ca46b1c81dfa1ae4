"""Real S3 clients against a real cluster. The clients are installed by .ci/run (s3cmd and
rclone from Debian, boto3/awscli/minio from PyPI); a missing one skips with the reason."""

from __future__ import annotations

import shutil

import pytest

from blobstore.testing.processes import Cluster


@pytest.fixture(scope="session")
def compat_cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("compat"), meta=1, storage=6, gateway=1) as running:
        yield running


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    return path
