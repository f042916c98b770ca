"""The deploy half of the skaffold loop on the real node: real pods answer through the Service.

`skaffold deploy -p kind,lite --build-artifacts <the podman images>` installs skaffold.yaml's release
as `skaffold dev` would after its build (which needs a Docker daemon this machine lacks; podman
builds the same Dockerfile targets), then `skaffold delete` removes it.
"""

from __future__ import annotations

import json

import pytest
from cluster_support import Kube, ready_pods, wait_for
from real_node_support import podman_images, predict_once, wait_service_routes
from skaffold_deploy import RELEASE, skaffold_delete, skaffold_deploy

pytestmark = pytest.mark.realnode

NAMESPACE = "fc-skaffold-real"


def test_skaffold_deploy_runs_pods_that_answer_and_delete_removes_them(real_node: Kube) -> None:
    images = podman_images()
    proc = skaffold_deploy(
        real_node.kubeconfig,
        NAMESPACE,
        {"fashion-classifier": images["serve"], "fashion-classifier-train": images["train"]},
    )
    try:
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        pods = ready_pods(real_node, NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
        assert len(pods) == 2 and {c["image"] for p in pods for c in p["spec"]["containers"]} == {images["serve"]}
        ip = real_node.get("service", RELEASE, "-n", NAMESPACE)["spec"]["clusterIP"]
        wait_service_routes(ip, 80, 2)
        status, body = predict_once(ip, 80)
        assert status == 200, body
        assert json.loads(body)["predictions"][0]["label"]
    finally:
        deleted = skaffold_delete(real_node.kubeconfig, NAMESPACE)
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    wait_for(lambda: not real_node.get("pods", "-n", NAMESPACE)["items"], 120, "the release's pods to be gone")
    real_node.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s")
