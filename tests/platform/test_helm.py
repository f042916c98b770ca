"""helm lint --strict and helm template over a matrix of values; values the chart must refuse."""

from __future__ import annotations

import base64
import re
import shutil

import pytest
import yaml
from k8s_support import CHART, NAMESPACE, ROOT, VALUES_MATRIX, Rendered
from test_cross_objects import pod_template, workloads


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
        ({"cassandra": {"enabled": False}}, "externalCassandra.hosts is empty"),
        (
            {"cassandra": {"enabled": False}, "externalCassandra": {"hosts": ["c1"], "tls": {"caSecret": "ca"}}},
            "tls.enabled is false",
        ),
        ({"externalCassandra": {"hosts": ["bad host"]}}, "hosts"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas"),
        ({"metrics": {"prometheusNamespaces": ["Monitoring"]}}, "prometheusNamespaces"),
        ({"cassandra": {"antiAffinity": "soft"}}, "antiAffinity"),
        ({"cassandra": {"repair": {"enabled": True, "schedule": "weekly"}}}, "schedule"),
        # 1 prediction/s for 90 days on RF 2 of 2 nodes: 2.17 GiB a node, within 60 % of 3.62 GiB.
        ({"cassandra": {"persistence": {"size": "3700Mi"}}}, "ask for at least 3.62 GiB"),
        (
            {"cassandra": {"persistence": {"sizing": {"predictionsPerSecond": 50, "rowBytes": 300}}}},
            "each node keeps 108.63 GiB",
        ),
        ({"cassandra": {"ttlDays": 0}}, "no cassandra.persistence.size can hold them"),
        ({"model": {"candidate": {"version": "v1", "mode": "blue-green"}}}, "mode"),
        ({"model": {"candidate": {"version": "v1", "weight": 101}}}, "weight"),
        ({"model": {"candidate": {"version": "../v1"}}}, "version"),
        ({"training": {"publishAs": "canary", "candidateWeight": -1}}, "candidateWeight"),
        ({"training": {"publishAs": "canary"}, "model": {"candidate": {"version": "v1"}}}, "not both"),
        ({"model": {"guard": {"enabled": True}}, "config": {"predlog": "sqlite"}}, "needs config.predlog cassandra"),
        (
            {
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "zone",
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"a": "b"}},
                    }
                ]
            },
            "need modelStore.accessMode ReadWriteMany",
        ),
        ({"extraEnv": [{"value": "no name"}]}, "name"),
        ({"config": {"logFormat": "logfmt"}}, "logFormat"),
        ({"httpRoute": {"enabled": True}}, "needs httpRoute.parentRefs"),
        (
            {
                "autoscaling": {"keda": {"enabled": True, "prometheusUrl": "http://p:9090"}},
                "metrics": {"serviceMonitor": {"enabled": False}},
            },
            "needs metrics.serviceMonitor.enabled",
        ),
        (
            {"cassandra": {"enabled": False}, "externalCassandra": {"hosts": ["c1"], "tls": {"enabled": True}}},
            "needs externalCassandra.tls.caSecret",
        ),
        ({"externalCassandra": {"hosts": ["c1:9042"]}}, "hosts"),
        ({"podLabels": {"app.kubernetes.io/component": "x"}}, "is the chart's own label"),
        ({"podLabels": {"fashion-classifier/cassandra-client": "false"}}, "is the chart's own label"),
        ({"podAnnotations": {"checksum/config": "x"}}, "is the chart's own annotation"),
        ({"config": {"extraEnv": {"FC_LOG_FORMAT": "json"}}}, "FC_LOG_FORMAT is set by the chart"),
        (
            {
                "modelStore": {"accessMode": "ReadWriteMany"},
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
                ],
            },
            "labelSelector",
        ),
        ({"autoscaling": {"keda": {"enabled": True}}}, "needs autoscaling.keda.prometheusUrl"),
        (
            {"autoscaling": {"enabled": False, "keda": {"enabled": True, "prometheusUrl": "http://p:9090"}}},
            "needs autoscaling.enabled",
        ),
        ({"extraVolumeMounts": [{"name": "x", "mountPath": "relative"}]}, "mountPath"),
        ({"affinity": {"nodeAfinity": {}}}, "nodeAfinity"),
        ({"serviceAccount": {"name": "Not_A_Name"}}, "name"),
        ({"model": {"guard": {"enabled": True, "window": "an hour"}}}, "window"),
        ({"model": {"guard": {"enabled": True, "window": "0s"}}}, "window"),
        ({"model": {"guard": {"enabled": True, "schedule": "every 5 minutes"}}}, "schedule"),
        ({"model": {"guard": {"enabled": True, "prometheusUrl": "prometheus:9090"}}}, "prometheusUrl"),
        ({"config": {"grpcPort": -1}}, "'/config/grpcPort': minimum"),
        ({"config": {"grpcPort": 70000}}, "'/config/grpcPort': maximum"),
        ({"config": {"grpcPort": "8081"}}, "'/config/grpcPort': got string, want integer"),
        ({"config": {"grpcPort": 8000}}, "config.grpcPort 8000 is taken"),
        ({"config": {"grpcPort": 9464}}, "config.grpcPort 9464 is taken"),
        ({"config": {"grpcPort": 8081}, "service": {"port": 8081}}, "config.grpcPort 8081 is service.port too"),
        ({"config": {"extraEnv": {"FC_GRPC_PORT": "8081"}}}, "FC_GRPC_PORT is set by the chart"),
        ({"config": {"grpcPort": 0, "extraEnv": {"FC_GRPC_PORT": "8081"}}}, "FC_GRPC_PORT is set by the chart"),
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
    assert kinds == sorted(
        [
            "ConfigMap",
            "CronJob",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Pod",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "StatefulSet",
        ]
    )
    assert all(d["metadata"].get("namespace") == NAMESPACE for d in r.docs)
    sts = r.get("StatefulSet", "fashion-classifier-cassandra")
    assert sts["spec"]["replicas"] == 2
    [cassandra] = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "cassandra"]
    # The release the tests run (scripts/cassandra/pom.xml), not a floating tag.
    tested = re.search(r"<cassandra.version>(.+)</cassandra.version>", (ROOT / "scripts/cassandra/pom.xml").read_text())
    assert cassandra["image"] == f"cassandra:{tested[1]}" == "cassandra:5.0.8"
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


