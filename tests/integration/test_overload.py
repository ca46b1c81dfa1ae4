"""Overload: a burst of ten times the gateway's capacity gets its excess refused with
503 SlowDown within a second, nothing times out, and the store recovers when it ends."""

from __future__ import annotations

import datetime
import http.client
import os
import threading
import time

import pytest

from blobstore.core.s3 import sigv4
from blobstore.testing.processes import Cluster

from .conftest import s3_client

pytestmark = pytest.mark.integration
CAPACITY = 8


def test_burst_is_shed_fast_and_recovers(tmp_path):
    with Cluster(tmp_path, meta=1, storage=6, gateway=1,
                 settings={"gateway_max_requests": CAPACITY}) as cluster:
        s3 = s3_client(cluster)
        s3.create_bucket(Bucket="burst")
        # Large enough that CAPACITY reads at once take longer than the admission queue
        # waits (0.25 s), however fast the gateway is: the rest must be shed.
        data = os.urandom(64 * 1024 * 1024)
        s3.put_object(Bucket="burst", Key="obj", Body=data)
        url = sigv4.presign_url("GET", f"{cluster.endpoint}/burst/obj",
                                cluster.credentials.access_key, cluster.credentials.secret_key,
                                "us-east-1", datetime.datetime.now(datetime.UTC), expires_s=300)
        path = url.split(cluster.endpoint, 1)[1]
        host, port = cluster.config.by_role("gateway")[0].address.split(":")
        results: list[tuple[int, float, bytes]] = []
        lock = threading.Lock()

        start_together = threading.Barrier(10 * CAPACITY)

        def one() -> None:
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                connection.connect()
                start_together.wait(30)
                started = time.monotonic()
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                with lock:
                    results.append((response.status, time.monotonic() - started, body))
            finally:
                connection.close()

        threads = [threading.Thread(target=one) for _ in range(10 * CAPACITY)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        statuses = [status for status, _, _ in results]
        assert len(results) == 10 * CAPACITY
        assert set(statuses) <= {200, 503}, statuses
        shed = [(elapsed, body) for status, elapsed, body in results if status == 503]
        assert shed, "nothing was shed: the burst did not exceed capacity"
        assert all(b"<Code>SlowDown</Code>" in body for _, body in shed)
        assert max(elapsed for elapsed, _ in shed) < 1.0
        assert all(body == data for status, _, body in results if status == 200)
        started = time.monotonic()
        assert s3.get_object(Bucket="burst", Key="obj")["Body"].read() == data
        assert time.monotonic() - started < 2
