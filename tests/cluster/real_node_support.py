"""What the real-node tests share: the images, bounded traffic, and readings from the pods and Cassandra.

Traffic goes only to the Service's cluster IP and to pod IPs on the node's bridge (10.244.0.0/24);
every load is bounded in requests and in time.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cluster_support import ROOT, Kube, wait_for
from prometheus_client.parser import text_string_to_metric_families

KUBE_NODE = ROOT / "scripts" / "kube-node"
SERVING_PORT = 8000
METRICS_PORT = 9464
# One 28x28 image (a bright block on black), the JSON API's smallest honest request.
_IMAGE = [[0.9 if 6 <= r <= 22 and 8 <= c <= 20 else 0.0 for c in range(28)] for r in range(28)]
PREDICT_BODY = json.dumps({"instances": [_IMAGE]}).encode()


def podman_images() -> dict[str, str]:
    """The project's image names, as docker/podman-env.sh declares them."""
    script = ". docker/podman-env.sh && echo $SERVE_IMAGE $TRAIN_IMAGE $CASSANDRA_IMAGE"
    serve, train, cassandra = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {"serve": serve, "train": train, "cassandra": cassandra}


def node_prometheus() -> str:
    """The Prometheus scripts/kube-node builds: Debian's has no Kubernetes service discovery."""
    bin_dir = subprocess.run([KUBE_NODE, "bin"], capture_output=True, text=True, check=True).stdout.strip()
    return f"{bin_dir}/prometheus"


def split_image(name: str) -> tuple[str, str]:
    repository, _, tag = name.rpartition(":")
    return repository, tag


# --- traffic ------------------------------------------------------------------------------------


def predict_once(host: str, port: int, timeout: float = 10.0) -> tuple[int, bytes]:
    """One prediction on a fresh connection (so kube-proxy picks a pod for each request)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/api/v1/predict",
            body=PREDICT_BODY,
            headers={"Content-Type": "application/json", "Connection": "close"},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Load:
    """``rate`` predictions a second to host:port from a few threads, for at most ``duration`` s.

    ``ok`` counts the 200s (each one is a prediction the log must keep); ``failures`` keeps every
    other outcome (status or exception) for the assertion message.
    """

    host: str
    port: int
    rate: float
    duration: float
    threads: int = 4
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        self._deadline = time.monotonic() + self.duration
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(i,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, index: int) -> None:
        interval = self.threads / self.rate
        next_at = time.monotonic() + index * interval / self.threads
        while not self._stop.is_set() and next_at < self._deadline:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            try:
                status, body = predict_once(self.host, self.port)
            except OSError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            else:
                outcome = "" if status == 200 else f"{status}: {body[:200]!r}"
            with self._lock:
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.ok += 1

    def stop(self) -> Load:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return self

    def wait(self) -> Load:
        for worker in self._workers:
            worker.join(timeout=self.duration + 30)
        return self

    @property
    def sent(self) -> int:
        return self.ok + len(self.failures)


# --- readings -----------------------------------------------------------------------------------


def kube_proxy_endpoints(service_ip: str, port: int) -> int:
    """How many pods kube-proxy sends service_ip:port to, read from its iptables rules: what
    traffic really reaches, which lags the EndpointSlices a little."""
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    service = re.search(
        rf"^-A KUBE-SERVICES -d {re.escape(service_ip)}/32 .*--dport {port} -j (KUBE-SVC-\w+)$", rules, re.MULTILINE
    )
    if service is None:
        return 0
    return len(re.findall(rf"^-A {service.group(1)} .*-j KUBE-SEP-", rules, re.MULTILINE))


def grpc_health(host: str, port: int, service: str = "", timeout: float = 5.0) -> str:
    """What grpc.health.v1.Health/Check answers for ``service`` ("" = the whole server): the
    status's name (SERVING, NOT_SERVING, ...), or the failed call's code (NOT_FOUND, UNAVAILABLE, ...).
    Each call opens a connection of its own (no subchannel shared with an earlier channel), so
    kube-proxy picks a pod for each, as for predict_once."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def wait_service_routes(service_ip: str, port: int, count: int, timeout: float = 60) -> None:
    wait_until(
        lambda: kube_proxy_endpoints(service_ip, port) == count,
        timeout,
        f"kube-proxy to route {service_ip}:{port} to {count} pods",
    )


Sample = tuple[str, dict[str, str], float]


def pod_metrics(ip: str) -> list[Sample]:
    """The samples of the pod's /metrics (its own port): name, labels, value."""
    conn = http.client.HTTPConnection(ip, METRICS_PORT, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def metric_sum(samples: list[Sample], name: str) -> float:
    return sum(value for sample, _, value in samples if sample == name)


def predictions_answered(ip: str) -> float:
    """The pod's 200s on its prediction endpoints."""
    return sum(
        value
        for name, labels, value in pod_metrics(ip)
        if name == "fc_http_requests_total"
        and labels.get("status") == "200"
        and "predict" in labels.get("endpoint", "")
    )


def log_backlog(ip: str) -> dict[str, float]:
    """What of the pod's prediction log is not in Cassandra yet, and whether it is connected."""
    samples = pod_metrics(ip)
    return {name: metric_sum(samples, f"fc_predlog_{name}") for name in ("rows_in_memory", "spool_rows", "connected")}


def secret_value(kube: Kube, namespace: str, name: str, key: str) -> str:
    return base64.b64decode(kube.get("secret", name, "-n", namespace)["data"][key]).decode()


@dataclass
class CassandraReader:
    """Counts the prediction log's rows with the application role, read at ALL (every replica)."""

    kube: Kube
    namespace: str
    release: str
    keyspace: str = "fashion"

    def count(self) -> int:
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster
        from cassandra.query import SimpleStatement

        selector = f"app.kubernetes.io/component=cassandra,app.kubernetes.io/instance={self.release}"
        ips = [
            p["status"]["podIP"]
            for p in self.kube.get("pods", "-n", self.namespace, "-l", selector)["items"]
            if p["status"].get("podIP")
        ]
        secret = f"{self.release}-fashion-classifier-cassandra-app"
        auth = PlainTextAuthProvider(
            secret_value(self.kube, self.namespace, secret, "username"),
            secret_value(self.kube, self.namespace, secret, "password"),
        )
        cluster = Cluster(ips, auth_provider=auth, connect_timeout=10)
        try:
            session = cluster.connect()
            today = dt.datetime.now(dt.UTC).date()
            days = [today - dt.timedelta(days=1), today]
            # A scan of the whole (small) table, not the bucket index the code under test writes.
            statement = SimpleStatement(
                f"SELECT day FROM {self.keyspace}.predictions_by_bucket",
                consistency_level=ConsistencyLevel.ALL,
                fetch_size=5000,
            )
            return sum(row.day.date() in days for row in session.execute(statement, timeout=30))
        finally:
            cluster.shutdown()

    def wait_for_count(self, expected: int, timeout: float) -> None:
        """Poll until the log holds exactly ``expected`` rows (replays and hints take a while)."""
        deadline = time.monotonic() + timeout
        last: int | str = "never read"
        while time.monotonic() < deadline:
            try:
                last = self.count()
            except Exception as exc:  # noqa: BLE001 - a node still starting: ask again
                last = f"{type(exc).__name__}: {exc}"
            if last == expected:
                return
            time.sleep(2)
        raise AssertionError(f"Cassandra holds {last} rows after {timeout:.0f} s, expected {expected}")


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> None:
    wait_for(lambda: check() or None, timeout, what, interval=interval)