def test_cassandra_pods_get_a_node_each_unless_the_cluster_has_one(render_chart):
    def anti_affinity(r: Rendered) -> dict:
        return r.get("StatefulSet", "fashion-classifier-cassandra")["spec"]["template"]["spec"]["affinity"][
            "podAntiAffinity"
        ]

    [term] = anti_affinity(render_chart({}, name="defaults"))["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "cassandra"
    relaxed = anti_affinity(render_chart(VALUES_MATRIX["cassandra-one-node"], name="cassandra-one-node"))
    assert list(relaxed) == ["preferredDuringSchedulingIgnoredDuringExecution"]


def test_cassandra_logs_to_stdout_only(render_chart):
    init = render_chart({}, name="defaults").get("StatefulSet", "fashion-classifier-cassandra")["spec"]["template"][
        "spec"
    ]["initContainers"][0]
    script = init["command"][-1]
    logback = script[script.index("<configuration>") : script.index("</configuration>")]
    assert "ConsoleAppender" in logback and "FileAppender" not in logback


def test_rows_ttl_reaches_the_migration(render_chart):
    assert _configmap(render_chart({}, name="defaults"))["FC_CASSANDRA_TTL_DAYS"] == "90"
    assert _configmap(render_chart({"cassandra": {"ttlDays": 7}}, name="ttl-7"))["FC_CASSANDRA_TTL_DAYS"] == "7"


def test_repair_cronjob_may_only_exec_into_the_cassandra_pods(render_chart):
    r = render_chart(VALUES_MATRIX["cassandra-3-nodes"], name="cassandra-3-nodes")
    name = "fashion-classifier-cassandra-repair"
    cron = r.get("CronJob", name)
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name and pod["automountServiceAccountToken"] is True
    assert pod["containers"][0]["command"] == [
        "fashion-classifier",
        "cluster",
        "cassandra-repair",
        "fashion-classifier-cassandra",
    ]
    assert r.get("Role", name)["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["statefulsets"],
            "resourceNames": ["fashion-classifier-cassandra"],
            "verbs": ["get"],
        },
        {
            "apiGroups": [""],
            "resources": ["pods/exec"],
            "resourceNames": [f"fashion-classifier-cassandra-{i}" for i in range(3)],
            "verbs": ["get", "create"],
        },
    ]
    binding = r.get("RoleBinding", name)
    assert binding["roleRef"]["name"] == name and binding["subjects"][0]["name"] == name
    off = render_chart(VALUES_MATRIX["cassandra-one-node"], name="cassandra-one-node")
    assert not off.of_kind("CronJob") and not off.of_kind("Role")


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


