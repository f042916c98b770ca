"""The chart installed for real on the local control plane, and driven through its lifecycle.

kwok stands in for the kubelets: pods become Running and Ready without running anything, Job pods
complete. So this proves what the API server and the controllers do with the chart: the release
installs and its hooks run, the Deployment and StatefulSet reach their replica counts, Services get
endpoints, scaling and upgrades roll pods, and uninstall cleans up. That the containers then work
(`helm test` passing among them) is test_real_node.py's part, on a real kubelet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cluster_support import CHART, Kube, leftovers, ready_pods, wait_for

pytestmark = pytest.mark.kube

NAMESPACE = "fc-helm"
RELEASE = "fc"
FULLNAME = "fc-fashion-classifier"
CLASSIFIER = "app.kubernetes.io/instance=fc,app.kubernetes.io/component=classifier"
CASSANDRA = "app.kubernetes.io/instance=fc,app.kubernetes.io/component=cassandra"
# What `helm uninstall` is documented to leave: the model store and the prediction-log spool
# (helm.sh/resource-policy: keep; the spool may hold unsent rows) and the Cassandra StatefulSet's
# data claims (StatefulSets never delete their claims by default).
KEPT_CLAIMS = {
    f"{FULLNAME}-models",
    f"{FULLNAME}-spool",
    f"data-{FULLNAME}-cassandra-0",
    f"data-{FULLNAME}-cassandra-1",
}
# ...and the Cassandra roles' Secrets (hooks, which Helm never deletes): the kept data has those
# passwords, and a reinstall finds them with `lookup`.
CASSANDRA_SECRETS = {f"{FULLNAME}-cassandra-admin", f"{FULLNAME}-cassandra-app"}


def _generated_secrets(kube: Kube) -> dict[str, str]:
    """The random values the chart generated: the Cassandra roles' passwords and the API token."""
    values = {name: kube.get("secret", name, "-n", NAMESPACE)["data"]["password"] for name in CASSANDRA_SECRETS}
    api_token = f"{FULLNAME}-api-token"
    values[api_token] = kube.get("secret", api_token, "-n", NAMESPACE)["data"]["token"]
    return values


def _manifest(kube: Kube, namespace: str, release: str) -> list[dict[str, Any]]:
    text = kube.helm("get", "manifest", release, "-n", namespace).stdout
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def installed(kube: Kube) -> Iterator[Kube]:
    kube.namespace(NAMESPACE)
    kube.helm("install", RELEASE, CHART, "-n", NAMESPACE, "--wait", "--timeout", "5m")
    yield kube
    kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
    kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_install_runs_the_hooks(installed: Kube) -> None:
    # post-install hooks: the schema migration, then a first training run; both completed (kwok),
    # and Helm deleted the succeeded Jobs (hook-delete-policy hook-succeeded).
    release = json.loads(installed.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)
    assert release["info"]["status"] == "deployed"
    hooks = {h["name"]: h["last_run"]["phase"] for h in release["hooks"] if h["kind"] == "Job"}
    assert hooks == {f"{FULLNAME}-migrate": "Succeeded", f"{FULLNAME}-train": "Succeeded"}
    jobs = {j["metadata"]["name"] for j in installed.get("jobs", "-n", NAMESPACE)["items"]}
    assert not jobs & set(hooks)


def test_deployment_reaches_its_replicas_of_ready_pods(installed: Kube) -> None:
    # With autoscaling on (the default) the Deployment has no replica count: the HPA raises it to
    # minReplicas (2) even without metrics.
    def ready() -> bool:
        d = installed.get("deployment", FULLNAME, "-n", NAMESPACE)
        return d["spec"].get("replicas") == 2 and d["status"].get("readyReplicas") == 2

    wait_for(ready, 90, "the Deployment's 2 ready replicas")
    wait_for(lambda: len(ready_pods(installed, NAMESPACE, CLASSIFIER)) == 2, 30, "exactly 2 ready classifier pods")


