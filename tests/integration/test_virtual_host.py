"""Virtual-host-style addressing: ``bucket.<s3_domain>`` names the bucket, the path the key."""

from __future__ import annotations

import datetime
import hashlib
import http.client

import pytest

from blobstore.core.s3 import sigv4
from blobstore.testing.processes import Cluster

pytestmark = pytest.mark.integration
DOMAIN = "s3.blobstore.test"


def request(cluster: Cluster, method: str, host: str, path: str, body: bytes = b""):
    address = cluster.config.by_role("gateway")[0].address
    port = address.split(":")[1]
    headers = {"host": f"{host}:{port}"}
    headers.update(sigv4.sign_headers(method, path, [], headers, hashlib.sha256(body).hexdigest(),
                                      cluster.credentials.access_key,
                                      cluster.credentials.secret_key, "us-east-1",
                                      datetime.datetime.now(datetime.UTC)))
    connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_bucket_in_the_host_name(tmp_path):
    with Cluster(tmp_path, meta=1, storage=6, gateway=1, s3_domain=DOMAIN) as cluster:
        assert request(cluster, "PUT", f"vhost.{DOMAIN}", "/")[0] == 200
        assert request(cluster, "PUT", f"vhost.{DOMAIN}", "/dir/key.txt", b"by host")[0] == 200
        status, body = request(cluster, "GET", f"vhost.{DOMAIN}", "/dir/key.txt")
        assert (status, body) == (200, b"by host")
        # The same object by path style, on the same endpoint.
        status, body = request(cluster, "GET", "127.0.0.1", "/vhost/dir/key.txt")
        assert (status, body) == (200, b"by host")
        status, listing = request(cluster, "GET", f"vhost.{DOMAIN}", "/")
        assert status == 200 and b"<Key>dir/key.txt</Key>" in listing
