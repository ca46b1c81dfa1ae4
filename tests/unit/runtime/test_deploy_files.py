"""deploy/: every file parses, and they agree with each other and with the code.

Docker and Kubernetes cannot run here, so these check what can be checked without them:
the cluster.toml files load with ``load_config``; the YAML parses; node ids, addresses,
probes and ports line up between cluster.toml, compose, the StatefulSets and haproxy; the
alert rules use metric names that ``runtime/metrics.py`` exports. Where the real tool is
installed (promtool, haproxy, systemd-analyze) it checks its own file too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from blobstore.config import ClusterConfig, load_config, parse_config
from blobstore.core.records import NodeRole
from blobstore.runtime import metrics

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def by_role(config: ClusterConfig, role: NodeRole) -> list[str]:
    return [node.id for node in config.by_role(role)]


# ---- cluster.toml -----------------------------------------------------------------------


def test_example_cluster_is_3_meta_and_6_storage_over_3_zones_on_real_hosts() -> None:
    config = load_config(DEPLOY / "cluster.example.toml")
    assert len(config.by_role(NodeRole.META)) == 3
    assert len(config.by_role(NodeRole.STORAGE)) == 6
    assert config.by_role(NodeRole.GATEWAY)
    zones = {node.zone for node in config.nodes}
    assert len(zones) == 3
    for zone in zones:  # a zone lost = at most parity_shards shards and one meta replica
        in_zone = [n for n in config.nodes if n.zone == zone]
        assert sum(n.role == NodeRole.META for n in in_zone) == 1
        assert sum(n.role == NodeRole.STORAGE for n in in_zone) == 2 <= config.parity_shards
    for node in config.nodes:
        assert not node.host.startswith("127.") and node.host != "localhost"
        assert node.data_dir == f"/var/lib/blobstore/{node.id}"  # systemd StateDirectory


def test_compose_cluster_toml_loads() -> None:
    config = load_config(DEPLOY / "docker" / "cluster.toml")
    assert (len(by_role(config, NodeRole.META)), len(by_role(config, NodeRole.STORAGE)),
            len(by_role(config, NodeRole.GATEWAY))) == (3, 6, 2)
    for node in config.nodes:
        assert node.host == node.id  # the compose service name resolves to the container


# ---- systemd ----------------------------------------------------------------------------


def unit_values(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.parametrize("role", ["meta", "storage", "gateway"])
def test_systemd_unit_per_role(role: str) -> None:
    unit = unit_values(DEPLOY / "systemd" / f"blobstore-{role}@.service")
    assert unit["ExecStart"] == [
        "/usr/local/bin/blobstore serve --config /etc/blobstore/cluster.toml --id %i"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["User"] == ["blobstore"]
    for hardening in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectHome"):
        assert hardening in unit, hardening
    assert unit["StateDirectory"] == ["blobstore"]
    assert unit["WantedBy"] == ["blobstore.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_units_verify(tmp_path: Path) -> None:
    units = []
    for role in ("meta", "storage", "gateway"):
        text = (DEPLOY / "systemd" / f"blobstore-{role}@.service").read_text()
        unit = tmp_path / f"blobstore-{role}@node-1.service"
        unit.write_text(text.replace("/usr/local/bin/blobstore", "/bin/true"))  # not installed
        units.append(str(unit))
    shutil.copy(DEPLOY / "systemd" / "blobstore.target", tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and "blobstore" not in result.stderr, result.stderr


# ---- docker -----------------------------------------------------------------------------


def test_dockerfile_and_healthcheck() -> None:
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", dockerfile, re.MULTILINE)
    assert "pip wheel" in dockerfile and "pip install" in dockerfile
    assert re.search(r"^USER blobstore$", dockerfile, re.MULTILINE)
    compile((DEPLOY / "docker" / "healthcheck.py").read_text(), "healthcheck.py", "exec")


def test_compose_runs_every_node_of_its_cluster_toml_and_haproxy() -> None:
    (compose,) = load_yaml(DEPLOY / "docker" / "compose.yaml")
    config = load_config(DEPLOY / "docker" / "cluster.toml")
    services = compose["services"]
    nodes = {name: spec for name, spec in services.items() if "command" in spec}
    assert sorted(nodes) == sorted(node.id for node in config.nodes)
    for name, spec in nodes.items():
        assert spec["command"][-2:] == ["--id", name]
        assert spec["environment"]["BLOBSTORE_ID"] == name
        assert spec["restart"] == "on-failure"
        assert spec["volumes"] == [f"{name}:/var/lib/blobstore"]
        assert spec["configs"][0]["target"] == "/etc/blobstore/cluster.toml"
    assert "haproxy" in services
    haproxy = (DEPLOY / "docker" / "haproxy.cfg").read_text()
    assert servers_of(haproxy) == [n.address for n in config.by_role(NodeRole.GATEWAY)]


# ---- load balancer ----------------------------------------------------------------------


def servers_of(haproxy_cfg: str) -> list[str]:
    return re.findall(r"^\s*server\s+\S+\s+(\S+)\s+check", haproxy_cfg, re.MULTILINE)


@pytest.mark.parametrize("path", ["haproxy/haproxy.cfg", "docker/haproxy.cfg"])
def test_haproxy_balances_s3_over_gateways_with_readyz_checks(path: str) -> None:
    text = (DEPLOY / path).read_text()
    assert re.search(r"^\s*balance roundrobin$", text, re.MULTILINE)
    assert re.search(r"^\s*option httpchk GET /_blobstore/readyz$", text, re.MULTILINE)
    assert len(servers_of(text)) >= 2
    if path.startswith("haproxy/"):
        config = load_config(DEPLOY / "cluster.example.toml")
        assert servers_of(text) == [n.address for n in config.by_role(NodeRole.GATEWAY)]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_config() -> None:
    result = subprocess.run(["haproxy", "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ---- kubernetes -------------------------------------------------------------------------


def k8s_objects() -> list[dict[str, Any]]:
    kustomization = load_yaml(DEPLOY / "k8s" / "kustomization.yaml")[0]
    objects = []
    for resource in kustomization["resources"]:
        objects += load_yaml(DEPLOY / "k8s" / resource)
    return objects


def test_k8s_statefulsets_match_the_configmap() -> None:
    objects = k8s_objects()
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    config = parse_config(configmap["data"]["cluster.toml"], "configmap.yaml")
    namespace = configmap["metadata"]["namespace"]
    pods: dict[str, tuple[str, dict[str, Any]]] = {}
    for sts in (o for o in objects if o["kind"] == "StatefulSet"):
        for ordinal in range(sts["spec"]["replicas"]):
            pods[f"{sts['metadata']['name']}-{ordinal}"] = (sts["spec"]["serviceName"], sts)
    assert sorted(pods) == sorted(node.id for node in config.nodes)
    headless = {o["metadata"]["name"] for o in objects
                if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None"}
    for node in config.nodes:
        service, sts = pods[node.id]
        assert service in headless
        assert node.host == f"{node.id}.{service}.{namespace}.svc.cluster.local"
        container = sts["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"][0]["containerPort"] == node.port
        assert container["args"] == ["serve", "--config", "/etc/blobstore/cluster.toml", "--id",
                                     "$(POD_NAME)"]
        affinity = sts["spec"]["template"]["spec"].get("affinity", {}).get("nodeAffinity")
        if node.role != NodeRole.GATEWAY:  # the pod runs in the zone cluster.toml gives it
            term = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
            assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [node.zone]


def test_k8s_probes_volumes_and_s3_service() -> None:
    objects = k8s_objects()
    roles = set()
    for sts in (o for o in objects if o["kind"] == "StatefulSet"):
        role = sts["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        roles.add(role)
        container = sts["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/_blobstore/healthz"
        readiness = container["readinessProbe"]["httpGet"]["path"]
        # meta has no readyz route yet; its healthz already means "runs and knows a leader"
        assert readiness == "/_blobstore/readyz" or (role == "meta" and
                                                     readiness == "/_blobstore/healthz")
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["config"] == "/etc/blobstore" and mounts["data"] == "/var/lib/blobstore"
        if role in ("meta", "storage"):
            assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert roles == {"meta", "storage", "gateway"}
    (s3,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "s3"]
    assert s3["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"


# ---- prometheus -------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    (document,) = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alerts_cover_the_issue_and_use_exported_metrics() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {"BlobstoreNodeDown", "BlobstoreRepairBacklogGrowing", "BlobstoreMetaWithoutLeader",
            "BlobstoreDiskNearlyFull"} <= names
    exported = metrics.metric_names()
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        for name in re.findall(r"\bblobstore_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert name in exported or base in exported, f"{rule['alert']}: unknown {name}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    directory = DEPLOY / "prometheus"
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(["promtool", *args], cwd=directory, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
