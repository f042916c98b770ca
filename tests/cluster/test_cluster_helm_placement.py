"""Where the real kube-scheduler puts the pods that share the chart's claims, on 3 kwok nodes.

ReadWriteOnce (the default): the model store and spool attach to one node, so every classifier
pod, the training Job's pod and `fashion-classifier cluster train` Jobs must land on one node,
and a training pod with no classifier running must still be scheduled (it is its own anchor).
ReadWriteMany: the classifier pods spread over the nodes. kwok runs no container: this proves
the scheduling, not the mounts (a real node does that).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cluster_support import CHART, Kube, wait_for

pytestmark = pytest.mark.kube

RELEASE = "place"
FULLNAME = "place-fashion-classifier"
CLASSIFIER = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=classifier"
TRAINING = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=training"
REPLICAS = 4
# Lean releases: no Cassandra (the SQLite log), a fixed replica count, training as a plain Job of
# the release reading its data from a host path, and only the fake nodes (kube-local may also
# run a real one, which would try to run the containers).
VALUES: dict[str, Any] = {
    "autoscaling": {"enabled": False},
    "replicaCount": REPLICAS,
    "cassandra": {"enabled": False},
    "config": {"predlog": "sqlite"},
    "networkPolicy": {"enabled": False},
    "training": {"hooks": "", "data": {"hostPath": "/srv/fashion-mnist"}},
    "nodeSelector": {"type": "kwok"},
}


def _install(kube: Kube, namespace: str, values: dict[str, Any], tmp_path_factory) -> None:
    kube.namespace(namespace)
    file = tmp_path_factory.mktemp("values") / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    kube.helm("install", RELEASE, CHART, "-n", namespace, "-f", file, "--wait", "--wait-for-jobs", "--timeout", "3m")


def _uninstall(kube: Kube, namespace: str) -> None:
    kube.helm("uninstall", RELEASE, "-n", namespace, "--wait", check=False)
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _nodes(kube: Kube, namespace: str, selector: str) -> dict[str, str]:
    """Pod name -> node, for the live (not terminating) pods the selector picks; "" = unscheduled."""
    pods = kube.get("pods", "-n", namespace, "-l", selector)["items"]
    return {
        p["metadata"]["name"]: p["spec"].get("nodeName", "")
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
    }


def _scheduled(kube: Kube, namespace: str, selector: str, count: int) -> dict[str, str]:
    def check() -> dict[str, str] | None:
        nodes = _nodes(kube, namespace, selector)
        return nodes if len(nodes) == count and all(nodes.values()) else None

    return wait_for(check, 60, f"{count} scheduled pods ({selector})")


@pytest.fixture(scope="module")
def fake_nodes(kube: Kube) -> list[str]:
    nodes = [n["metadata"]["name"] for n in kube.get("nodes", "-l", "type=kwok")["items"]]
    # With one node, "on one node" would prove nothing.
    assert len(nodes) >= 3, nodes
    return nodes


@pytest.fixture(scope="module")
def rwo(kube: Kube, fake_nodes: list[str], tmp_path_factory) -> Iterator[tuple[Kube, str]]:
    namespace = "fc-place-rwo"
    _install(kube, namespace, VALUES, tmp_path_factory)
    yield kube, namespace
    _uninstall(kube, namespace)


@pytest.fixture(scope="module")
def rwx(kube: Kube, fake_nodes: list[str], tmp_path_factory) -> Iterator[tuple[Kube, str]]:
    namespace = "fc-place-rwx"
    _install(kube, namespace, {**VALUES, "modelStore": {"accessMode": "ReadWriteMany"}}, tmp_path_factory)
    yield kube, namespace
    _uninstall(kube, namespace)


def test_rwo_classifier_and_training_pods_share_one_node(rwo: tuple[Kube, str]) -> None:
    kube, namespace = rwo
    classifier = _scheduled(kube, namespace, CLASSIFIER, REPLICAS)
    training = _nodes(kube, namespace, TRAINING)
    assert len(training) == 1, training
    assert len(set(classifier.values()) | set(training.values())) == 1, (classifier, training)
    # Both claims are ReadWriteOnce and bound, and the training Job read its data from the host.
    claims = {c["metadata"]["name"]: c for c in kube.get("pvc", "-n", namespace)["items"]}
    for name in (f"{FULLNAME}-models", f"{FULLNAME}-spool"):
        assert claims[name]["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claims[name]["status"]["phase"] == "Bound"
    job = kube.get("job", f"{FULLNAME}-train", "-n", namespace)
    assert job["status"].get("succeeded") == 1
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert {"name": "FC_DATA_DIR", "value": "/data"} in container["env"]


def test_rwo_cluster_train_job_joins_the_classifier_node(rwo: tuple[Kube, str]) -> None:
    kube, namespace = rwo
    [node] = set(_scheduled(kube, namespace, CLASSIFIER, REPLICAS).values())
    proc = kube.cli("train", "--epochs", "1", "-n", namespace, "--release", RELEASE)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    name = proc.stdout.split("job ", 1)[1].split()[0]
    pods = _nodes(kube, namespace, f"job-name={name}")
    assert list(pods.values()) == [node], pods


def test_rwo_training_with_no_classifier_is_scheduled_and_leads(rwo: tuple[Kube, str]) -> None:
    """No classifier pod runs: the training pod matches its own affinity term, so it is scheduled
    (not Pending for want of a partner); classifier pods started while it runs join its node."""
    kube, namespace = rwo
    kube.kubectl("scale", f"deployment/{FULLNAME}", "--replicas=0", "-n", namespace)
    wait_for(lambda: not _nodes(kube, namespace, CLASSIFIER), 60, "no classifier pod")
    # A real Job: it must get a node and complete.
    proc = kube.cli("train", "--epochs", "1", "-n", namespace, "--release", RELEASE, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout

    # kwok completes Job pods within seconds, and a finished pod holds no volume and anchors
    # nothing. A long training run is a pod that keeps running: a bare pod of the Job's template.
    job = kube.get("job", f"{FULLNAME}-train", "-n", namespace)
    template = copy.deepcopy(job["spec"]["template"])
    labels = {
        k: v
        for k, v in template["metadata"]["labels"].items()
        if k not in ("controller-uid", "job-name") and not k.startswith("batch.kubernetes.io/")
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{FULLNAME}-long-training", "namespace": namespace, "labels": labels},
        "spec": template["spec"],
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
    try:
        [lead] = _scheduled(kube, namespace, TRAINING + ",!job-name", 1).values()
        kube.kubectl("scale", f"deployment/{FULLNAME}", f"--replicas={REPLICAS}", "-n", namespace)
        classifier = _scheduled(kube, namespace, CLASSIFIER, REPLICAS)
        assert set(classifier.values()) == {lead}, (lead, classifier)
    finally:
        kube.kubectl("delete", "pod", pod["metadata"]["name"], "-n", namespace, "--wait=false")


def test_rwx_classifier_pods_spread_over_nodes(rwx: tuple[Kube, str]) -> None:
    kube, namespace = rwx
    classifier = _scheduled(kube, namespace, CLASSIFIER, REPLICAS)
    assert len(set(classifier.values())) > 1, classifier
    claims = {c["metadata"]["name"]: c["spec"]["accessModes"] for c in kube.get("pvc", "-n", namespace)["items"]}
    assert claims[f"{FULLNAME}-models"] == claims[f"{FULLNAME}-spool"] == ["ReadWriteMany"]
    job = kube.get("job", f"{FULLNAME}-train", "-n", namespace)
    assert "affinity" not in job["spec"]["template"]["spec"]
