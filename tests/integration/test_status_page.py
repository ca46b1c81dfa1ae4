"""The gateway's status page: its data, its events, and the page itself rendered by headless
Chromium (Debian's ``chromium`` package; the test is skipped without it).

    BLOBSTORE_STATUS_SCREENSHOT=docs/status-page.png python -m pytest \\
        tests/integration/test_status_page.py -k screenshot

writes the screenshot in docs/ (3 meta, 6 storage over 3 zones, one storage node down).
"""

from __future__ import annotations

import html.parser
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blobstore.core.records import NodeRole, NodeState
from blobstore.gateway.status_page import meta_events, node_events, s3_operation, scrub_events
from blobstore.testing.processes import Cluster

from .conftest import s3_client

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
SCREENSHOT_ENV = "BLOBSTORE_STATUS_SCREENSHOT"


# ---- pure parts: operation names and events ---------------------------------------------


@pytest.mark.parametrize("method, bucket, key, query, copy, expected", [
    ("GET", "", None, {}, False, "ListBuckets"),
    ("PUT", "b", None, {}, False, "CreateBucket"),
    ("GET", "b", None, {"list-type": "2"}, False, "ListObjectsV2"),
    ("GET", "b", None, {}, False, "ListObjects"),
    ("GET", "b", None, {"uploads": ""}, False, "ListMultipartUploads"),
    ("GET", "b", None, {"location": ""}, False, "GetBucketLocation"),
    ("POST", "b", None, {"delete": ""}, False, "DeleteObjects"),
    ("HEAD", "b", None, {}, False, "HeadBucket"),
    ("PUT", "b", "k", {}, False, "PutObject"),
    ("PUT", "b", "k", {}, True, "CopyObject"),
    ("GET", "b", "k", {}, False, "GetObject"),
    ("HEAD", "b", "k", {}, False, "HeadObject"),
    ("DELETE", "b", "k", {}, False, "DeleteObject"),
    ("POST", "b", "k", {"uploads": ""}, False, "CreateMultipartUpload"),
    ("PUT", "b", "k", {"uploadId": "u", "partNumber": "1"}, False, "UploadPart"),
    ("PUT", "b", "k", {"uploadId": "u", "partNumber": "1"}, True, "UploadPartCopy"),
    ("POST", "b", "k", {"uploadId": "u"}, False, "CompleteMultipartUpload"),
    ("DELETE", "b", "k", {"uploadId": "u"}, False, "AbortMultipartUpload"),
    ("GET", "b", "k", {"uploadId": "u"}, False, "ListParts"),
    ("PATCH", "b", "k", {}, False, "Unknown"),
])
def test_s3_operation_names(method: str, bucket: str, key: str | None, query: dict[str, str],
                            copy: bool, expected: str) -> None:
    assert s3_operation(method, bucket, key, query, copy) == expected


def test_node_events() -> None:
    up, suspect, down = NodeState.UP, NodeState.SUSPECT, NodeState.DOWN
    first = node_events(None, {"s1": up, "s2": down}, 10.0)
    assert [(e.kind, e.node) for e in first] == [("node_down", "s2")]
    changes = node_events({"s1": up, "s2": down, "s3": up},
                          {"s1": suspect, "s2": up, "s4": up}, 20.0)
    assert [(e.kind, e.node, e.severity) for e in changes] == [
        ("node_suspect", "s1", "warning"), ("node_up", "s2", "info"),
        ("node_added", "s4", "info"), ("node_removed", "s3", "info")]
    assert changes[0].message == "s1 is suspect (heartbeats late) (was up)"
    assert node_events({"s1": up}, {"s1": up}, 30.0) == []


def test_meta_events() -> None:
    led = {"leader": "m1", "term": 2, "repair_backlog": 0, "degraded_segments": 0,
           "replicas": {"m1": {"reachable": True}, "m2": {"reachable": True}}}
    assert [e.kind for e in meta_events({}, led, 1.0)] == ["leader_elected"]
    assert meta_events(led, led, 2.0) == []
    worse = led | {"repair_backlog": 7, "degraded_segments": 3,
                   "replicas": {"m1": {"reachable": True}, "m2": {"reachable": False}}}
    assert [(e.kind, e.node) for e in meta_events(led, worse, 3.0)] == [
        ("replica_unreachable", "m2"), ("repair_queued", None), ("segments_degraded", None)]
    assert [e.kind for e in meta_events(worse, led, 4.0)] == [
        "replica_reachable", "repair_done", "segments_healthy"]
    assert [e.kind for e in meta_events(led, None, 5.0)] == ["meta_unreachable"]
    assert meta_events(None, None, 6.0) == []  # still unreachable: said once
    assert [e.kind for e in meta_events(None, led | {"leader": "m2", "term": 3}, 7.0)] == [
        "meta_reachable", "leader_elected"]
    assert [e.kind for e in meta_events(led, led | {"leader": None}, 8.0)] == ["meta_no_leader"]


def test_scrub_events() -> None:
    events = scrub_events({"s1": 0, "s2": 4}, {"s1": 2, "s2": 0, "s3": 9}, 1.0)
    assert [(e.kind, e.node, e.message) for e in events] == [
        ("scrub_corruption", "s1", "scrub on s1 found 2 corrupt shard(s)")]


# ---- a real cluster -----------------------------------------------------------------------


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.5)


def status_with_leader(cluster: Cluster) -> dict[str, Any]:
    url = f"{cluster.endpoint}/_blobstore/status.json"
    return wait_for("a leader on the status page",
                    lambda: (data := get_json(url))["meta"]["leader"] and data)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("status"), meta=1, storage=6, gateway=1, zones=3,
                 down_after_s=4) as running:
        yield running


