"""The chart on a real node: real pods, a real Cassandra ring, real training, scaling and scraping.

scripts/kube-node runs a kubelet with containerd, a bridge CNI, kube-proxy and CoreDNS, so every
container of the release really starts: the Cassandra StatefulSet (the image built from the Maven
jars, docker/cassandra) forms a ring, the migration Job creates the schema and the roles, the
training Job trains on the official files (a hostPath, no download) and the classifier pods
hot-reload its model; the repair CronJob's command repairs both nodes. The tests run in order
on one release; each load is bounded in requests and time and goes only to the Service's cluster
IP or to pod IPs on the node's bridge.

Not run here, and why:
- NetworkPolicy: the bridge CNI accepts policies but does not enforce them (a policy engine such
  as kube-router would; not built).
- HorizontalPodAutoscaler: no metrics-server, so the chart's HPA is switched off and replicas are
  fixed (the kwok suite checks the HPA object).
- A pod that calls the API server (the Cassandra repair CronJob's): kube-local's API server listens
  on 127.0.0.1 only, which no pod reaches. The repair's command runs from here instead, with the
  CronJob's ServiceAccount token: the same code, rights, exec and nodetool.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cluster_support import CHART, Kube, leftovers, ready_pods, wait_for
from harness.prometheus import Prometheus
from real_node_support import (
    KUBE_NODE,
    SERVING_PORT,
    CassandraReader,
    Load,
    grpc_health,
    log_backlog,
    metric_sum,
    node_prometheus,
    pod_metrics,
    podman_images,
    predict_once,
    predictions_answered,
    split_image,
    wait_service_routes,
    wait_until,
)

pytestmark = pytest.mark.realnode

NAMESPACE = "fc-real"
RELEASE = "fc"
FULLNAME = "fc-fashion-classifier"
CLASSIFIER = "app.kubernetes.io/instance=fc,app.kubernetes.io/component=classifier"
CASSANDRA = "app.kubernetes.io/instance=fc,app.kubernetes.io/component=cassandra"
DEFAULT_MODEL = (Path(__file__).resolve().parents[2] / "model" / "CURRENT").read_text().strip()


def _values(images: dict[str, str], data_dir: Path) -> dict:
    """The chart's defaults plus what this machine needs: local images, no autoscaler (no
    metrics-server), the dataset from a hostPath, one epoch, and requests small enough for the
    whole release to fit on two cores (limits stay the chart's)."""

    def image(name: str) -> dict[str, str]:
        repository, tag = split_image(images[name])
        return {"repository": repository, "tag": tag, "pullPolicy": "Never"}

    return {
        "image": image("serve"),
        "trainImage": image("train"),
        "autoscaling": {"enabled": False},
        "replicaCount": 2,
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        "training": {
            "epochs": 1,
            "data": {"hostPath": str(data_dir.resolve())},
            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}},
        },
        "migration": {"resources": {"requests": {"cpu": "50m"}}},
        # One node: both Cassandra pods on it, as on kind (the default puts each on its own node).
        "cassandra": {
            "image": image("cassandra"),
            "antiAffinity": "preferred",
            "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}},
        },
    }


@dataclass
class Installed:
    kube: Kube
    values: Path
    service_ip: str
    cassandra: CassandraReader

    def classifier_ips(self) -> dict[str, str]:
        return {p["metadata"]["name"]: p["status"]["podIP"] for p in ready_pods(self.kube, NAMESPACE, CLASSIFIER)}

    def wait_settled(self, timeout: float = 120) -> None:
        """Every classifier pod's log is empty: nothing in memory, nothing spooled."""
        deadline = time.monotonic() + timeout
        while True:
            backlog = {name: log_backlog(ip) for name, ip in self.classifier_ips().items()}
            if all(b["rows_in_memory"] == 0 and b["spool_rows"] == 0 for b in backlog.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"rows still waiting after {timeout:.0f} s: {backlog}")
            time.sleep(1)

    def wait_ready(self, selector: str, count: int, timeout: float) -> list[dict]:
        return wait_for(
            lambda: len(pods := ready_pods(self.kube, NAMESPACE, selector)) == count and pods,
            timeout,
            f"{count} ready pods ({selector})",
            interval=1,
        )


