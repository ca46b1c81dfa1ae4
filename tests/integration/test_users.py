"""`blobstore user add`: a new key pair works at once; keys live in the meta service."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config

pytestmark = pytest.mark.integration


def test_user_add_gives_working_keys(cluster):
    result = cluster.cli("user", "add", "alice", "--json")
    assert result.returncode == 0, result.stderr.decode()
    keys = json.loads(result.stdout)
    alice = boto3.client("s3", endpoint_url=cluster.endpoint, region_name="us-east-1",
                         aws_access_key_id=keys["access_key"],
                         aws_secret_access_key=keys["secret_key"],
                         config=Config(s3={"addressing_style": "path"},
                                       retries={"max_attempts": 1}))
    alice.create_bucket(Bucket="alices-bucket")
    alice.put_object(Bucket="alices-bucket", Key="k", Body=b"from alice")
    assert alice.get_object(Bucket="alices-bucket", Key="k")["Body"].read() == b"from alice"
    plain = cluster.cli("user", "add", "bob")
    lines = plain.stdout.decode().splitlines()
    assert lines[0].startswith("AWS_ACCESS_KEY_ID=") and lines[1].startswith(
        "AWS_SECRET_ACCESS_KEY=")