def test_status_json_shows_every_node_by_zone_and_the_leader(cluster: Cluster) -> None:
    data = status_with_leader(cluster)
    rows = {node["id"]: node for zone in data["zones"] for node in zone["nodes"]}
    assert sorted(rows) == sorted(node.id for node in cluster.config.nodes)
    for zone in data["zones"]:
        assert {node["zone"] for node in zone["nodes"]} == {zone["name"]}
    assert len(data["zones"]) == 3
    (meta,) = cluster.node_ids(NodeRole.META)
    assert data["meta"]["leader"] == meta and rows[meta]["raft"] == "leader"
    assert [replica["id"] for replica in data["meta"]["replicas"]] == [meta]
    for node_id in cluster.node_ids(NodeRole.STORAGE):
        assert rows[node_id]["state"] == "up"
        assert rows[node_id]["capacity_bytes"] > 0
    assert data["totals"]["up"] == data["totals"]["nodes"] == len(cluster.config.nodes)
    assert data["repair"]["repair_backlog"] == 0 and data["repair"]["history"]
    kinds = [event["kind"] for event in data["events"]]
    assert "gateway_started" in kinds and "leader_elected" in kinds


def test_observability_paths_need_no_s3_auth(cluster: Cluster) -> None:
    for path in ("status", "status.json", "static/status.css", "static/status.js", "metrics",
                 "healthz", "readyz"):
        with urllib.request.urlopen(f"{cluster.endpoint}/_blobstore/{path}",
                                    timeout=10) as response:
            assert response.status == 200, path
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{cluster.endpoint}/_blobstore/static/../../etc/passwd",
                               timeout=10)
    assert refused.value.code in (403, 404)
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{cluster.endpoint}/some-bucket/key", timeout=10)
    assert unsigned.value.code == 403  # S3 itself still needs a signature


def run_chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", *extra, url],
        capture_output=True, text=True, timeout=180)


class _Page(html.parser.HTMLParser):
    """The rendered DOM: node cards by id (with their classes) and the leader's text."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, str] = {}
        self.leader = ""
        self.events: list[str] = []
        self._in_leader = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("data-node-id"):
            self.nodes[str(attributes["data-node-id"])] = str(attributes.get("class"))
        if attributes.get("data-kind"):
            self.events.append(str(attributes["data-kind"]))
        self._in_leader = attributes.get("id") == "meta-leader"

    def handle_data(self, data: str) -> None:
        if self._in_leader:
            self.leader += data.strip()

    def handle_endtag(self, tag: str) -> None:
        self._in_leader = False


def rendered(cluster: Cluster, profile: Path) -> _Page:
    result = run_chromium(f"{cluster.endpoint}/_blobstore/status", profile, "--dump-dom")
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'data-rendered="1"' in result.stdout, result.stdout[-3000:]  # the JS ran
    page = _Page()
    page.feed(result.stdout)
    return page


@needs_chromium
def test_chromium_shows_every_node_and_the_leader(cluster: Cluster, tmp_path: Path) -> None:
    leader = status_with_leader(cluster)["meta"]["leader"]
    page = rendered(cluster, tmp_path / "profile")
    assert sorted(page.nodes) == sorted(node.id for node in cluster.config.nodes)
    assert page.leader == leader
    assert all("state-up" in classes for classes in page.nodes.values()), page.nodes
    assert "leader_elected" in page.events


@needs_chromium
def test_a_node_going_down_shows_on_the_page(cluster: Cluster, tmp_path: Path) -> None:
    victim = cluster.node_ids(NodeRole.STORAGE)[-1]
    cluster.kill(victim)
    url = f"{cluster.endpoint}/_blobstore/status.json"
    data = wait_for(f"{victim} down on the status page", lambda: (d := get_json(url)) and any(
        e["kind"] == "node_down" and e["node"] == victim for e in d["events"]) and d)
    assert data["totals"]["up"] == len(cluster.config.nodes) - 1
    page = rendered(cluster, tmp_path / "profile")
    assert "state-down" in page.nodes[victim]
    assert "node_down" in page.events


@needs_chromium
@pytest.mark.skipif(not os.environ.get(SCREENSHOT_ENV),
                    reason=f"set {SCREENSHOT_ENV}=docs/status-page.png to write the screenshot")
def test_screenshot_for_the_docs(tmp_path: Path) -> None:
    target = Path(os.environ[SCREENSHOT_ENV]).resolve()
    with Cluster(tmp_path / "cluster", meta=3, storage=6, gateway=1, zones=3,
                 down_after_s=5) as cluster:
        s3 = s3_client(cluster, retries=3)
        s3.create_bucket(Bucket="photos")
        for number in range(12):
            s3.put_object(Bucket="photos", Key=f"2026/{number:03d}.jpg",
                          Body=os.urandom(700_000 + 150_000 * number))
        victim = "storage-6"
        cluster.kill(victim)
        url = f"{cluster.endpoint}/_blobstore/status.json"
        wait_for(f"{victim} down", lambda: any(
            e["kind"] == "node_down" and e["node"] == victim for e in get_json(url)["events"]))
        time.sleep(6)  # a few more samples of the repair backlog for the chart
        result = run_chromium(f"{cluster.endpoint}/_blobstore/status", tmp_path / "profile",
                              f"--screenshot={target}", "--window-size=1280,900",
                              "--hide-scrollbars")
        assert result.returncode == 0, result.stderr[-3000:]
    assert target.stat().st_size > 10_000