def test_statefulset_has_two_ready_cassandra_pods_with_bound_claims(installed: Kube) -> None:
    wait_for(
        lambda: (
            installed.get("statefulset", f"{FULLNAME}-cassandra", "-n", NAMESPACE)["status"].get("readyReplicas") == 2
        ),
        90,
        "2 ready Cassandra pods",
    )
    wait_for(lambda: len(ready_pods(installed, NAMESPACE, CASSANDRA)) == 2, 30, "exactly 2 ready Cassandra pods")

    def claims() -> dict[str, str]:
        return {c["metadata"]["name"]: c["status"].get("phase") for c in installed.get("pvc", "-n", NAMESPACE)["items"]}

    wait_for(lambda: claims() == dict.fromkeys(KEPT_CLAIMS, "Bound"), 30, f"bound claims {KEPT_CLAIMS}")


def test_every_service_has_endpoints(installed: Kube) -> None:
    services = [d["metadata"]["name"] for d in _manifest(installed, NAMESPACE, RELEASE) if d["kind"] == "Service"]
    assert services

    def endpoints(service: str) -> int:
        slices = installed.get("endpointslices", "-n", NAMESPACE, "-l", f"kubernetes.io/service-name={service}")
        return sum(1 for s in slices["items"] for e in s.get("endpoints") or [] if e["conditions"].get("ready"))

    wait_for(lambda: all(endpoints(s) >= 2 for s in services), 60, f"endpoints of {services}")


def test_hpa_and_pdbs_exist(installed: Kube) -> None:
    hpa = installed.get("hpa", FULLNAME, "-n", NAMESPACE)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["scaleTargetRef"]["name"] == FULLNAME
    pdbs = {p["metadata"]["name"] for p in installed.get("pdb", "-n", NAMESPACE)["items"]}
    assert pdbs == {FULLNAME, f"{FULLNAME}-cassandra"}


def test_kubectl_scale_yields_five_pods(installed: Kube) -> None:
    installed.kubectl("scale", f"deployment/{FULLNAME}", "--replicas=5", "-n", NAMESPACE)
    # The controller updates the Deployment's status a moment after the pods: wait for each.
    wait_for(lambda: len(ready_pods(installed, NAMESPACE, CLASSIFIER)) == 5, 60, "5 ready classifier pods")
    wait_for(
        lambda: installed.get("deployment", FULLNAME, "-n", NAMESPACE)["status"].get("readyReplicas") == 5,
        30,
        "the Deployment's status to count 5 ready replicas",
    )


def test_helm_upgrade_with_a_new_image_tag_rolls_the_deployment(installed: Kube) -> None:
    before = installed.get("deployment", FULLNAME, "-n", NAMESPACE)["metadata"]["annotations"]
    generated = _generated_secrets(installed)
    installed.helm(
        "upgrade",
        RELEASE,
        CHART,
        "-n",
        NAMESPACE,
        "--reuse-values",
        "--set",
        "image.tag=0.2.0",
        "--wait",
        "--timeout",
        "5m",
    )
    # The random passwords and the API token survive the upgrade (`lookup` of the existing Secrets).
    assert _generated_secrets(installed) == generated

    def rolled() -> bool:
        d = installed.get("deployment", FULLNAME, "-n", NAMESPACE)
        s = d["status"]
        return (
            s.get("observedGeneration") == d["metadata"]["generation"]
            and s.get("updatedReplicas") == s.get("replicas") == s.get("readyReplicas") == d["spec"]["replicas"]
        )

    wait_for(rolled, 120, "the rollout of the new image")
    after = installed.get("deployment", FULLNAME, "-n", NAMESPACE)["metadata"]["annotations"]
    assert int(after["deployment.kubernetes.io/revision"]) == int(before["deployment.kubernetes.io/revision"]) + 1
    images = {c["image"] for p in ready_pods(installed, NAMESPACE, CLASSIFIER) for c in p["spec"]["containers"]}
    assert images == {"fashion-classifier:0.2.0"}
    replicasets = installed.get("rs", "-n", NAMESPACE, "-l", CLASSIFIER)["items"]
    assert sorted(rs["spec"]["replicas"] for rs in replicasets) == [0, 5]


def test_helm_uninstall_leaves_only_the_documented_claims(installed: Kube) -> None:
    installed.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "2m")
    # Garbage collection of pods and ReplicaSets is asynchronous: give it a moment, then compare.
    deadline = time.monotonic() + 20
    while (
        set(left := leftovers(installed, NAMESPACE)) - {"PersistentVolumeClaim", "Secret"}
        and time.monotonic() < deadline
    ):
        time.sleep(1)
    assert left == {"PersistentVolumeClaim": KEPT_CLAIMS, "Secret": CASSANDRA_SECRETS}