@pytest.fixture(scope="module")
def installed(real_node: Kube, data_dir: Path, tmp_path_factory) -> Iterator[Installed]:
    kube = real_node
    kube.namespace(NAMESPACE)
    values = tmp_path_factory.mktemp("real-node") / "values.yaml"
    values.write_text(yaml.safe_dump(_values(podman_images(), data_dir)))
    # The first install waits for the ring, then runs the migration and the training hooks.
    kube.helm(
        "install",
        RELEASE,
        CHART,
        "-n",
        NAMESPACE,
        "-f",
        values,
        "--wait",
        "--wait-for-jobs",
        "--timeout",
        "15m",
        timeout=1000,
    )
    service_ip = kube.get("service", FULLNAME, "-n", NAMESPACE)["spec"]["clusterIP"]
    yield Installed(kube, values, service_ip, CassandraReader(kube, NAMESPACE, RELEASE))
    kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
    kube.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s", check=False)


def _served_versions(installed: Installed) -> dict[str, str]:
    proc = installed.kube.cli("status", "-n", NAMESPACE, "--release", RELEASE)
    assert proc.returncode == 0, proc.stderr
    return dict(re.findall(rf"^\s*({FULLNAME}-\S+)\s.*\smodel (\S+)\s*$", proc.stdout, re.MULTILINE))


def test_install_forms_the_ring_migrates_and_serves_the_trained_model(installed: Installed) -> None:
    kube = installed.kube
    status = kube.kubectl(
        "-n",
        NAMESPACE,
        "exec",
        f"{FULLNAME}-cassandra-0",
        "-c",
        "cassandra",
        "--",
        "bash",
        "-c",
        "MAX_HEAP_SIZE=128M nodetool status",
    ).stdout
    assert len(re.findall(r"^UN\s", status, re.MULTILINE)) == 2, status
    # No restart on the way: the init container waited for a seed's DNS name instead of Cassandra
    # failing on "The seed provider lists no seeds" while its own name was not published yet.
    restarts = {
        p["metadata"]["name"]: c["restartCount"]
        for p in ready_pods(kube, NAMESPACE, CASSANDRA)
        for c in p["status"]["containerStatuses"]
    }
    assert set(restarts.values()) == {0}, restarts
    # The application role the migration created reads the table the migration created.
    assert installed.cassandra.count() == 0

    # Training finished before the install returned; each pod swaps the version in within the
    # reload interval.
    def trained() -> dict[str, str] | None:
        versions = _served_versions(installed)
        served = set(versions.values())
        return versions if len(versions) == 2 and len(served) == 1 and DEFAULT_MODEL not in served else None

    versions = wait_for(trained, 60, "both classifier pods to serve the trained model")
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-compact-\w+", v) for v in versions.values()), versions


def test_helm_test_passes(installed: Installed) -> None:
    proc = installed.kube.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "3m", check=False, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"test-predict\s+Last Started.*\n.*\n\s*Phase:\s+Succeeded", proc.stdout), proc.stdout
    assert re.search(r"test-ready\s+Last Started.*\n.*\n\s*Phase:\s+Succeeded", proc.stdout), proc.stdout


