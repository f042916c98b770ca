"""Every manifest set, checked by a real API server: ``kubectl apply --dry-run=server --validate=strict``.

Beyond what the offline checks in tests/platform see: admission, defaulting and the API server's
own validation (selectors, names, quantities, enums, immutable fields), strict field validation
(unknown or duplicate fields are errors), and the Prometheus Operator's CRD schemas.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from cluster_support import CHART, K8S, Kube

pytestmark = pytest.mark.kube

OVERLAYS = ("base", "kind", "minikube")
# The chart's defaults and the variations users reach for (as in tests/platform).
VALUES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cassandra-3-nodes-auth": {"cassandra": {"replicas": 3, "replicationFactor": 3,
                                             "auth": {"app": {"username": "svc", "existingSecret": "svc-creds"}}}},
    "ingress-nodeport-plain-job": {"ingress": {"enabled": True, "host": "fc.example.com",
                                               "tls": [{"secretName": "fc-tls", "hosts": ["fc.example.com"]}]},
                                   "service": {"type": "NodePort", "nodePort": 30080},
                                   "training": {"hooks": "", "arch": "cnn", "epochs": 3}},
    "hpa-off": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    "canary-candidate": {"model": {"candidate": {"version": "20261124T181829Z-mlp-b4dd", "weight": 25},
                                 "guard": {"enabled": True, "schedule": "*/2 * * * *",
                                           "prometheusUrl": "http://prometheus-operated.monitoring:9090"}}},
    "no-cassandra-sqlite": {"cassandra": {"enabled": False}, "config": {"predlog": "sqlite"},
                            "networkPolicy": {"enabled": False}, "training": {"enabled": False},
                            "metrics": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
                                        "dashboard": {"enabled": False}}},
}


def _dry_run(kube: Kube, manifests: str) -> str:
    proc = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifests, check=False)
    assert proc.returncode == 0, f"the API server rejected the manifests:\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_overlay_passes_server_side_validation(kube: Kube, overlay: str) -> None:
    path = K8S / ("base" if overlay == "base" else f"overlays/{overlay}")
    manifests = kube.kubectl("kustomize", path).stdout
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    # Namespaced objects can only be dry-run into a namespace that exists.
    for namespace in {d["metadata"].get("namespace") for d in docs} - {None}:
        kube.namespace(namespace)
    out = _dry_run(kube, manifests)
    assert out.count("(server dry run)") == len(docs), out


@pytest.mark.parametrize("values", VALUES)
def test_rendered_chart_passes_server_side_validation(kube: Kube, values: str, tmp_path) -> None:
    namespace = kube.namespace("fc-dry-run")
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(VALUES[values]))
    # Hooks and test pods included: they are applied by helm at install/upgrade/test time.
    manifests = kube.helm("template", "fc", CHART, "--namespace", namespace, "-f", values_file,
                          "--kube-version", "1.34.4").stdout
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    # The test hooks are bare pods, and pod admission needs their ServiceAccount to exist already
    # (helm creates it before any hook): create it for real, then dry-run everything.
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    if accounts:
        kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(accounts))
    out = _dry_run(kube, manifests)
    assert out.count("(server dry run)") == len(docs), out


def _break_unknown_field(deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["spec"]["containers"][0]["protocl"] = "TCP"


def _break_enum(deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"


def _break_selector(deployment: dict[str, Any]) -> None:
    deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "other"


@pytest.mark.parametrize(("defect", "message"), [
    (_break_unknown_field, 'unknown field "spec.template.spec.containers[0].protocl"'),
    (_break_enum, 'Unsupported value: "Sometimes"'),
    (_break_selector, "`selector` does not match template `labels`"),
], ids=["unknown-field", "enum", "selector"])
def test_server_side_validation_catches_what_offline_checks_miss(kube: Kube, defect, message: str) -> None:
    """The check has teeth: each defect alone makes the API server refuse the Deployment."""
    namespace = kube.namespace("fc-dry-run")
    manifests = kube.helm("template", "fc", CHART, "--namespace", namespace, "--kube-version", "1.34.4").stdout
    deployment = next(d for d in yaml.safe_load_all(manifests) if d and d["kind"] == "Deployment")
    defect(deployment)
    proc = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                        input=yaml.safe_dump(deployment), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