def test_metrics_port_is_admitted_from_the_prometheus_namespaces_only(render_chart):
    def metrics_rules(r: Rendered) -> list[dict]:
        policy = r.get("NetworkPolicy", "fashion-classifier")
        return [rule for rule in policy["spec"]["ingress"] if any(p["port"] == "metrics" for p in rule["ports"])]

    [default] = metrics_rules(render_chart({}, name="defaults"))
    assert default["from"] == [
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring"]}]
            }
        }
    ]
    two = render_chart({"metrics": {"prometheusNamespaces": ["monitoring", "observability"]}}, name="prom-ns")
    assert metrics_rules(two)[0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "monitoring",
        "observability",
    ]
    assert metrics_rules(render_chart({"metrics": {"prometheusNamespaces": []}}, name="prom-ns-none")) == []


def test_metrics_service_comes_with_the_service_monitor(render_chart):
    r = render_chart({}, name="defaults")
    service = r.get("Service", "fashion-classifier-metrics")
    assert service["spec"]["clusterIP"] == "None"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [("metrics", 9464, "metrics")]
    assert [p["name"] for p in r.get("Service", "fashion-classifier")["spec"]["ports"]] == ["http", "grpc"]
    off = render_chart({"metrics": {"serviceMonitor": {"enabled": False}}}, name="no-service-monitor")
    assert off.get("Service", "fashion-classifier-metrics") is None and not off.of_kind("ServiceMonitor")
    # Annotation-based scrapers still find the port on the pods.
    annotations = off.get("Deployment", "fashion-classifier")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9464"


def _grpc(r: Rendered) -> tuple[str, dict | None, dict | None, list[dict]]:
    """FC_GRPC_PORT, the classifier's container port and the Service's port named grpc, and the
    classifier NetworkPolicy's port entries for it."""
    [container] = r.get("Deployment", "fashion-classifier")["spec"]["template"]["spec"]["containers"]
    container_port = next((p for p in container["ports"] if p["name"] == "grpc"), None)
    service_port = next(
        (p for p in r.get("Service", "fashion-classifier")["spec"]["ports"] if p["name"] == "grpc"), None
    )
    policy = r.get("NetworkPolicy", "fashion-classifier")
    admitted = [p for rule in policy["spec"]["ingress"] for p in rule["ports"] if p["port"] == "grpc"]
    return _configmap(r)["FC_GRPC_PORT"], container_port, service_port, admitted


