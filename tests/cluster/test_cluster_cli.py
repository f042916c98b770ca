"""``fashion-classifier cluster ...`` against the local control plane: no mocks, a real API server.

kwok completes training Jobs' pods (or fails them when they carry the kwok-fail label) without
running a container, so there are no logs and no published model: the commands must say so and
go on, and the Job's status decides the outcome.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cluster_support import CHART, KWOK_FAIL, ROOT, Kube, ready_pods, wait_for

pytestmark = pytest.mark.kube

NAMESPACE = "fc-cli"
RELEASE = "fc"
FULLNAME = "fc-fashion-classifier"
CLASSIFIER = "app.kubernetes.io/instance=fc,app.kubernetes.io/component=classifier"


@pytest.fixture(scope="module")
def release(kube: Kube) -> Iterator[Kube]:
    kube.namespace(NAMESPACE)
    kube.helm(
        "install",
        RELEASE,
        CHART,
        "-n",
        NAMESPACE,
        "--wait",
        "--timeout",
        "5m",
        "--set",
        "training.arch=mlp,training.epochs=7",
    )
    yield kube
    kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
    kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _cli(kube: Kube, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return kube.cli(*args, "-n", NAMESPACE, "--release", RELEASE, **kw)


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_train_creates_a_job_from_the_release_and_reports_success(release: Kube) -> None:
    proc = _cli(release, "train", "--epochs", "2", "--label", "team=ml")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert f"job {FULLNAME}-train-" in out and "arch mlp, epochs 2" in out, out
    assert ": Running" in out and ": Succeeded (exit code 0, Completed)" in out, out
    # kwok's fake nodes have no kubelet: no logs, said once, and the Job's status still decides.
    assert "logs of pod" in out and "unavailable" in out, out
    assert "succeeded in" in out and "new model version: unknown" in out, out

    name = out.split("job ", 1)[1].split()[0]
    job = release.get("job", name, "-n", NAMESPACE)
    # The chart's post-install training hook, as Helm stored it (the Job itself is deleted once it succeeded).
    hooks = yaml.safe_load_all(release.helm("get", "hooks", RELEASE, "-n", NAMESPACE).stdout)
    template = next(h for h in hooks if h and h["kind"] == "Job" and h["metadata"]["name"] == f"{FULLNAME}-train")
    spec, chart_spec = job["spec"]["template"]["spec"], template["spec"]["template"]["spec"]
    # Everything but the command comes from the release's own training Job.
    for key in ("serviceAccountName", "securityContext", "volumes"):
        assert spec[key] == chart_spec[key], key
    container, chart_container = spec["containers"][0], chart_spec["containers"][0]
    for key in ("image", "envFrom", "resources", "volumeMounts", "securityContext"):
        assert container[key] == chart_container[key], key
    args = container["command"][4:]
    assert args[:5] == ["train", "--model-dir", "/models", "--arch", "mlp"], container["command"]
    assert args[args.index("--epochs") + 1] == "2"  # the release said 7; --epochs wins
    assert container["command"][:2] == ["sh", "-c"]
    assert not any(k.startswith("helm.sh/") for k in job["metadata"].get("annotations", {}))
    assert job["metadata"]["labels"]["team"] == "ml"
    assert job["spec"]["template"]["metadata"]["labels"]["team"] == "ml"
    assert job["status"]["succeeded"] == 1


def test_a_model_command_runs_in_a_job_made_from_the_classifier_pod(release: Kube) -> None:
    proc = _cli(release, "model", "canary", "20261124T181829Z-mlp-b4dd", "--weight", "10")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert f"job {FULLNAME}-model-" in out and ": Succeeded (exit code 0, Completed)" in out, out
    name = out.split("job ", 1)[1].split()[0]
    job = release.get("job", name, "-n", NAMESPACE)
    deployment = release.get("deployment", FULLNAME, "-n", NAMESPACE)["spec"]["template"]["spec"]
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    classifier = deployment["containers"][0]
    assert container["command"] == [
        "fashion-classifier",
        "model",
        "canary",
        "20261124T181829Z-mlp-b4dd",
        "--weight",
        "10",
        "--model-dir",
        "/models",
    ]
    for key in ("image", "envFrom", "securityContext"):
        assert container[key] == classifier[key], key
    assert spec["serviceAccountName"] == deployment["serviceAccountName"]
    assert {"name": "models", "mountPath": "/models"} in container["volumeMounts"]  # writable here
    claim = next(v for v in spec["volumes"] if v["name"] == "models")
    assert claim == next(v for v in deployment["volumes"] if v["name"] == "models")
    assert "initContainers" not in spec and job["spec"]["backoffLimit"] == 0
    # Never an endpoint of the classifier's Service.
    service = release.get("service", FULLNAME, "-n", NAMESPACE)["spec"]["selector"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert any(labels.get(k) != v for k, v in service.items()), labels
    refused = _cli(release, "model", "canary", "v", "--weight", "300")
    assert refused.returncode == 2 and "between 0 and 100" in refused.stderr
    unknown = _cli(release, "model", "promote", "--json")  # promote has no --json
    assert unknown.returncode == 2 and "unrecognized arguments: --json" in unknown.stderr
    assert "would be refused" in unknown.stderr.strip().splitlines()[-1]


def test_train_reports_a_failed_job(release: Kube) -> None:
    proc = _cli(release, "train", "--arch", "cnn", "--retries", "0", "--label", KWOK_FAIL)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "arch cnn" in proc.stdout
    assert ": Failed (exit code 1, Error)" in proc.stdout, proc.stdout
    line = _one_line_error(proc)
    assert "failed after" in line and "BackoffLimitExceeded" in line and "exited 1" in line, line


def test_status_shows_the_release(release: Kube) -> None:
    # The autoscaler raises the Deployment to its minimum (2) at its first sync.
    wait_for(lambda: len(ready_pods(release, NAMESPACE, CLASSIFIER)) == 2, 60, "2 ready classifier pods")
    proc = _cli(release, "status")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"release {RELEASE} (namespace {NAMESPACE}): revision 1, deployed" in out, out
    assert f"deployment {FULLNAME}: 2/2 ready" in out, out
    assert f"statefulset {FULLNAME}-cassandra: 2/2 ready" in out, out
    assert f"autoscaler {FULLNAME}: 2-6 replicas" in out, out
    assert f"service {FULLNAME}: 2 ready endpoints" in out, out
    assert "cassandra pods: 2" in out and "classifier pods: 2" in out, out
    # Fake pods can't be asked for their model: said per pod, not an error.
    assert out.count("model unknown (pod not reachable through the API server)") == 2, out


def test_scale_sets_the_replica_count_and_waits(release: Kube) -> None:
    proc = _cli(release, "scale", "4")
    assert proc.returncode == 0, proc.stderr
    assert "may change the count later" in proc.stdout and "4/4 ready" in proc.stdout, proc.stdout
    assert len(ready_pods(release, NAMESPACE, CLASSIFIER)) == 4


def test_scale_outside_the_autoscaler_range_is_refused(release: Kube) -> None:
    proc = _cli(release, "scale", "9")
    assert proc.returncode == 2
    assert "keeps fc-fashion-classifier between 2 and 6" in _one_line_error(proc)
    assert release.get("deployment", FULLNAME, "-n", NAMESPACE)["spec"]["replicas"] == 4


def test_rollout_restart_replaces_every_pod(release: Kube) -> None:
    before = {p["metadata"]["name"] for p in ready_pods(release, NAMESPACE, CLASSIFIER)}
    proc = _cli(release, "rollout", "--restart", "--timeout", "120")
    assert proc.returncode == 0, proc.stderr
    assert "rollout complete, revision 2, 4 pods (restarted)" in proc.stdout, proc.stdout
    after = {p["metadata"]["name"] for p in ready_pods(release, NAMESPACE, CLASSIFIER)}
    assert len(after) == 4 and not before & after


def test_missing_release_is_a_one_line_error(release: Kube) -> None:
    proc = release.cli("status", "-n", NAMESPACE, "--release", "nope")
    assert proc.returncode == 3
    assert "release 'nope' not found in namespace 'fc-cli'" in _one_line_error(proc)


def test_no_cluster_is_a_one_line_error_exit_3(kube: Kube, tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    # A kubeconfig whose API server is not there (port 9 is discard, nothing listens).
    config.write_text(kube.kubeconfig.read_text().replace(_server(kube), "https://127.0.0.1:9"))
    proc = kube.cli("status", kubeconfig=config, timeout=60)
    assert proc.returncode == 3
    line = _one_line_error(proc)
    assert "no cluster: cannot reach the API server https://127.0.0.1:9" in line, line
    assert "Connection refused" in line or "refused" in line.lower(), line

    proc = kube.cli("status", "--kubeconfig", str(tmp_path / "absent"))
    assert proc.returncode == 3
    assert "does not exist" in _one_line_error(proc)


def test_rbac_forbidden_is_a_one_line_error(release: Kube, tmp_path: Path) -> None:
    # A real identity with no permissions: a ServiceAccount's token, no RoleBinding.
    release.kubectl("create", "serviceaccount", "nobody", "-n", NAMESPACE)
    config = release.service_account_kubeconfig(NAMESPACE, "nobody", tmp_path / "kubeconfig")
    proc = release.cli("status", "-n", NAMESPACE, "--release", RELEASE, kubeconfig=config)
    assert proc.returncode == 3
    line = _one_line_error(proc)
    assert line.startswith("fashion-classifier cluster: error: forbidden: not allowed to read Helm release"), line
    assert "system:serviceaccount:fc-cli:nobody" in line, line


def test_cassandra_repair_may_read_only_its_own_statefulset(release: Kube, tmp_path: Path) -> None:
    # The repair CronJob's identity (the repair itself, by exec, runs on the real node).
    config = release.service_account_kubeconfig(NAMESPACE, f"{FULLNAME}-cassandra-repair", tmp_path / "kubeconfig")
    proc = release.cli("cassandra-repair", "-n", NAMESPACE, f"{FULLNAME}-other", kubeconfig=config)
    assert proc.returncode == 3
    line = _one_line_error(proc)
    assert f"forbidden: not allowed to read StatefulSet {FULLNAME}-other" in line, line


def test_cassandra_repair_without_exec_rights_is_forbidden_not_a_missing_cluster(release: Kube, tmp_path: Path) -> None:
    # exec is a websocket upgrade, which the client reports as a connection failure with the API
    # server's Status inside: the error must still say RBAC refused it.
    release.kubectl("create", "serviceaccount", "reader", "-n", NAMESPACE)
    release.kubectl("create", "role", "read-statefulsets", "-n", NAMESPACE, "--verb=get", "--resource=statefulsets")
    release.kubectl(
        "create",
        "rolebinding",
        "reader",
        "-n",
        NAMESPACE,
        "--role=read-statefulsets",
        f"--serviceaccount={NAMESPACE}:reader",
    )
    # The authorizer learns of the binding through a watch: wait for exactly that.
    wait_for(
        lambda: release.can_i(NAMESPACE, "reader", "get", "statefulsets"), 30, "the reader's binding to take effect"
    )
    config = release.service_account_kubeconfig(NAMESPACE, "reader", tmp_path / "kubeconfig")
    proc = release.cli("cassandra-repair", "-n", NAMESPACE, f"{FULLNAME}-cassandra", kubeconfig=config)
    assert proc.returncode == 3
    line = _one_line_error(proc)
    assert line.startswith(
        f"fashion-classifier cluster: error: forbidden: not allowed to exec into pod {FULLNAME}-cassandra-0"
    ), line
    assert "pods/exec" in line, line


def test_without_the_kubernetes_package_the_error_is_one_line() -> None:
    # The serving image is built without `kubernetes` (the cluster extra): the CLI must still
    # load, and the cluster commands must say what is missing.
    code = (
        "import sys; sys.modules['kubernetes'] = None\nfrom fashion_classifier.cli import main\n"
        "sys.exit(main(['cluster', 'status']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 3
    line = _one_line_error(proc)
    assert "need the 'kubernetes' package" in line and "pip install 'fashion-classifier[cluster]'" in line, line
    proc = subprocess.run(
        [sys.executable, "-c", code.replace("'cluster', 'status'", "'config'")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def _server(kube: Kube) -> str:
    config = json.loads(kube.kubectl("config", "view", "--raw", "-o", "json").stdout)
    return config["clusters"][0]["cluster"]["server"]


def test_release_record_decoding_matches_helm(release: Kube) -> None:
    """The release as the CLI reads it from Helm's Secret is the one `helm get` shows."""
    from fashion_classifier.cluster.release import decode, from_record

    secret = release.get("secret", f"sh.helm.release.v1.{RELEASE}.v1", "-n", NAMESPACE)
    record = decode(secret["data"]["release"])
    rel = from_record(record, NAMESPACE)
    values = json.loads(release.helm("get", "values", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)
    assert rel.values == values == {"training": {"arch": "mlp", "epochs": 7}}
    assert rel.deployment_name == FULLNAME
    assert rel.find("Job", "training", include_hooks=True)["metadata"]["name"] == f"{FULLNAME}-train"
