"""The Helm chart with default values and the kustomize base describe the same platform."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from k8s_support import CHART, K8S, ROOT

# Helm leaves the namespace to `helm install --create-namespace`; kustomize creates it. Random
# Secrets: Helm renders them (randAlphaNum, kept by lookup); kustomize cannot, so a Job of the base
# creates them at run time (`fashion-classifier cluster ensure-secrets`).
SECRETS_JOB = "fashion-classifier-secrets"
ONLY_IN_KUSTOMIZE = {("Namespace", "fashion-classifier"), ("ServiceAccount", SECRETS_JOB), ("Role", SECRETS_JOB),
                     ("RoleBinding", SECRETS_JOB), ("Job", SECRETS_JOB)}
RANDOM_SECRETS = {"fashion-classifier-cassandra-admin", "fashion-classifier-cassandra-app",
                  "fashion-classifier-api-token"}
# Annotations that exist for Helm's sake alone.
HELM_ONLY_ANNOTATIONS = ("checksum/config",)


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
        assert set(helm[("Secret", name)].get("data", {})) | set(helm[("Secret", name)].get("stringData", {})) \
            == made[name], name


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
        for label in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                      "release", "grafana_dashboard"):
            assert h.get(label) == k.get(label), f"{key}: label {label}"


def test_monitoring_copies_are_current():
    """scripts/monitoring-sync copies monitoring/ into the chart and the kustomize base."""
    rules = (ROOT / "monitoring" / "alerts.rules.yaml").read_text()
    dashboard = (ROOT / "monitoring" / "dashboard.json").read_text()
    assert (CHART / "files" / "alerts.rules.yaml").read_text() == rules, "run scripts/monitoring-sync"
    assert (CHART / "files" / "dashboard.json").read_text() == dashboard, "run scripts/monitoring-sync"
    assert (K8S / "base" / "dashboard.json").read_text() == dashboard, "run scripts/monitoring-sync"
    prometheus_rule = yaml.safe_load((K8S / "base" / "prometheusrule.yaml").read_text())
    assert prometheus_rule["spec"] == yaml.safe_load(rules), "run scripts/monitoring-sync"


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
    one_node = _objects(render_chart({"cassandra": {"antiAffinity": "preferred"}}, name="one-node",
                                     skip_tests=True).docs)[sts]
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