def test_grpc_health_answers_serving_through_the_service(installed: Installed) -> None:
    """config.grpcPort (on by default): the Service's port named grpc carries cleartext HTTP/2
    through kube-proxy to the pods' gRPC server, whose standard health service answers SERVING for
    the server and for inference.GRPCInferenceService (a model is loaded); so does each pod on its
    own port."""
    kube = installed.kube
    [port] = [p for p in kube.get("service", FULLNAME, "-n", NAMESPACE)["spec"]["ports"] if p["name"] == "grpc"]
    assert (port["targetPort"], port["appProtocol"]) == ("grpc", "kubernetes.io/h2c"), port
    [container] = kube.get("deployment", FULLNAME, "-n", NAMESPACE)["spec"]["template"]["spec"]["containers"]
    [pod_port] = [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"]
    services = ("", "inference.GRPCInferenceService")
    wait_service_routes(installed.service_ip, port["port"], 2)
    wait_until(
        lambda: all(grpc_health(installed.service_ip, port["port"], s) == "SERVING" for s in services),
        30,
        "the gRPC health service to answer SERVING through the Service",
    )
    # A connection per call: kube-proxy spreads them over both pods.
    answers = [grpc_health(installed.service_ip, port["port"], s) for s in services for _ in range(5)]
    assert answers == ["SERVING"] * 10, answers
    for name, ip in installed.classifier_ips().items():
        answers = [grpc_health(ip, pod_port, s) for s in (*services, "no.such.Service")]
        assert answers == ["SERVING", "SERVING", "NOT_FOUND"], (name, answers)


def test_the_repair_cronjobs_identity_repairs_each_node_and_may_do_nothing_else(
    installed: Installed, tmp_path: Path
) -> None:
    kube = installed.kube
    repair = f"{FULLNAME}-cassandra-repair"
    classifier = sorted(installed.classifier_ips())[0]
    assert kube.can_i(NAMESPACE, repair, "create", f"pods/{FULLNAME}-cassandra-1", "--subresource=exec")
    assert not kube.can_i(NAMESPACE, repair, "create", f"pods/{classifier}", "--subresource=exec")
    assert not kube.can_i(NAMESPACE, repair, "get", "secrets")
    assert not kube.can_i(NAMESPACE, repair, "list", "pods")
    # The CronJob's command, with its ServiceAccount's token (from here: see the module docstring).
    config = kube.service_account_kubeconfig(NAMESPACE, repair, tmp_path / "kubeconfig")
    [command] = kube.get("cronjob", repair, "-n", NAMESPACE)["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert command["command"][:3] == ["fashion-classifier", "cluster", "cassandra-repair"]
    proc = kube.cli(*command["command"][2:], "-n", NAMESPACE, kubeconfig=config, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for index in range(2):
        assert f"{FULLNAME}-cassandra-{index}: repaired" in proc.stdout, proc.stdout
    assert f"repaired the primary ranges of all 2 pods of {FULLNAME}-cassandra" in proc.stdout, proc.stdout


def test_kubectl_scale_to_four_and_the_service_reaches_all_of_them(installed: Installed) -> None:
    installed.kube.kubectl("-n", NAMESPACE, "scale", "deployment", FULLNAME, "--replicas", "4")
    installed.wait_ready(CLASSIFIER, 4, 180)
    wait_service_routes(installed.service_ip, 80, 4)
    ips = installed.classifier_ips()
    before = {name: predictions_answered(ip) for name, ip in ips.items()}
    statuses = [predict_once(installed.service_ip, 80)[0] for _ in range(200)]
    assert statuses == [200] * 200

    def served() -> dict[str, float]:
        return {name: predictions_answered(ip) - before[name] for name, ip in ips.items()}

    # A worker counts a request as its response goes out: wait for the last counts, then compare.
    wait_until(lambda: sum(served().values()) == 200, 10, "the pods to count all 200 requests")
    assert all(n > 0 for n in served().values()), served()


def test_a_cassandra_pod_deleted_under_load_loses_no_prediction(installed: Installed) -> None:
    installed.wait_settled()
    baseline = installed.cassandra.count()
    old = {p["metadata"]["uid"] for p in ready_pods(installed.kube, NAMESPACE, CASSANDRA)}
    load = Load(installed.service_ip, 80, rate=20, duration=60).start()
    time.sleep(10)
    installed.kube.kubectl("-n", NAMESPACE, "delete", "pod", f"{FULLNAME}-cassandra-1", "--wait=false")
    load.wait()
    assert load.failures == [], load.failures[:5]
    assert load.ok > 900
    # The StatefulSet's replacement is a new pod that joined the ring again.
    pods = installed.wait_ready(CASSANDRA, 2, 300)
    assert {p["metadata"]["uid"] for p in pods} != old
    installed.cassandra.wait_for_count(baseline + load.ok, 240)


def test_rows_spooled_by_a_deleted_pod_reach_cassandra(installed: Installed) -> None:
    kube = installed.kube
    installed.wait_settled()
    baseline = installed.cassandra.count()
    kube.kubectl("-n", NAMESPACE, "scale", "statefulset", f"{FULLNAME}-cassandra", "--replicas", "0")
    wait_until(
        lambda: not kube.get("pods", "-n", NAMESPACE, "-l", CASSANDRA)["items"], 180, "the Cassandra pods to be gone"
    )
    name, ip = sorted(installed.classifier_ips().items())[0]
    statuses = [predict_once(ip, SERVING_PORT)[0] for _ in range(50)]
    assert statuses == [200] * 50
    wait_until(
        lambda: metric_sum(pod_metrics(ip), "fc_predlog_spool_rows") == 50, 60, f"{name} to have spooled its 50 rows"
    )
    kube.kubectl("-n", NAMESPACE, "delete", "pod", name, "--wait=true", "--timeout=120s")
    installed.wait_ready(CLASSIFIER, 4, 180)
    kube.kubectl("-n", NAMESPACE, "scale", "statefulset", f"{FULLNAME}-cassandra", "--replicas", "2")
    installed.wait_ready(CASSANDRA, 2, 400)
    installed.cassandra.wait_for_count(baseline + 50, 240)


# Prometheus' usual annotation-driven pod discovery (the chart's pods carry prometheus.io/scrape,
# /port and /path), against the API server with the test cluster's kubeconfig.
PROMETHEUS_SD = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: kubernetes-pods
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: {kubeconfig}
        namespaces:
          names: [{namespace}]
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        action: keep
        regex: "true"
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        target_label: __metrics_path__
        regex: (.+)
      - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
        target_label: __address__
        regex: ([^:]+)(?::\\d+)?;(\\d+)
        replacement: $1:$2
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
"""


def test_prometheus_discovers_the_pods_and_sees_the_load_sent(installed: Installed, tmp_path: Path) -> None:
    config = PROMETHEUS_SD.format(kubeconfig=installed.kube.kubeconfig, namespace=NAMESPACE)
    pods = installed.classifier_ips()
    with Prometheus(tmp_path, scrape_configs=config, binary=node_prometheus()) as prometheus:
        wait_until(
            lambda: prometheus.scalar('count(up{job="kubernetes-pods"} == 1)') == len(pods),
            60,
            f"Prometheus to scrape the {len(pods)} annotated pods",
        )
        rate = 40
        load = Load(installed.service_ip, 80, rate=rate, duration=55).start()
        started = time.monotonic()
        time.sleep(40)  # the 30-second window (30 scrapes) lies wholly inside the load
        seen = prometheus.scalar("sum(rate(fc_http_requests_total[30s]))")
        sent_rate = load.ok / (time.monotonic() - started)
        load.stop()
    assert load.failures == []
    assert seen is not None and abs(seen - sent_rate) <= 0.1 * sent_rate, (seen, sent_rate)


def test_helm_upgrade_with_a_new_image_tag_under_load_fails_no_request(installed: Installed) -> None:
    kube = installed.kube
    serve = podman_images()["serve"]
    repository, tag = split_image(serve)
    new_tag = f"{tag}-rollout"
    subprocess.run(
        ["bash", "-c", f'. docker/podman-env.sh && podman tag "{serve}" "{repository}:{new_tag}"'],
        cwd=KUBE_NODE.parents[1],
        check=True,
    )
    subprocess.run([KUBE_NODE, "import", f"{repository}:{new_tag}"], check=True, capture_output=True, timeout=600)
    load = Load(installed.service_ip, 80, rate=20, duration=120).start()
    kube.helm(
        "upgrade",
        RELEASE,
        CHART,
        "-n",
        NAMESPACE,
        "-f",
        installed.values,
        "--set",
        f"image.tag={new_tag}",
        "--wait",
        "--timeout",
        "5m",
        timeout=400,
    )

    def rolled() -> bool:
        pods = ready_pods(kube, NAMESPACE, CLASSIFIER)
        return len(pods) == 2 and {c["image"] for p in pods for c in p["spec"]["containers"]} == {
            f"{repository}:{new_tag}"
        }

    wait_until(rolled, 120, "two ready pods of the new image")
    load.stop()
    assert load.failures == [], load.failures[:5]
    assert load.ok > 100


def _pod_versions(ip: str) -> list[str]:
    """The versions a classifier pod serves: the current one, then a rollout's candidate."""
    with urllib.request.urlopen(f"http://{ip}:8000/v2/models/fashion", timeout=5) as response:
        return json.loads(response.read())["versions"]


def _all_pods_serve(installed: Installed, versions: list[str]) -> bool:
    ips = installed.classifier_ips()
    return len(ips) == 2 and all(_pod_versions(ip) == versions for ip in ips.values())


def test_a_candidate_set_by_the_chart_is_served_beside_the_current_version_then_promoted(installed: Installed) -> None:
    kube = installed.kube
    (current,) = set(_served_versions(installed).values())
    # The store holds the version the image seeded it with, which the trained one replaced.
    seeded = DEFAULT_MODEL
    kube.helm(
        "upgrade",
        RELEASE,
        CHART,
        "-n",
        NAMESPACE,
        "--reuse-values",
        "--set",
        f"model.candidate.version={seeded},model.candidate.weight=50,model.guard.enabled=true",
        "--set-string",
        "model.guard.schedule=* * * * *",
        "--wait",
        "--wait-for-jobs",
        "--timeout",
        "5m",
        timeout=400,
    )
    wait_until(lambda: _all_pods_serve(installed, [current, seeded]), 60, "both pods to load the candidate")
    # The guard's CronJob judges the candidate every minute, on the log in Cassandra: without
    # feedback yet, it keeps it. One Job made from it now, as an operator would by hand, instead of
    # waiting for the next minute (half a minute of CI on average).
    (guard,) = kube.get("cronjobs", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=rollout-guard")["items"]
    kube.kubectl("-n", NAMESPACE, "create", "job", "guard-now", f"--from=cronjob/{guard['metadata']['name']}")
    verdict = f"candidate {seeded} kept: too little feedback yet"
    wait_until(lambda: any(verdict in log for log in _guard_logs(kube)), 180, "a guard run to judge the candidate")
    assert _all_pods_serve(installed, [current, seeded])
    # Moves through the cluster command, which runs them in a Job on the store.
    for action, served in (("promote", [seeded]), ("rollback", [current])):
        proc = kube.cli("model", action, "-n", NAMESPACE, "--release", RELEASE)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        wait_until(lambda served=served: _all_pods_serve(installed, served), 60, f"both pods to follow {action}")
    status = kube.cli("model", "status", "-n", NAMESPACE, "--release", RELEASE)
    assert status.returncode == 0 and f"current    {current}" in status.stdout, status.stdout + status.stderr
    # The command's Jobs belong to no release: they stay 10 minutes after they end unless deleted.
    kube.kubectl(
        "-n",
        NAMESPACE,
        "delete",
        "jobs",
        "-l",
        "app.kubernetes.io/managed-by=fashion-classifier-cli",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=120s",
        timeout=150,
    )


def _guard_logs(kube) -> list[str]:
    """The output of each guard Job that succeeded (a failed one fails the test)."""
    jobs = kube.get("jobs", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=rollout-guard")["items"]
    failed = [job["metadata"]["name"] for job in jobs if job.get("status", {}).get("failed")]
    assert not failed, kube.kubectl("-n", NAMESPACE, "logs", f"job/{failed[0]}", check=False).stdout
    # The CronJob keeps one finished Job: a listed one may be gone by the time its log is read.
    return [
        kube.kubectl("-n", NAMESPACE, "logs", f"job/{job['metadata']['name']}", check=False).stdout
        for job in jobs
        if job.get("status", {}).get("succeeded")
    ]


def test_helm_uninstall_leaves_only_the_documented_claims(installed: Installed) -> None:
    kube = installed.kube
    kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m", timeout=240)
    # Pods go after their grace period (the preStop hooks), and the guard's Jobs after their
    # CronJob: wait for exactly those, then compare.
    wait_until(
        lambda: not kube.get("pods,jobs", "-n", NAMESPACE)["items"], 180, "every pod and Job of the release to be gone"
    )
    left = leftovers(kube, NAMESPACE)
    assert left == {
        "PersistentVolumeClaim": {
            f"{FULLNAME}-models",
            f"{FULLNAME}-spool",
            f"data-{FULLNAME}-cassandra-0",
            f"data-{FULLNAME}-cassandra-1",
        },
        "Secret": {f"{FULLNAME}-cassandra-admin", f"{FULLNAME}-cassandra-app"},
    }, left
