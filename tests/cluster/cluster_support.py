"""Shared by the cluster tests: where things are, and a handle on the local control plane.

The control plane is scripts/kube-local (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok with fake nodes). kubectl and helm are the pinned ones from
scripts/k8s-tools. A tool or a control plane that is missing fails the test, never skips it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "fashion-classifier"
K8S = ROOT / "k8s"
KUBE_LOCAL = ROOT / "scripts" / "kube-local"
TOOLS_BIN = (
    Path(os.environ.get("FC_K8S_TOOLS_DIR", Path.home() / ".cache" / "fashion-classifier" / "k8s-tools")) / "bin"
)
# The label that makes kwok fail a Job's pod (scripts/kube/kwok-stages.yaml).
KWOK_FAIL = "fashion-classifier.dev/kwok-fail=true"

T = TypeVar("T")


@dataclass(frozen=True)
class Kube:
    kubeconfig: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **extra,
        }

    def run(
        self, tool: str, *args: str | Path, check: bool = True, input: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        path = TOOLS_BIN / tool
        if not path.exists():
            pytest.fail(f"{path} is missing: run scripts/k8s-tools install")
        cmd = [str(path), *map(str, args)]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, input=input, cwd=ROOT, env=self.env(), timeout=timeout
        )
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def kubectl(self, *args: str | Path, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)

    def helm(self, *args: str | Path, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, **kw)

    def get(self, *args: str) -> Any:
        """``kubectl get ... -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def namespace(self, name: str) -> str:
        """Create the namespace (idempotently) and wait for its default ServiceAccount."""
        if self.kubectl("get", "namespace", name, check=False).returncode != 0:
            self.kubectl("create", "namespace", name)
        # Pods are refused until the controller-manager has made the namespace's default ServiceAccount.
        wait_for(
            lambda: self.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0 or None,
            60,
            f"the default ServiceAccount of {name}",
        )
        return name

    def service_account_kubeconfig(self, namespace: str, account: str, path: Path) -> Path:
        """A kubeconfig with a token of ServiceAccount ``account``: that real identity and its RBAC."""
        token = self.kubectl("create", "token", account, "-n", namespace).stdout.strip()
        cluster = json.loads(self.kubectl("config", "view", "--raw", "-o", "json").stdout)["clusters"][0]["cluster"]
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": account,
                    "clusters": [{"name": "local", "cluster": cluster}],
                    "users": [{"name": account, "user": {"token": token}}],
                    "contexts": [{"name": account, "context": {"cluster": "local", "user": account}}],
                }
            )
        )
        return path

    def can_i(self, namespace: str, account: str, *request: str) -> bool:
        """``kubectl auth can-i REQUEST`` as ServiceAccount ``account`` of ``namespace``."""
        return (
            self.kubectl(
                "auth",
                "can-i",
                *request,
                "-n",
                namespace,
                f"--as=system:serviceaccount:{namespace}:{account}",
                check=False,
            ).stdout.strip()
            == "yes"
        )

    def cli(self, *args: str, kubeconfig: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``fashion-classifier cluster ...`` in a subprocess, against this cluster."""
        env = self.env(KUBECONFIG=str(kubeconfig or self.kubeconfig))
        return subprocess.run(
            [sys.executable, "-m", "fashion_classifier.cli", "cluster", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=timeout,
        )


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def ready_pods(kube: Kube, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = kube.get("pods", "-n", namespace, "-l", selector)["items"]
    return [
        p
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def leftovers(kube: Kube, namespace: str) -> dict[str, set[str]]:
    """Every object left in the namespace, by kind, minus what every namespace has."""
    resources = kube.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout.split()
    resources = [r for r in resources if r not in ("events", "events.events.k8s.io")]
    items = kube.get(",".join(resources), "-n", namespace)["items"]
    found: dict[str, set[str]] = {}
    for item in items:
        name = item["metadata"]["name"]
        if (item["kind"], name) in {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}:
            continue
        found.setdefault(item["kind"], set()).add(name)
    return found
