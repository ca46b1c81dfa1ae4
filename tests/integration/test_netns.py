"""Nodes as separate hosts: each meta and storage node in its own network namespace with
its own address, the gateway reaching them over a bridge, as across a real network."""

from __future__ import annotations

import hashlib
import os

import pytest

from blobstore.testing import netns
from blobstore.testing.processes import Cluster

from .conftest import s3_client

pytestmark = pytest.mark.integration
usable, reason = netns.available()


@pytest.mark.skipif(not usable, reason=f"network namespaces unavailable: {reason}")
def test_round_trip_through_the_gateway_to_namespaced_nodes(tmp_path):
    with Cluster(tmp_path, meta=1, storage=6, gateway=1,
                 netns_roles=("meta", "storage")) as cluster:
        addresses = {n.id: n.host for n in cluster.config.nodes}
        assert len({addresses[n] for n in cluster.node_ids("storage")}) == 6
        assert all(not host.startswith("127.") for node_id, host in addresses.items()
                   if not node_id.startswith("gateway"))
        s3 = s3_client(cluster)
        s3.create_bucket(Bucket="hosts")
        data = os.urandom(9 * 1024 * 1024 + 3)
        s3.put_object(Bucket="hosts", Key="across", Body=data)
        body = s3.get_object(Bucket="hosts", Key="across")["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
