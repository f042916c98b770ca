"""Shared by the platform checks: where things are, the values matrix, the pinned tools, rendered sets.

The tools come from ``scripts/k8s-tools install`` (a setup step); a missing tool fails the test
with the command that installs it, never skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "fashion-classifier"
K8S = ROOT / "k8s"
OVERLAYS = ("kind", "minikube")
RELEASE = "fashion-classifier"
NAMESPACE = "fashion-classifier"
TOOLS_DIR = Path(os.environ.get("FC_K8S_TOOLS_DIR", Path.home() / ".cache" / "fashion-classifier" / "k8s-tools"))
SKAFFOLD_SCHEMA = TOOLS_DIR / "schemas" / "skaffold-v4beta13.json"

# Values sets rendered by every check: the defaults plus the variations users reach for.
VALUES_MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cassandra-3-nodes": {"cassandra": {"replicas": 3, "replicationFactor": 3}},
    "cassandra-one-node": {"cassandra": {"antiAffinity": "preferred", "repair": {"enabled": False}}},
    # HTTP alone, through an Ingress: no gRPC server (no grpc port on the pods, Service or policy).
    "ingress-on": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "fc.example.com",
            "tls": [{"secretName": "fc-tls", "hosts": ["fc.example.com"]}],
        },
        "config": {"grpcPort": 0},
    },
    "auth-off": {"cassandra": {"auth": {"enabled": False}}},
    "auth-existing-secrets": {
        "cassandra": {
            "auth": {"admin": {"existingSecret": "my-admin"}, "app": {"username": "svc", "existingSecret": "my-app"}}
        }
    },
    "hpa-off": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    "nodeport-plain-training-job": {
        "service": {"type": "NodePort", "nodePort": 30080},
        "training": {"hooks": "", "arch": "cnn", "epochs": 3},
    },
    # ReadWriteMany storage: pods spread; training data from an existing claim.
    "rwx-training-data-claim": {
        "modelStore": {"accessMode": "ReadWriteMany", "storageClassName": "nfs"},
        "training": {"data": {"existingClaim": "fashion-mnist", "subPath": "fm"}},
    },
    "spool-emptydir-training-hostpath": {
        "spool": {"persistence": {"enabled": False}},
        "training": {"data": {"hostPath": "/srv/fashion-mnist"}},
    },
    # Rollouts: a candidate set by the chart's hook, judged by the guard; the training run's version
    # as a shadow.
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
    "training-publishes-shadow": {"training": {"publishAs": "shadow"}},
    # Gateway API instead of the Ingress; KEDA scaling on the request rate.
    "httproute-keda": {
        "httpRoute": {
            "enabled": True,
            "hostnames": ["fashion-classifier.example.com"],
            "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
        },
        "autoscaling": {
            "keda": {
                "enabled": True,
                "requestsPerReplica": 250,
                "prometheusUrl": "http://kube-prometheus-stack-prometheus.monitoring:9090",
            }
        },
    },
    # Cassandra run by K8ssandra (cluster "demo", datacenter "dc1"): its Service, its superuser's
    # Secret, client TLS with the operator's CA.
    "external-cassandra-k8ssandra": {
        "cassandra": {"enabled": False},
        "externalCassandra": {
            "hosts": ["demo-dc1-service.k8ssandra-operator.svc"],
            "localDC": "dc1",
            "replicationFactor": 3,
            "existingSecret": "demo-superuser",
            "tls": {"enabled": True, "caSecret": "demo-client-ca", "caKey": "ca.crt"},
        },
        "model": {"guard": {"enabled": True}},
    },
    # What platform teams add: their ServiceAccount and pull secret, a node pool, a priority,
    # zone spread (over shared storage), proxy settings from a Secret, a volume, their own labels,
    # their own gRPC port.
    "extension-points": {
        "modelStore": {"accessMode": "ReadWriteMany", "storageClassName": "nfs"},
        "serviceAccount": {"create": False, "name": "platform-sa"},
        "imagePullSecrets": [{"name": "regcred"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["inference"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "inference-high",
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "classifier"}},
            }
        ],
        "podAnnotations": {"team.example.com/owner": "ml-platform"},
        "podLabels": {"team": "ml-platform"},
        "config": {"logFormat": "json", "grpcPort": 9000},
        "extraEnv": [
            {"name": "HTTPS_PROXY", "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "url"}}},
            {"name": "NO_PROXY", "value": ".svc,.cluster.local"},
        ],
        "extraEnvFrom": [{"secretRef": {"name": "proxy"}, "prefix": "PROXY_"}],
        "extraVolumes": [{"name": "ca-bundle", "emptyDir": {"sizeLimit": "1Mi"}}],
        "extraVolumeMounts": [{"name": "ca-bundle", "mountPath": "/etc/ssl/custom", "readOnly": True}],
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
# Secrets the values above name but the chart leaves to the user (cassandra.auth.*.existingSecret).
EXTERNAL_SECRETS: dict[str, set[str]] = {
    "my-admin": {"username", "password"},
    "my-app": {"username", "password"},
    "proxy": {"url"},
    "demo-superuser": {"username", "password"},
    "demo-client-ca": {"ca.crt"},
}
# A ServiceAccount the values above name but leave to the user (serviceAccount.create false).
EXTERNAL_ACCOUNTS = {"platform-sa"}
# Claims the values and kustomize components above name but leave to the user (training data).
EXTERNAL_CLAIMS = {"fashion-mnist", "fashion-classifier-training-data"}
# The kustomize components (k8s/components), each rendered on top of the base as "with:<name>".
COMPONENTS = ("read-write-many", "training-data")
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")


@dataclass(frozen=True)
class Tools:
    bin: Path

    def path(self, name: str) -> str:
        candidate = self.bin / name
        if name == "promtool":
            found = shutil.which("promtool")
            if found is None:
                pytest.fail("promtool not found: install the Debian package prometheus (scripts/apt-packages.txt)")
            return found
        if not candidate.exists():
            pytest.fail(f"{candidate} is missing: run scripts/k8s-tools install")
        return str(candidate)

    def run(
        self, name: str, *args: str | Path, check: bool = True, input: str | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.path(name), *map(str, args)]
        env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, cwd=cwd or ROOT, env=env, timeout=300)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc


def parse_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass
class Rendered:
    """One rendered set of manifests: its text (for file-based tools) and parsed objects."""

    name: str
    text: str
    docs: list[dict[str, Any]]
    file: Path

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def runtime_secrets(self) -> dict[str, set[str]]:
        """Secrets a Job creates at run time (`fashion-classifier cluster ensure-secrets NAME:KEY...`)."""
        out: dict[str, set[str]] = {}
        for job in self.of_kind("Job"):
            for c in job["spec"]["template"]["spec"]["containers"]:
                command = c.get("command", [])
                if command[:3] == ["fashion-classifier", "cluster", "ensure-secrets"]:
                    for arg in command[3:]:
                        if not arg.startswith("-"):
                            name, _, keys = arg.partition(":")
                            out[name] = {k.partition("=")[0] for k in keys.split(",")}
        return out

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name), None)
