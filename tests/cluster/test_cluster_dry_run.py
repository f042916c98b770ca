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
    "cassandra-3-nodes-auth": {
        "cassandra": {
            "replicas": 3,
            "replicationFactor": 3,
            "auth": {"app": {"username": "svc", "existingSecret": "svc-creds"}},
        }
    },
    "ingress-nodeport-plain-job": {
        "ingress": {
            "enabled": True,
            "host": "fc.example.com",
            "tls": [{"secretName": "fc-tls", "hosts": ["fc.example.com"]}],
        },
        "service": {"type": "NodePort", "nodePort": 30080},
        "training": {"hooks": "", "arch": "cnn", "epochs": 3},
    },
    "hpa-off": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    "canary-candidate": {
        "model": {
            "candidate": {"version": "20261124T181829Z-mlp-b4dd", "weight": 25},
            "guard": {
                "enabled": True,
                "schedule": "*/2 * * * *",
                "prometheusUrl": "http://prometheus-operated.monitoring:9090",
            },
        }
    },
    # The Gateway API's HTTPRoute and KEDA's ScaledObject, against their CRDs' schemas and rules.
    "httproute-keda": {
        "httpRoute": {
            "enabled": True,
            "hostnames": ["fashion-classifier.example.com"],
            "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
        },
        "autoscaling": {"keda": {"enabled": True, "prometheusUrl": "http://prometheus.monitoring:9090"}},
    },
    "external-cassandra-extension-points": {
        "cassandra": {"enabled": False},
        "externalCassandra": {
            "hosts": ["demo-dc1-service.k8ssandra-operator.svc"],
            "localDC": "dc1",
            "existingSecret": "demo-superuser",
            "tls": {"enabled": True, "caSecret": "demo-ca"},
        },
        "modelStore": {"accessMode": "ReadWriteMany"},
        "serviceAccount": {"create": False, "name": "platform-sa"},
        "priorityClassName": "inference-high",
        "podLabels": {"team": "ml"},
        "podAnnotations": {"team.example.com/owner": "ml"},
        "extraEnv": [{"name": "HTTPS_PROXY", "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "url"}}}],
        "extraEnvFrom": [{"secretRef": {"name": "proxy"}}],
        "extraVolumes": [{"name": "extra", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "classifier"}},
            }
        ],
    },
    "no-cassandra-sqlite": {
        "cassandra": {"enabled": False},
        "config": {"predlog": "sqlite"},
        "networkPolicy": {"enabled": False},
        "training": {"enabled": False},
        "metrics": {
            "serviceMonitor": {"enabled": False},
            "prometheusRule": {"enabled": False},
            "dashboard": {"enabled": False},
        },
    },
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
    manifests = kube.helm(
        "template", "fc", CHART, "--namespace", namespace, "-f", values_file, "--kube-version", "1.34.4"
    ).stdout
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    # The test hooks are bare pods, and pod admission needs their ServiceAccount to exist already
    # (helm creates it before any hook): create it for real, then dry-run everything.
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    own = VALUES[values].get("serviceAccount", {})
    if own.get("create") is False:  # the platform's own ServiceAccount, which the chart only names
        accounts.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": own["name"]}})
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


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        (_break_unknown_field, 'unknown field "spec.template.spec.containers[0].protocl"'),
        (_break_enum, 'Unsupported value: "Sometimes"'),
        (_break_selector, "`selector` does not match template `labels`"),
    ],
    ids=["unknown-field", "enum", "selector"],
)
def test_server_side_validation_catches_what_offline_checks_miss(kube: Kube, defect, message: str) -> None:
    """The check has teeth: each defect alone makes the API server refuse the Deployment."""
    namespace = kube.namespace("fc-dry-run")
    manifests = kube.helm("template", "fc", CHART, "--namespace", namespace, "--kube-version", "1.34.4").stdout
    deployment = next(d for d in yaml.safe_load_all(manifests) if d and d["kind"] == "Deployment")
    defect(deployment)
    proc = kube.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump(deployment), check=False
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("kind", "defect", "message"),
    [
        ("HTTPRoute", lambda o: o["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix"), "Unsupported value"),
        ("ScaledObject", lambda o: o["spec"].update(minReplicaCounts=1), 'unknown field "spec.minReplicaCounts"'),
    ],
    ids=["httproute-enum", "scaledobject-unknown-field"],
)
def test_the_optional_apis_are_checked_against_their_crds(
    kube: Kube, kind: str, defect, message: str, tmp_path
) -> None:
    namespace = kube.namespace("fc-dry-run")
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(VALUES["httproute-keda"]))
    manifests = kube.helm(
        "template", "fc", CHART, "--namespace", namespace, "-f", values_file, "--kube-version", "1.34.4"
    ).stdout
    obj = next(d for d in yaml.safe_load_all(manifests) if d and d["kind"] == kind)
    defect(obj)
    proc = kube.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump(obj), check=False
    )
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
