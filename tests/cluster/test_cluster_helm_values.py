"""The chart installed with non-default values: no autoscaler, three Cassandra nodes with auth,
an Ingress, a NodePort Service, and training as a plain Job of the release instead of a hook."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest
import yaml
from cluster_support import CHART, Kube, ready_pods, wait_for

pytestmark = pytest.mark.kube

NAMESPACE = "fc-helm-values"
RELEASE = "shop"
FULLNAME = "shop-fashion-classifier"
VALUES = {
    "autoscaling": {"enabled": False},
    "replicaCount": 3,
    # 30 days of 1 prediction/s fit 2Gi (the chart refuses the default 90: see test_helm.py).
    "cassandra": {
        "replicas": 3,
        "replicationFactor": 3,
        "ttlDays": 30,
        "persistence": {"size": "2Gi"},
        "auth": {"admin": {"username": "shop_admin"}, "app": {"username": "shop_app"}},
    },
    "ingress": {
        "enabled": True,
        "host": "fc.example.com",
        "tls": [{"secretName": "fc-tls", "hosts": ["fc.example.com"]}],
    },
    "service": {"type": "NodePort", "nodePort": 30080},
    "training": {"hooks": "", "arch": "cnn", "epochs": 3},
    "modelStore": {"size": "3Gi", "accessMode": "ReadWriteMany"},
}


@pytest.fixture(scope="module")
def installed(kube: Kube, tmp_path_factory) -> Iterator[Kube]:
    kube.namespace(NAMESPACE)
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    kube.helm("install", RELEASE, CHART, "-n", NAMESPACE, "-f", values, "--wait", "--wait-for-jobs", "--timeout", "5m")
    yield kube
    kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
    kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_fixed_replica_count_without_autoscaler(installed: Kube) -> None:
    # helm --wait waits for the ReplicaSet's pods; the Deployment's status follows a moment later.
    wait_for(
        lambda: installed.get("deployment", FULLNAME, "-n", NAMESPACE)["status"].get("readyReplicas") == 3,
        30,
        "the Deployment's status to count 3 ready replicas",
    )
    assert installed.get("deployment", FULLNAME, "-n", NAMESPACE)["spec"]["replicas"] == 3
    assert installed.kubectl("get", "hpa", "-n", NAMESPACE, "-o", "name").stdout.strip() == ""


def test_three_cassandra_nodes_with_credentials(installed: Kube) -> None:
    wait_for(
        lambda: (
            installed.get("statefulset", f"{FULLNAME}-cassandra", "-n", NAMESPACE)["status"].get("readyReplicas") == 3
        ),
        30,
        "the StatefulSet's status to count 3 ready replicas",
    )
    claims = {c["metadata"]["name"]: c for c in installed.get("pvc", "-n", NAMESPACE)["items"]}
    assert all(claims[f"data-{FULLNAME}-cassandra-{i}"]["status"]["capacity"]["storage"] == "2Gi" for i in range(3))
    assert claims[f"{FULLNAME}-models"]["spec"]["accessModes"] == ["ReadWriteMany"]
    # The repair CronJob may exec into each of the three pods.
    rules = installed.get("role", f"{FULLNAME}-cassandra-repair", "-n", NAMESPACE)["rules"]
    assert rules[1]["resourceNames"] == [f"{FULLNAME}-cassandra-{i}" for i in range(3)]
    for role in ("admin", "app"):
        secret = installed.get("secret", f"{FULLNAME}-cassandra-{role}", "-n", NAMESPACE)
        assert base64.b64decode(secret["data"]["username"]) == f"shop_{role}".encode()
        assert len(base64.b64decode(secret["data"]["password"])) == 32


def test_ingress_and_node_port(installed: Kube) -> None:
    ingress = installed.get("ingress", FULLNAME, "-n", NAMESPACE)
    assert ingress["spec"]["rules"][0]["host"] == "fc.example.com"
    service = installed.get("service", FULLNAME, "-n", NAMESPACE)
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["nodePort"] == 30080


def test_plain_training_job_is_part_of_the_release_and_completes(installed: Kube) -> None:
    job = installed.get("job", f"{FULLNAME}-train", "-n", NAMESPACE)
    assert "helm.sh/hook" not in (job["metadata"].get("annotations") or {})
    assert job["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--arch") + 1] == "cnn"
    assert command[command.index("--epochs") + 1] == "3"
    assert job["status"].get("succeeded") == 1


def test_uninstall_removes_the_release_job_and_pods(installed: Kube) -> None:
    installed.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "2m")
    # The migrate hook's Job and pod stay (hooks are not part of the release): that is the known
    # finding of test_cluster_helm.py's uninstall test, so it is left out here.
    hook = f"{FULLNAME}-migrate"
    deadline = time.monotonic() + 30
    while True:
        pods = [
            p["metadata"]["name"]
            for p in installed.get("pods", "-n", NAMESPACE)["items"]
            if not p["metadata"]["name"].startswith(f"{hook}-")
        ]
        jobs = [
            j["metadata"]["name"]
            for j in installed.get("jobs", "-n", NAMESPACE)["items"]
            if j["metadata"]["name"] != hook
        ]
        if (not pods and not jobs) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (pods, jobs) == ([], [])
    assert ready_pods(installed, NAMESPACE, "app.kubernetes.io/instance=shop") == []
    wait_for(lambda: installed.get("statefulsets", "-n", NAMESPACE)["items"] == [], 30, "no StatefulSet")
