"""`fashion-classifier cluster ensure-secrets`, as the kustomize base's Job runs it: with the Job's own
arguments and the token of its ServiceAccount (k8s/base/secrets-job.yaml's Role), on a real API server."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from cluster_support import ROOT, Kube

NAMESPACE = "fc-secrets"
JOB_FILE = ROOT / "k8s" / "base" / "secrets-job.yaml"
ACCOUNT = "fashion-classifier-secrets"


def _docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(JOB_FILE.read_text()) if d}


@pytest.fixture(scope="module")
def account_kubeconfig(kube: Kube, tmp_path_factory) -> Path:
    """A kubeconfig holding the token of the Job's ServiceAccount, bound to the base's Role."""
    kube.namespace(NAMESPACE)
    docs = _docs()
    rbac = [docs["ServiceAccount"], docs["Role"], docs["RoleBinding"]]
    kube.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(rbac))
    token = kube.kubectl("create", "token", ACCOUNT, "-n", NAMESPACE).stdout.strip()
    cluster = json.loads(kube.kubectl("config", "view", "--raw", "-o", "json").stdout)["clusters"][0]["cluster"]
    config = tmp_path_factory.mktemp("sa") / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "job",
                "clusters": [{"name": "local", "cluster": cluster}],
                "users": [{"name": "job", "user": {"token": token}}],
                "contexts": [{"name": "job", "context": {"cluster": "local", "user": "job", "namespace": NAMESPACE}}],
            }
        )
    )
    return config


def _job_args() -> list[str]:
    command = _docs()["Job"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["fashion-classifier", "cluster", "ensure-secrets"]
    return command[3:]


def _secret(kube: Kube, name: str) -> dict[str, str]:
    data = kube.get("secret", name, "-n", NAMESPACE)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def test_creates_only_what_is_missing_and_keeps_the_rest(kube: Kube, account_kubeconfig: Path) -> None:
    kube.kubectl("delete", "secret", "--all", "-n", NAMESPACE)
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "fashion-classifier-api-token",
        "-n",
        NAMESPACE,
        "--from-literal=token=set-by-the-user",
    )
    proc = kube.cli("ensure-secrets", "-n", NAMESPACE, *_job_args(), kubeconfig=account_kubeconfig)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "secret fashion-classifier-cassandra-admin: created",
        "secret fashion-classifier-cassandra-app: created",
        "secret fashion-classifier-api-token: exists, kept",
    ]
    admin = _secret(kube, "fashion-classifier-cassandra-admin")
    app = _secret(kube, "fashion-classifier-cassandra-app")
    assert admin["username"] == "fc_admin" and app["username"] == "fc_app"
    for secret in (admin, app):
        assert len(secret["password"]) == 32 and secret["password"].isalnum()
    assert admin["password"] != app["password"]
    assert _secret(kube, "fashion-classifier-api-token") == {"token": "set-by-the-user"}
    labels = kube.get("secret", "fashion-classifier-cassandra-app", "-n", NAMESPACE)["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "fashion-classifier"

    # Applying the kustomization again runs the Job again: nothing changes.
    proc = kube.cli("ensure-secrets", "-n", NAMESPACE, *_job_args(), kubeconfig=account_kubeconfig)
    assert proc.returncode == 0, proc.stderr
    assert all(line.endswith("exists, kept") for line in proc.stdout.splitlines())
    assert _secret(kube, "fashion-classifier-cassandra-admin") == admin


def test_the_role_reads_no_other_secret(kube: Kube, account_kubeconfig: Path) -> None:
    kube.kubectl("create", "secret", "generic", "unrelated", "-n", NAMESPACE, "--from-literal=k=v", check=False)
    proc = kube.kubectl("--kubeconfig", account_kubeconfig, "get", "secret", "unrelated", "-n", NAMESPACE, check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower()
    proc = kube.cli("ensure-secrets", "-n", NAMESPACE, "unrelated:k", kubeconfig=account_kubeconfig)
    assert proc.returncode == 3
    assert "forbidden" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_spec_is_a_usage_error(kube: Kube) -> None:
    proc = kube.cli("ensure-secrets", "-n", NAMESPACE, "no-keys")
    assert proc.returncode == 2 and "NAME:KEY" in proc.stderr
