"""helm lint --strict and helm template over a matrix of values; values the chart must refuse."""

from __future__ import annotations

import base64
import shutil

import pytest
import yaml
from k8s_support import CHART, NAMESPACE, VALUES_MATRIX, Rendered


def _env(container: dict, name: str) -> str | None:
    return next((e.get("value") for e in container.get("env", []) if e["name"] == name), None)


def _configmap(r: Rendered, name: str = "fashion-classifier") -> dict[str, str]:
    cm = r.get("ConfigMap", name)
    assert cm is not None, f"{r.name}: no ConfigMap {name}"
    return cm["data"]


@pytest.mark.parametrize("name", sorted(VALUES_MATRIX))
def test_helm_lint_strict(tools, tmp_path, name):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES_MATRIX[name]))
    proc = tools.run("helm", "lint", "--strict", CHART, "-f", values, "--namespace", NAMESPACE)
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cassandra": {"replicationFactor": 1}}, "replicationFactor"),
        ({"cassandra": {"replicas": 1, "replicationFactor": 1}}, "replicas"),
        ({"cassandra": {"replicas": 2, "replicationFactor": 3}}, "cannot exceed cassandra.replicas"),
        ({"config": {"predlog": "mongodb"}}, "predlog"),
        ({"training": {"arch": "transformer"}}, "arch"),
        ({"training": {"hooks": "post-delete"}}, "hooks"),
        ({"service": {"type": "ExternalName"}}, "type"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"modelStore": {"size": "lots"}}, "size"),
        ({"cassandra": {"maxHeapSize": "half"}}, "maxHeapSize"),
        ({"resouces": {}}, "resouces"),
        ({"cassandra": {"enabled": False}}, "externalHosts"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas"),
    ],
    ids=lambda v: str(v)[:60],
)
def test_chart_refuses_bad_values(tools, tmp_path, values, message):
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    proc = tools.run("helm", "template", "r", CHART, "-f", file, check=False)
    assert proc.returncode != 0, f"accepted {values}"
    assert message in proc.stderr, proc.stderr


def test_defaults_render_the_platform(render_chart):
    r = render_chart({}, name="defaults")
    kinds = sorted({d["kind"] for d in r.docs})
    assert kinds == sorted([
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "NetworkPolicy", "PersistentVolumeClaim",
        "Pod", "PodDisruptionBudget", "PrometheusRule", "Secret", "Service", "ServiceAccount",
        "ServiceMonitor", "StatefulSet",
    ])
    assert all(d["metadata"].get("namespace") == NAMESPACE for d in r.docs)
    sts = r.get("StatefulSet", "fashion-classifier-cassandra")
    assert sts["spec"]["replicas"] == 2
    [cassandra] = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "cassandra"]
    assert cassandra["image"] == "cassandra:5.0"
    assert _configmap(r)["FC_CASSANDRA_REPLICATION"] == "2"
    # HPA owns the count: the Deployment must not fight it with a replicas field.
    assert "replicas" not in r.get("Deployment", "fashion-classifier")["spec"]


def test_three_cassandra_nodes(render_chart):
    r = render_chart(VALUES_MATRIX["cassandra-3-nodes"], name="cassandra-3-nodes")
    hosts = _configmap(r)["FC_CASSANDRA_HOSTS"].split(",")
    assert hosts == [f"fashion-classifier-cassandra-{i}.fashion-classifier-cassandra" for i in range(3)]
    sts = r.get("StatefulSet", "fashion-classifier-cassandra")
    assert sts["spec"]["replicas"] == 3
    seeds = _env(sts["spec"]["template"]["spec"]["containers"][0], "CASSANDRA_SEEDS").split(",")
    assert seeds == hosts[:2]
    assert _configmap(r)["FC_CASSANDRA_REPLICATION"] == "3"


