"""The deploy half of the skaffold loop on the local control plane (kwok nodes).

`skaffold deploy -p kind,lite --build-artifacts <podman images>` installs skaffold.yaml's Helm
release, a redeploy with a new tag rolls it (what `skaffold dev` does after each rebuild), and
`skaffold delete` removes it. skaffold is the real binary (scripts/k8s-tools builds it from the Go
module proxy), driving the pinned helm against the real API server; kwok only stands in for the
kubelets, so no container runs here (the real-node tests deploy the same way with real pods).

Not run here: the build half (`skaffold build`/`dev`/`run` build with a Docker daemon, which this
machine lacks; podman builds the images instead) and `kind load` (no kind cluster: the context is
kube-local, so the `kind` profile is named with -p, and images are never loaded or pushed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_support import Kube, wait_for
from skaffold_deploy import PODMAN_IMAGES, RELEASE, skaffold_delete, skaffold_deploy

pytestmark = pytest.mark.kube

NAMESPACE = "fc-skaffold"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
SERVE_IMAGE = "localhost/fashion-classifier:0.1.0"


def _output(proc: Any) -> str:
    return f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"


def _images(deployment: dict[str, Any]) -> set[str]:
    spec = deployment["spec"]["template"]["spec"]
    return {c["image"] for c in spec.get("initContainers", []) + spec["containers"]}


def _revision(kube: Kube) -> int:
    [release] = json.loads(kube.helm("list", "-n", NAMESPACE, "-o", "json").stdout)
    assert release["status"] == "deployed", release
    return int(release["revision"])


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    # skaffold creates the namespace itself (the release's createNamespace); it never deletes it.
    yield NAMESPACE
    skaffold_delete(kube.kubeconfig, NAMESPACE)
    kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=180)


def test_skaffold_deploy_installs_the_lite_release_with_the_named_images_and_delete_removes_it(
    kube: Kube, namespace: str
) -> None:
    proc = skaffold_deploy(kube.kubeconfig, namespace, verbosity="debug")
    assert proc.returncode == 0, _output(proc)
    log = proc.stdout + proc.stderr
    # The tags came from --build-artifacts, nothing was built, and the network switches held.
    assert f"fashion-classifier -> {SERVE_IMAGE}" in log, _output(proc)
    assert "Skipping update check for flag `--update-check` set to false" in log, _output(proc)
    assert "Building [" not in log and "Loading images into kind" not in log, _output(proc)
    assert _revision(kube) == 1

    # setValueTemplates split the tag into repository and tag; the profiles' values are set.
    values = json.loads(kube.helm("get", "values", RELEASE, "-n", namespace, "-o", "json").stdout)
    assert values["image"] == {
        "repository": "localhost/fashion-classifier",
        "tag": "0.1.0",
        "pullPolicy": "IfNotPresent",
    }
    assert values["trainImage"]["repository"] == "localhost/fashion-classifier-train"
    assert values["trainImage"]["tag"] == "0.1.0"
    assert values["cassandra"]["enabled"] is False and values["training"]["enabled"] is False
    assert values["config"]["predlog"] == "sqlite" and values["autoscaling"]["enabled"] is False

    # skaffold's status check already waited for the rollout; the objects say the same.
    deployment = kube.get("deployment", RELEASE, "-n", namespace)
    assert _images(deployment) == {SERVE_IMAGE}
    assert deployment["status"].get("readyReplicas") == deployment["spec"]["replicas"] == 2
    # The manifests went through skaffold's own renderer (it labels what it deploys).
    assert "skaffold.dev/run-id" in deployment["metadata"]["labels"]
    # lite: no Cassandra, no hook Jobs, no autoscaler, no Prometheus Operator objects.
    for kind in ("statefulsets", "jobs", "horizontalpodautoscalers", "servicemonitors", "prometheusrules"):
        assert kube.get(kind, "-n", namespace, "-l", INSTANCE)["items"] == [], kind

    # The dev loop's redeploy: a new tag is a helm upgrade that rolls the pods onto it.
    rebuilt = {**PODMAN_IMAGES, "fashion-classifier": "localhost/fashion-classifier:0.1.1"}
    proc = skaffold_deploy(kube.kubeconfig, namespace, rebuilt)
    assert proc.returncode == 0, _output(proc)
    assert _revision(kube) == 2
    deployment = kube.get("deployment", RELEASE, "-n", namespace)
    assert _images(deployment) == {"localhost/fashion-classifier:0.1.1"}
    assert deployment["status"].get("updatedReplicas") == deployment["status"].get("readyReplicas") == 2

    proc = skaffold_delete(kube.kubeconfig, namespace)
    assert proc.returncode == 0, _output(proc)
    assert json.loads(kube.helm("list", "-n", namespace, "-o", "json").stdout) == []
    wait_for(lambda: not kube.get("pods", "-n", namespace, "-l", INSTANCE)["items"], 120, "the release's pods to go")
    # What is left is only what the chart keeps on purpose (helm.sh/resource-policy: keep: the
    # model store and the spool, which may hold unsent rows).
    left = kube.get("all,configmaps,secrets,persistentvolumeclaims,serviceaccounts", "-n", namespace, "-l", INSTANCE)[
        "items"
    ]
    kept = {
        (o["kind"], o["metadata"]["name"])
        for o in left
        if o["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"
    }
    assert {(o["kind"], o["metadata"]["name"]) for o in left} == kept
    assert {kind for kind, _ in kept} <= {"PersistentVolumeClaim"}


def test_skaffold_deploy_refuses_build_artifacts_that_miss_an_artifact(kube: Kube, namespace: str) -> None:
    # Every artifact of skaffold.yaml needs a tag: the train image's is what setValueTemplates give
    # trainImage, so the real-node test must name both images.
    proc = skaffold_deploy(kube.kubeconfig, namespace, {"fashion-classifier": SERVE_IMAGE})
    assert proc.returncode != 0, _output(proc)
    assert "fashion-classifier-train" in proc.stdout + proc.stderr, _output(proc)
    assert kube.helm("list", "-n", namespace, "-o", "json").stdout.strip() == "[]"
