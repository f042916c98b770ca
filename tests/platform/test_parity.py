"""The kustomize base is the Helm chart with default values: k8s/base/rendered/ is generated from
the chart (and the chart's monitoring files from monitoring/) by scripts/render-manifests, and the
base's own objects stand in for what only Helm can do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from k8s_support import ROOT

# Helm leaves the namespace to `helm install --create-namespace`; kustomize creates it. Random
# Secrets: Helm renders them (randAlphaNum, kept by lookup); kustomize cannot, so a Job of the base
# creates them at run time (`fashion-classifier cluster ensure-secrets`).
SECRETS_JOB = "fashion-classifier-secrets"
ONLY_IN_KUSTOMIZE = {
    ("Namespace", "fashion-classifier"),
    ("ServiceAccount", SECRETS_JOB),
    ("Role", SECRETS_JOB),
    ("RoleBinding", SECRETS_JOB),
    ("Job", SECRETS_JOB),
}
RANDOM_SECRETS = {
    "fashion-classifier-cassandra-admin",
    "fashion-classifier-cassandra-app",
    "fashion-classifier-api-token",
}
# Annotations that exist for Helm's sake alone.
HELM_ONLY_ANNOTATIONS = ("checksum/config",)


def test_generated_manifests_are_current(tools):
    """The committed copies are what scripts/render-manifests makes of their sources (CI's drift check):
    the chart's files/ from monitoring/, and k8s/base/rendered/ from the chart."""
    proc = subprocess.run(
        [ROOT / "scripts" / "render-manifests", "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "HELM": tools.path("helm"), "PYTHON": sys.executable},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def _objects(docs):
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _comparable(obj):
    """The object without what legitimately differs: Helm's bookkeeping labels and annotations."""
    obj = json.loads(json.dumps(obj))
    obj.pop("metadata")
    template = obj.get("spec", {}).get("template", {}).get("metadata", {})
    for key in HELM_ONLY_ANNOTATIONS:
        template.get("annotations", {}).pop(key, None)
    return obj


def test_same_objects(render_chart, render_kustomize):
    helm = _objects(render_chart({}, name="defaults", skip_tests=True).docs)
    kustomize = _objects(render_kustomize("base").docs)
    assert set(kustomize) - set(helm) == ONLY_IN_KUSTOMIZE
    only_helm = set(helm) - set(kustomize)
    assert {kind for kind, _ in only_helm} <= {"Secret"} and {name for _, name in only_helm} <= RANDOM_SECRETS
    # ...and the Job creates exactly the Secrets Helm generates, with the same keys.
    made = render_kustomize("base").runtime_secrets()
    assert set(made) == RANDOM_SECRETS
    for _, name in only_helm:
        assert (
            set(helm[("Secret", name)].get("data", {})) | set(helm[("Secret", name)].get("stringData", {}))
            == made[name]
        ), name


def test_same_specs(render_chart, render_kustomize):
    helm = _objects(render_chart({}, name="defaults", skip_tests=True).docs)
    kustomize = _objects(render_kustomize("base").docs)
    for key in sorted(set(helm) & set(kustomize)):
        assert _comparable(helm[key]) == _comparable(kustomize[key]), f"{key}: helm and k8s/base differ"


def test_same_selector_and_component_labels(render_chart, render_kustomize):
    helm = _objects(render_chart({}, name="defaults", skip_tests=True).docs)
    kustomize = _objects(render_kustomize("base").docs)
    for key in set(helm) & set(kustomize):
        h, k = helm[key]["metadata"]["labels"], kustomize[key]["metadata"]["labels"]
        for label in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "release",
            "grafana_dashboard",
        ):
            assert h.get(label) == k.get(label), f"{key}: label {label}"


def test_overlays_differ_from_base_only_as_documented(render_chart, render_kustomize):
    base = _objects(render_kustomize("base").docs)
    kind = _objects(render_kustomize("kind").docs)
    minikube = _objects(render_kustomize("minikube").docs)
    # kind has no metrics-server: no HPA, a fixed replica count instead.
    assert set(base) - set(kind) == {("HorizontalPodAutoscaler", "fashion-classifier")}
    assert kind[("Deployment", "fashion-classifier")]["spec"]["replicas"] == 2
    # minikube keeps the HPA and exposes the classifier on a node port for `minikube service`.
    assert set(minikube) == set(base)
    assert minikube[("Service", "fashion-classifier")]["spec"]["type"] == "NodePort"
    # Both have one node: the Cassandra pods may share it, as the chart's antiAffinity=preferred has it.
    sts = ("StatefulSet", "fashion-classifier-cassandra")
    one_node = _objects(
        render_chart({"cassandra": {"antiAffinity": "preferred"}}, name="one-node", skip_tests=True).docs
    )[sts]
    for overlay in (kind, minikube):
        changed = {k for k in overlay if _comparable(overlay[k]) != _comparable(base[k])}
        assert changed <= {("Deployment", "fashion-classifier"), ("Service", "fashion-classifier"), sts}
        assert _comparable(overlay[sts]) == _comparable(one_node)


def test_paths_in_skaffold_exist():
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    for artifact in config["build"]["artifacts"]:
        assert (ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).is_file()
    for release in config["deploy"]["helm"]["releases"]:
        assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    assert Path(ROOT / "Dockerfile").is_file()