def test_ingress_on(render_chart):
    r = render_chart(VALUES_MATRIX["ingress-on"], name="ingress-on")
    [ingress] = r.of_kind("Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "fc.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "fashion-classifier", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "fc-tls"
    assert not render_chart({}, name="defaults").of_kind("Ingress")


def test_auth_on(render_chart):
    r = render_chart(VALUES_MATRIX["auth-on"], name="auth-on")
    secret = r.get("Secret", "fashion-classifier-cassandra")
    assert secret["stringData"] == {"username": "fc", "password": "s3cret"}
    pod = r.get("StatefulSet", "fashion-classifier-cassandra")["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert _env(init, "CASSANDRA_AUTH") == "true"
    defaults = render_chart({}, name="defaults")
    empty = {"username": "", "password": ""}
    assert defaults.get("Secret", "fashion-classifier-cassandra")["stringData"] == empty


def test_existing_secret_is_used(render_chart):
    values = {"cassandra": {"auth": {"enabled": True, "existingSecret": "my-creds"}}}
    r = render_chart(values, name="existing-secret")
    assert r.get("Secret", "fashion-classifier-cassandra") is None
    container = r.get("Deployment", "fashion-classifier")["spec"]["template"]["spec"]["containers"][0]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert refs == {"my-creds"}


def test_hpa_off(render_chart):
    r = render_chart(VALUES_MATRIX["hpa-off"], name="hpa-off")
    assert not r.of_kind("HorizontalPodAutoscaler")
    assert r.get("Deployment", "fashion-classifier")["spec"]["replicas"] == 3


def test_training_hooks(render_chart):
    hooked = render_chart({}, name="defaults").get("Job", "fashion-classifier-train")
    assert hooked["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    r = render_chart(VALUES_MATRIX["nodeport-plain-training-job"], name="nodeport-plain-training-job")
    plain = r.get("Job", "fashion-classifier-train")
    assert "helm.sh/hook" not in plain["metadata"].get("annotations", {})
    command = plain["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == ["fashion-classifier", "train", "--model-dir", "/models"]
    assert command[command.index("--arch") + 1] == "cnn"
    assert command[command.index("--epochs") + 1] == "3"
    service = r.get("Service", "fashion-classifier")
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["nodePort"] == 30080


def test_migration_is_an_upgrade_hook(render_chart):
    job = render_chart({}, name="defaults").get("Job", "fashion-classifier-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["fashion-classifier", "migrate"]


def test_without_cassandra(render_chart):
    r = render_chart(VALUES_MATRIX["no-cassandra-sqlite"], name="no-cassandra-sqlite")
    assert not r.of_kind("StatefulSet") and not r.of_kind("NetworkPolicy") and not r.of_kind("ServiceMonitor")
    assert r.get("Job", "fashion-classifier-migrate") is None
    data = _configmap(r)
    assert data["FC_PREDLOG"] == "sqlite"
    assert data["FC_SQLITE_PATH"].startswith("/var/lib/fashion-classifier/")


def test_other_release_name_prefixes_every_object(render_chart):
    r = render_chart({}, name="demo", release="demo")
    names = {d["metadata"]["name"] for d in r.docs}
    assert all(n.startswith("demo-fashion-classifier") for n in names), names
    assert _configmap(r, "demo-fashion-classifier")["FC_CASSANDRA_HOSTS"].startswith(
        "demo-fashion-classifier-cassandra-0.demo-fashion-classifier-cassandra")


def test_helm_tests_make_a_real_prediction(render_chart):
    r = render_chart({}, name="defaults")
    pods = {p["metadata"]["name"]: p for p in r.of_kind("Pod")}
    assert set(pods) == {"fashion-classifier-test-ready", "fashion-classifier-test-predict"}
    for pod in pods.values():
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pods["fashion-classifier-test-predict"]["spec"]["containers"][0]["command"][2]
    assert "http://fashion-classifier:80/api/v1/predict" in script
    compile(script, "test-predict", "exec")
    ready = pods["fashion-classifier-test-ready"]["spec"]["containers"][0]["command"][2]
    assert "/v2/health/ready" in ready
    compile(ready, "test-ready", "exec")


def test_notes_explain_access_and_scraping(tools, tmp_path):
    # `helm install --dry-run` needs a cluster; render NOTES.txt through tpl in a copy of the chart.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "files" / "NOTES.txt")
    probe = 'notes: {{ tpl (.Files.Get "files/NOTES.txt") . | quote }}\n'
    (chart / "templates" / "notes-probe.yaml").write_text(probe)
    proc = tools.run("helm", "template", "fashion-classifier", chart, "--namespace", NAMESPACE,
                     "--show-only", "templates/notes-probe.yaml")
    notes = yaml.safe_load(proc.stdout)["notes"]
    assert "kubectl -n fashion-classifier port-forward service/fashion-classifier 8080:80" in notes
    assert "kube-prometheus-stack-prometheus 9090:9090" in notes
    assert "release: kube-prometheus-stack" in notes


def test_secret_values_are_not_base64_mangled(render_chart):
    # stringData must stay plain text; a data: field would need base64.
    r = render_chart(VALUES_MATRIX["auth-on"], name="auth-on")
    secret = r.get("Secret", "fashion-classifier-cassandra")
    assert "data" not in secret
    assert base64.b64encode(secret["stringData"]["password"].encode())