def test_grpc_is_on_by_default_and_off_at_zero(render_chart):
    r = render_chart({}, name="defaults")
    env, container_port, service_port, admitted = _grpc(r)
    assert env == "8081"
    assert container_port == {"name": "grpc", "containerPort": 8081, "protocol": "TCP"}
    assert service_port == {
        "name": "grpc",
        "port": 8081,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "kubernetes.io/h2c",
    }
    # From anywhere, in the same rule as http (no `from`), unlike the metrics port.
    [open_rule] = [
        rule for rule in r.get("NetworkPolicy", "fashion-classifier")["spec"]["ingress"] if "from" not in rule
    ]
    assert open_rule["ports"] == [{"port": "http", "protocol": "TCP"}, {"port": "grpc", "protocol": "TCP"}]
    assert admitted == [{"port": "grpc", "protocol": "TCP"}]
    # HTTP probes stay HTTP.
    deploy = r.get("Deployment", "fashion-classifier")["spec"]["template"]["spec"]["containers"][0]
    assert {deploy[p]["httpGet"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {"http"}
    # Another port: the same number on the pods, the Service and in the setting.
    env, container_port, service_port, _ = _grpc(render_chart({"config": {"grpcPort": 9000}}, name="grpc-9000"))
    assert (env, container_port["containerPort"], service_port["port"]) == ("9000", 9000, 9000)
    # 0: the server is off (and the setting stays the chart's), nothing exposes it.
    off = render_chart({"config": {"grpcPort": 0}}, name="grpc-off")
    assert _grpc(off) == ("0", None, None, [])
    assert [p["name"] for p in off.get("Service", "fashion-classifier")["spec"]["ports"]] == ["http"]
    # A NodePort Service: the fixed node port stays on http; gRPC gets one of Kubernetes' choosing.
    nodeport = render_chart(VALUES_MATRIX["nodeport-plain-training-job"], name="nodeport-plain-training-job")
    assert [(p["name"], p.get("nodePort")) for p in nodeport.get("Service", "fashion-classifier")["spec"]["ports"]] == [
        ("http", 30080),
        ("grpc", None),
    ]


def _secret(r: Rendered, name: str) -> dict[str, str]:
    secret = r.get("Secret", name)
    assert secret is not None, f"{r.name}: no Secret {name}"
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def _secret_refs(container: dict) -> dict[str, str]:
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container.get("env") or []
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_cassandra_auth_is_on_by_default(render_chart):
    r = render_chart({}, name="defaults")
    init = r.get("StatefulSet", "fashion-classifier-cassandra")["spec"]["template"]["spec"]["initContainers"][0]
    assert _env(init, "CASSANDRA_AUTH") == "true"
    script = init["command"][-1]
    assert "PasswordAuthenticator" in script and "CassandraAuthorizer" in script
    assert "auth_read_consistency_level: LOCAL_ONE" in script
    admin, app = _secret(r, "fashion-classifier-cassandra-admin"), _secret(r, "fashion-classifier-cassandra-app")
    assert admin["username"] == "fc_admin" and app["username"] == "fc_app"
    for secret in (admin, app):
        assert len(secret["password"]) == 32 and secret["password"].isalnum()
    assert admin["password"] != app["password"]
    # Random on each render without a cluster (`lookup` finds nothing): a new install, new passwords.
    again = render_chart({}, name="defaults-again", skip_tests=True)
    assert _secret(again, "fashion-classifier-cassandra-admin")["password"] != admin["password"]
    # Created before the pre-upgrade migration Job, and not deleted on uninstall.
    for name in ("fashion-classifier-cassandra-admin", "fashion-classifier-cassandra-app"):
        annotations = r.get("Secret", name)["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(annotations["helm.sh/hook-weight"]) < 0


def test_secrets_are_kept_on_upgrade_with_lookup():
    # `helm template` has no cluster, so lookup's branch is checked in the template itself.
    text = (CHART / "templates" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret" $.Release.Namespace $name' in text
    assert "$existing.data.password" in text and "randAlphaNum 32" in text


def test_classifier_uses_the_app_role_and_migration_the_admin_role(render_chart):
    r = render_chart({}, name="defaults")
    classifier = r.get("Deployment", "fashion-classifier")["spec"]["template"]["spec"]["containers"][0]
    refs = _secret_refs(classifier)
    assert refs["FC_CASSANDRA_USERNAME"] == refs["FC_CASSANDRA_PASSWORD"] == "fashion-classifier-cassandra-app"
    assert "FC_CASSANDRA_APP_PASSWORD" not in refs
    migrate = r.get("Job", "fashion-classifier-migrate")["spec"]["template"]["spec"]["containers"][0]
    refs = _secret_refs(migrate)
    assert refs["FC_CASSANDRA_USERNAME"] == refs["FC_CASSANDRA_PASSWORD"] == "fashion-classifier-cassandra-admin"
    assert refs["FC_CASSANDRA_APP_USERNAME"] == refs["FC_CASSANDRA_APP_PASSWORD"] == "fashion-classifier-cassandra-app"


def test_existing_secrets_are_used(render_chart):
    r = render_chart(VALUES_MATRIX["auth-existing-secrets"], name="auth-existing-secrets")
    assert r.get("Secret", "fashion-classifier-cassandra-admin") is None
    assert r.get("Secret", "fashion-classifier-cassandra-app") is None
    classifier = r.get("Deployment", "fashion-classifier")["spec"]["template"]["spec"]["containers"][0]
    assert set(_secret_refs(classifier).values()) == {"my-app"}
    migrate = r.get("Job", "fashion-classifier-migrate")["spec"]["template"]["spec"]["containers"][0]
    refs = _secret_refs(migrate)
    assert refs["FC_CASSANDRA_USERNAME"] == "my-admin" and refs["FC_CASSANDRA_APP_PASSWORD"] == "my-app"


def test_auth_off(render_chart):
    r = render_chart(VALUES_MATRIX["auth-off"], name="auth-off")
    assert not [s for s in r.of_kind("Secret") if "cassandra" in s["metadata"]["name"]]
    init = r.get("StatefulSet", "fashion-classifier-cassandra")["spec"]["template"]["spec"]["initContainers"][0]
    assert _env(init, "CASSANDRA_AUTH") == "false"
    classifier = r.get("Deployment", "fashion-classifier")["spec"]["template"]["spec"]["containers"][0]
    assert not [k for k in _secret_refs(classifier) if k.startswith("FC_CASSANDRA")]


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


def test_a_candidate_is_set_by_a_hook_after_the_training_run(render_chart):
    assert render_chart({}, name="defaults").get("Job", "fashion-classifier-rollout") is None
    r = render_chart(VALUES_MATRIX["canary-candidate"], name="canary-candidate")
    job = r.get("Job", "fashion-classifier-rollout")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    train = r.get("Job", "fashion-classifier-train")["metadata"]["annotations"]["helm.sh/hook-weight"]
    assert int(annotations["helm.sh/hook-weight"]) > int(train)
    pod = job["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == [
        "fashion-classifier",
        "model",
        "canary",
        "20261124T181829Z-mlp-b4dd",
        "--weight",
        "25",
        "--model-dir",
        "/models",
        "--unless-withdrawn",
    ]
    models = [m for m in container["volumeMounts"] if m["name"] == "models"]
    assert models == [{"name": "models", "mountPath": "/models"}]  # writable, unlike the classifier's
    assert pod["spec"]["initContainers"][0]["command"][0] == "fc-seed-model"  # a fresh store has the image's versions
    selector = r.get("Service", "fashion-classifier")["spec"]["selector"]
    assert any(pod["metadata"]["labels"].get(k) != v for k, v in selector.items())  # never a Service endpoint
    shadow = render_chart({"model": {"candidate": {"version": "v9", "mode": "shadow"}}}, name="shadow-candidate")
    command = shadow.get("Job", "fashion-classifier-rollout")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["fashion-classifier", "model", "shadow", "v9", "--model-dir", "/models", "--unless-withdrawn"]


def test_the_guard_judges_the_candidate_on_a_schedule(render_chart):
    assert render_chart({}, name="defaults").get("CronJob", "fashion-classifier-guard") is None
    r = render_chart(VALUES_MATRIX["canary-candidate"], name="canary-candidate")
    cron = r.get("CronJob", "fashion-classifier-guard")
    assert cron["spec"]["schedule"] == "*/2 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["fashion-classifier", "model", "guard"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options == {
        "--margin": "5",
        "--min-feedback": "30",
        "--window": "1h",
        "--prometheus-url": "http://prometheus-operated.monitoring:9090",
        "--prometheus-selector": f'namespace="{NAMESPACE}",service="fashion-classifier-metrics"',
    }
    # The settings' PROMETHEUS_MULTIPROC_DIR is writable (prometheus_client writes there when it is set).
    assert {"name": "metrics", "mountPath": "/run/prometheus"} in container["volumeMounts"]
    assert {"name": "models", "mountPath": "/models"} in container["volumeMounts"]  # writable: it withdraws
    assert pod["metadata"]["labels"]["fashion-classifier/cassandra-client"] == "true"  # reads the log
    selector = r.get("Service", "fashion-classifier")["spec"]["selector"]
    assert any(pod["metadata"]["labels"].get(k) != v for k, v in selector.items())  # never a Service endpoint
    plain = render_chart({"model": {"guard": {"enabled": True}}}, name="guard-accuracy-only")
    command = plain.get("CronJob", "fashion-classifier-guard")["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]["command"]
    assert "--prometheus-url" not in command and "--prometheus-selector" not in command


def test_training_can_publish_its_version_as_a_candidate(render_chart):
    default = render_chart({}, name="defaults").get("Job", "fashion-classifier-train")
    assert "--publish-as" not in default["spec"]["template"]["spec"]["containers"][0]["command"]
    r = render_chart({"training": {"publishAs": "canary", "candidateWeight": 5}}, name="training-canary")
    command = r.get("Job", "fashion-classifier-train")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--publish-as") + 1 :][:3] == ["canary", "--weight", "5"]


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
        "demo-fashion-classifier-cassandra-0.demo-fashion-classifier-cassandra"
    )


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


def _notes(tools, tmp_path, *values: str) -> str:
    # `helm install --dry-run` needs a cluster; render NOTES.txt through tpl in a copy of the chart.
    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        shutil.copy(chart / "templates" / "NOTES.txt", chart / "files" / "NOTES.txt")
        probe = 'notes: {{ tpl (.Files.Get "files/NOTES.txt") . | quote }}\n'
        (chart / "templates" / "notes-probe.yaml").write_text(probe)
    proc = tools.run(
        "helm",
        "template",
        "fashion-classifier",
        chart,
        "--namespace",
        NAMESPACE,
        "--show-only",
        "templates/notes-probe.yaml",
        *values,
    )
    return yaml.safe_load(proc.stdout)["notes"]


def test_notes_for_an_external_cassandra_a_route_and_keda(tools, tmp_path):
    values = tmp_path / "values.yaml"
    keda = VALUES_MATRIX["httproute-keda"]
    values.write_text(yaml.safe_dump({**VALUES_MATRIX["external-cassandra-k8ssandra"], **keda}))
    notes = _notes(tools, tmp_path, "-f", values)
    assert "takes a minute" not in notes and "rollout status statefulset" not in notes
    assert "external Cassandra at demo-dc1-service.k8ssandra-operator.svc (data center dc1)" in notes
    assert "the cluster's superuser (demo-superuser)" in notes and "cassandra-admin" not in notes
    assert "get secret fashion-classifier-cassandra-app" in notes
    assert "through the Gateway public at http(s)://fashion-classifier.example.com/" in notes
    assert "KEDA ScaledObject's HorizontalPodAutoscaler owns the replica count" in notes


def test_notes_explain_access_and_scraping(tools, tmp_path):
    notes = _notes(tools, tmp_path)
    assert "kubectl -n fashion-classifier port-forward service/fashion-classifier 8080:80" in notes
    assert "kube-prometheus-stack-prometheus 9090:9090" in notes
    assert "release: kube-prometheus-stack" in notes
    assert "port-forward deployment/fashion-classifier 9464" in notes and ":8000/metrics" not in notes
    assert "admits only the namespaces\n   monitoring" in notes
    assert "get secret fashion-classifier-cassandra-admin -o jsonpath='{.data.password}'" in notes
    # The claims `helm uninstall` keeps (tests/cluster/test_cluster_helm.py checks the same list).
    kept = notes.split("`helm uninstall` keeps", 1)[1]
    for claim in ("fashion-classifier-models", "fashion-classifier-spool", "data-fashion-classifier-cassandra-<i>"):
        assert claim in kept, claim
    assert "Data: downloaded by keras" in notes and "ReadWriteOnce: every pod mounting them runs on one node" in notes


def test_notes_tell_how_to_reach_grpc(tools, tmp_path):
    notes = _notes(tools, tmp_path)
    assert "gRPC (Open Inference Protocol, KServe V2; reflection and grpc.health.v1 on)" in notes
    assert "kubectl -n fashion-classifier port-forward service/fashion-classifier 8081\n" in notes
    assert "grpcurl -plaintext localhost:8081 list" in notes
    assert "not through the Ingress" not in notes
    ingress = _notes(tools, tmp_path, "--set", "ingress.enabled=true", "--set", "config.grpcPort=9000")
    assert "port grpc, 9000 (not through the Ingress or the HTTPRoute)" in ingress
    assert "grpcurl -plaintext localhost:9000 list" in ingress
    off = _notes(tools, tmp_path, "--set", "config.grpcPort=0")
    assert "grpc" not in off.lower()


def _pod_specs(r: Rendered) -> dict[str, dict]:
    """Every pod spec of the release's own image (not Cassandra's), by workload or CronJob name."""
    specs = {w["metadata"]["name"]: pod_template(w)["spec"] for w in workloads(r)}
    specs |= {c["metadata"]["name"]: c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in r.of_kind("CronJob")}
    return {name: spec for name, spec in specs.items() if not name.endswith(("-cassandra", "-cassandra-repair"))}


def test_extension_points_reach_the_classifier_pods(render_chart):
    values = VALUES_MATRIX["extension-points"]
    r = render_chart(values, name="extension-points")
    deploy = r.get("Deployment", "fashion-classifier")
    meta, pod = deploy["spec"]["template"]["metadata"], deploy["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert meta["labels"]["team"] == "ml-platform" and "app.kubernetes.io/component" in meta["labels"]
    assert meta["annotations"]["team.example.com/owner"] == "ml-platform" and "checksum/config" in meta["annotations"]
    assert container["env"][-2:] == values["extraEnv"]
    assert _configmap(r)["FC_LOG_FORMAT"] == "json"
    assert container["envFrom"][1:] == values["extraEnvFrom"]
    assert container["volumeMounts"][-1] == values["extraVolumeMounts"][0]
    assert pod["volumes"][-1] == values["extraVolumes"][0]
    assert pod["priorityClassName"] == "inference-high"
    assert pod["affinity"] == values["affinity"]  # shared storage: no colocation term added
    assert pod["topologySpreadConstraints"] == values["topologySpreadConstraints"]
    # No ServiceAccount made: every pod of the release's image runs as the named one, with the pull secret.
    assert r.get("ServiceAccount", "fashion-classifier") is None
    specs = _pod_specs(r)
    assert {"fashion-classifier", "fashion-classifier-train", "fashion-classifier-migrate"} <= set(specs)
    for name, spec in specs.items():
        assert spec["serviceAccountName"] == "platform-sa", name
        assert spec["imagePullSecrets"] == [{"name": "regcred"}], name


def test_a_users_affinity_keeps_the_read_write_once_colocation(render_chart):
    node_pool = VALUES_MATRIX["extension-points"]["affinity"]
    own_term = {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"cache": "warm"}}}
    r = render_chart(
        {"affinity": {**node_pool, "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [own_term]}}},
        name="affinity-rwo",
    )
    affinity = r.get("Deployment", "fashion-classifier")["spec"]["template"]["spec"]["affinity"]
    assert affinity["nodeAffinity"] == node_pool["nodeAffinity"]
    terms = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0] == own_term and terms[1]["topologyKey"] == "kubernetes.io/hostname"
    default = render_chart({}, name="defaults")
    assert default.get("ServiceAccount", "fashion-classifier")["automountServiceAccountToken"] is False
    assert all("imagePullSecrets" not in spec for spec in _pod_specs(default).values())


def test_an_external_cassandra_gets_its_hosts_tls_and_superuser(render_chart):
    r = render_chart(VALUES_MATRIX["external-cassandra-k8ssandra"], name="external-cassandra-k8ssandra")
    assert r.get("StatefulSet", "fashion-classifier-cassandra") is None
    config = _configmap(r)
    assert {k: config[k] for k in config if k.startswith("FC_CASSANDRA_") and k != "FC_CASSANDRA_TTL_DAYS"} == {
        "FC_CASSANDRA_HOSTS": "demo-dc1-service.k8ssandra-operator.svc",
        "FC_CASSANDRA_PORT": "9042",
        "FC_CASSANDRA_KEYSPACE": "fashion",
        "FC_CASSANDRA_LOCAL_DC": "dc1",
        "FC_CASSANDRA_REPLICATION": "3",
        "FC_CASSANDRA_MANAGE_AUTH": "false",
        "FC_CASSANDRA_TLS": "true",
        "FC_CASSANDRA_CA_FILE": "/etc/fashion-classifier/cassandra-ca/ca.crt",
    }
    # The migration logs in as K8ssandra's superuser and creates the application role, whose
    # Secret the chart generates; there is no admin Secret of the chart's.
    migrate = r.get("Job", "fashion-classifier-migrate")["spec"]["template"]["spec"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in migrate["containers"][0]["env"]}
    assert refs == {
        "FC_CASSANDRA_USERNAME": "demo-superuser",
        "FC_CASSANDRA_PASSWORD": "demo-superuser",
        "FC_CASSANDRA_APP_USERNAME": "fashion-classifier-cassandra-app",
        "FC_CASSANDRA_APP_PASSWORD": "fashion-classifier-cassandra-app",
    }
    assert {s["metadata"]["name"] for s in r.of_kind("Secret")} >= {"fashion-classifier-cassandra-app"}
    assert r.get("Secret", "fashion-classifier-cassandra-admin") is None
    # Every pod that talks to Cassandra mounts the CA where FC_CASSANDRA_CA_FILE points.
    clients = [
        r.get("Deployment", "fashion-classifier")["spec"]["template"]["spec"],
        migrate,
        r.get("CronJob", "fashion-classifier-guard")["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    ]
    for pod in clients:
        [volume] = [v for v in pod["volumes"] if v["name"] == "cassandra-ca"]
        assert volume["secret"] == {"secretName": "demo-client-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
        mounts = [m for c in pod["containers"] for m in c["volumeMounts"] if m["name"] == "cassandra-ca"]
        assert mounts == [
            {"name": "cassandra-ca", "mountPath": "/etc/fashion-classifier/cassandra-ca", "readOnly": True}
        ]
    # Without a Secret: no authentication, no role Secrets.
    plain = render_chart(
        {"cassandra": {"enabled": False}, "externalCassandra": {"hosts": ["10.0.0.5"]}}, name="external-plain"
    )
    assert not plain.of_kind("Secret") or all("cassandra" not in s["metadata"]["name"] for s in plain.of_kind("Secret"))
    assert "FC_CASSANDRA_TLS" not in _configmap(plain)


def test_uploads_pass_the_ingress_and_the_route_reaches_the_service(render_chart):
    r = render_chart(VALUES_MATRIX["ingress-on"], name="ingress-on")
    ingress = r.get("Ingress", "fashion-classifier")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "10485760"
    assert _configmap(r)["FC_MAX_UPLOAD_BYTES"] == "10485760"
    own = render_chart(
        {
            "ingress": {
                "enabled": True,
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m", "team": "x"},
            },
            "config": {"maxUploadBytes": 2048},
        },
        name="ingress-own-limit",
    )
    assert own.get("Ingress", "fashion-classifier")["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/proxy-body-size": "1m",
        "team": "x",
    }
    assert _configmap(own)["FC_MAX_UPLOAD_BYTES"] == "2048"
    route = render_chart(VALUES_MATRIX["httproute-keda"], name="httproute-keda").get("HTTPRoute", "fashion-classifier")
    assert route["spec"]["parentRefs"] == VALUES_MATRIX["httproute-keda"]["httpRoute"]["parentRefs"]
    assert route["spec"]["hostnames"] == ["fashion-classifier.example.com"]
    assert route["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]


def test_requests_are_one_cpu_per_worker_and_keda_replaces_the_hpa(render_chart):
    r = render_chart({}, name="defaults")
    [container] = r.get("Deployment", "fashion-classifier")["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == str(_configmap(r)["FC_WORKERS"]) == "1"
    assert r.get("HorizontalPodAutoscaler", "fashion-classifier")["spec"]["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 70,
    }
    keda = render_chart(VALUES_MATRIX["httproute-keda"], name="httproute-keda")
    assert keda.get("HorizontalPodAutoscaler", "fashion-classifier") is None
    scaled = keda.get("ScaledObject", "fashion-classifier")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (2, 6)
    rate, cpu = scaled["triggers"]
    assert rate["metadata"]["threshold"] == "250"
    assert rate["metadata"]["serverAddress"] == "http://kube-prometheus-stack-prometheus.monitoring:9090"
    assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
