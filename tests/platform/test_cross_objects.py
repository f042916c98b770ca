"""Checks across objects that only an API server (or a failed rollout) would otherwise catch.

Each test runs on every rendered set: all Helm values in the matrix and every kustomize target.
"""

from __future__ import annotations

import json
import re
from typing import Any

from k8s_support import EXTERNAL_ACCOUNTS, EXTERNAL_CLAIMS, EXTERNAL_SECRETS, VALUES_MATRIX, Rendered

from fashion_classifier.config import Settings

WORKLOADS = ("Deployment", "StatefulSet", "Job", "Pod")
CONTRACT_METRICS = {
    "fc_http_requests_total",
    "fc_http_request_duration_seconds",
    "fc_http_requests_in_flight",
    "fc_predictions_total",
    "fc_prediction_confidence",
    "fc_model_info",
    "fc_model_load_seconds",
    "fc_model_candidate_info",
    "fc_rollout_moves",
    "fc_inference_duration_seconds",
    "fc_inference_errors_total",
    "fc_model_reloads_total",
    "fc_model_load_failures_total",
    "fc_model_ready",
    "fc_feedback_total",
    "fc_predlog_queue_depth",
    "fc_predlog_spool_rows",
    "fc_predlog_spool_bytes",
    "fc_predlog_written_rows_total",
    "fc_predlog_write_errors_total",
    "fc_predlog_spooled_rows_total",
    "fc_predlog_replayed_rows_total",
    "fc_predlog_connected",
    "fc_build_info",
    "fc_grpc_requests_total",
    "fc_grpc_request_duration_seconds",
}


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """metadata + spec of the pods a workload creates (a Pod is its own template)."""
    return obj if obj["kind"] == "Pod" else obj["spec"]["template"]


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    return pod_template(obj)["metadata"].get("labels", {})


def containers(obj: dict[str, Any], init: bool = True) -> list[dict[str, Any]]:
    spec = pod_template(obj)["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]] if init else list(spec["containers"])


def workloads(r: Rendered) -> list[dict[str, Any]]:
    return [d for d in r.docs if d["kind"] in WORKLOADS]


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Label-selector semantics: matchLabels plus In/NotIn/Exists/DoesNotExist expressions."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def selected(r: Rendered, selector: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in workloads(r) if matches(selector, pod_labels(w))]


def container_ports(obj: dict[str, Any]) -> dict[str, int]:
    return {
        p.get("name", str(p["containerPort"])): p["containerPort"]
        for c in containers(obj, init=False)
        for p in c.get("ports", [])
    }


def test_workload_selectors_match_their_pod_labels(rendered):
    for w in workloads(rendered):
        if w["kind"] in ("Deployment", "StatefulSet"):
            selector = w["spec"]["selector"]
            assert selector["matchLabels"], w["metadata"]["name"]
            assert matches(selector, pod_labels(w)), f"{w['kind']}/{w['metadata']['name']}"


def test_workload_selectors_do_not_overlap(rendered):
    owners = [w for w in workloads(rendered) if w["kind"] in ("Deployment", "StatefulSet")]
    for w in owners:
        claimed = [o["metadata"]["name"] for o in owners if matches(w["spec"]["selector"], pod_labels(o))]
        assert claimed == [w["metadata"]["name"]], f"{w['metadata']['name']} also selects {claimed}"


def test_services_select_pods_and_target_existing_ports(rendered):
    for svc in rendered.of_kind("Service"):
        name = svc["metadata"]["name"]
        pods = selected(rendered, {"matchLabels": svc["spec"]["selector"]})
        assert pods, f"Service {name} selects no pods"
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for pod in pods:
                ports = container_ports(pod)
                if isinstance(target, str):
                    assert target in ports, f"Service {name}: no container port named {target!r}"
                else:
                    assert target in ports.values(), f"Service {name}: no container port {target}"


def test_every_volume_mount_has_a_volume_and_every_volume_is_used(rendered):
    for w in workloads(rendered):
        spec = pod_template(w)["spec"]
        volumes = {v["name"] for v in spec.get("volumes", [])}
        if w["kind"] == "StatefulSet":
            volumes |= {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        mounted = {m["name"] for c in containers(w) for m in c.get("volumeMounts", [])}
        label = f"{w['kind']}/{w['metadata']['name']}"
        assert mounted <= volumes, f"{label}: mounts without a volume: {mounted - volumes}"
        assert volumes <= mounted, f"{label}: volumes never mounted: {volumes - mounted}"
        for c in containers(w):
            own = [m["mountPath"] for m in c.get("volumeMounts", [])]
            assert len(own) == len(set(own)), f"{label}/{c['name']}: a path is mounted twice"


def test_claims_exist(rendered):
    claims = {p["metadata"]["name"] for p in rendered.of_kind("PersistentVolumeClaim")} | EXTERNAL_CLAIMS
    for w in workloads(rendered):
        for v in pod_template(w)["spec"].get("volumes", []):
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, w["metadata"]["name"]


def test_config_maps_secrets_and_service_accounts_exist(rendered):
    config_maps = {c["metadata"]["name"] for c in rendered.of_kind("ConfigMap")}
    secrets = {
        s["metadata"]["name"]: {**s.get("data", {}), **s.get("stringData", {})} for s in rendered.of_kind("Secret")
    }
    # Made by the kustomize base's ensure-secrets Job, or by the user (existingSecret values).
    secrets.update({name: dict.fromkeys(keys) for name, keys in rendered.runtime_secrets().items()})
    secrets.update({name: dict.fromkeys(keys) for name, keys in EXTERNAL_SECRETS.items()})
    accounts = {a["metadata"]["name"] for a in rendered.of_kind("ServiceAccount")} | EXTERNAL_ACCOUNTS
    for w in workloads(rendered):
        spec = pod_template(w)["spec"]
        assert spec.get("serviceAccountName") in accounts, w["metadata"]["name"]
        for c in containers(w):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                else:
                    assert source["secretRef"]["name"] in secrets, f"{w['metadata']['name']}: no Secret"
            for env in c.get("env") or []:
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{w['metadata']['name']}: no Secret {ref['name']}"
                    assert ref["key"] in secrets[ref["name"]], f"Secret {ref['name']} has no key {ref['key']}"


def test_statefulset_service_is_headless_and_selects_it(rendered):
    for sts in rendered.of_kind("StatefulSet"):
        svc = rendered.get("Service", sts["spec"]["serviceName"])
        assert svc is not None, f"StatefulSet {sts['metadata']['name']}: no governing Service"
        assert svc["spec"].get("clusterIP") == "None", "the governing Service must be headless"
        assert svc["spec"].get("publishNotReadyAddresses") is True, "seeds must resolve before readiness"
        assert matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(sts))


def test_cassandra_hosts_and_seeds_are_statefulset_pods(rendered):
    config = rendered.get("ConfigMap", _fullname(rendered))["data"]
    [sts] = rendered.of_kind("StatefulSet") or [None]
    if sts is None:  # no Cassandra in the release: the log is elsewhere, or in an external cluster
        assert config["FC_PREDLOG"] != "cassandra" or config["FC_CASSANDRA_MANAGE_AUTH"] == "false"
        return
    name, service, replicas = sts["metadata"]["name"], sts["spec"]["serviceName"], sts["spec"]["replicas"]
    valid = {f"{name}-{i}.{service}" for i in range(replicas)}
    hosts = config["FC_CASSANDRA_HOSTS"].split(",")
    assert set(hosts) <= valid and len(hosts) >= 2, hosts
    cassandra = next(c for c in containers(sts, init=False) if c["name"] == "cassandra")
    env = {e["name"]: e.get("value") for e in cassandra["env"]}
    seeds = env["CASSANDRA_SEEDS"].split(",")
    assert set(seeds) <= valid and seeds[0] == f"{name}-0.{service}", seeds
    assert 2 <= int(config["FC_CASSANDRA_REPLICATION"]) <= replicas
    assert env["CASSANDRA_DC"] == config["FC_CASSANDRA_LOCAL_DC"]


def test_probes_and_scrape_annotations_point_at_real_ports(rendered):
    for w in workloads(rendered):
        ports = container_ports(w)
        for c in containers(w, init=False):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                handler = c.get(probe, {})
                port = (handler.get("httpGet") or handler.get("tcpSocket") or {}).get("port")
                if port is not None:
                    assert port in ports or port in ports.values(), f"{w['metadata']['name']} {probe}: {port}"
        annotations = pod_template(w)["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            assert int(annotations["prometheus.io/port"]) in ports.values()
            assert annotations["prometheus.io/path"] == "/metrics"


def test_classifier_contract(rendered):
    """The conventions the application relies on (see the platform issue)."""
    deploy = rendered.get("Deployment", _fullname(rendered))
    spec = deploy["spec"]["template"]["spec"]
    [app] = spec["containers"]
    assert app["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert app["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert app["securityContext"]["readOnlyRootFilesystem"] is True
    assert app["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in app["volumeMounts"]}
    config = rendered.get("ConfigMap", _fullname(rendered))["data"]
    assert config["FC_MODEL_DIR"] in mounts and mounts[config["FC_MODEL_DIR"]].get("readOnly") is True
    assert config["PROMETHEUS_MULTIPROC_DIR"] in mounts
    spool = config["FC_SPOOL_DIR"]
    assert any(spool.startswith(path + "/") for path in mounts), "the spool must be on a writable volume"
    assert config["FC_HOST"] == "0.0.0.0"
    # Metrics on their own port (the app's has no /metrics): the container port named metrics is
    # FC_METRICS_PORT, and the scrape annotation points there, never at the http port.
    ports = container_ports(deploy)
    assert ports["http"] == int(config["FC_PORT"])
    assert ports["metrics"] == int(config.get("FC_METRICS_PORT", Settings().metrics_port)) != ports["http"]
    assert int(deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == ports["metrics"]
    # Shutdown: the preStop pause, then gunicorn's graceful timeout, within the grace period.
    pause = app["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep" and int(pause[1]) >= 5
    graceful = int(config.get("FC_GRACEFUL_TIMEOUT", Settings().graceful_timeout))
    assert spec["terminationGracePeriodSeconds"] >= int(pause[1]) + graceful + 2  # + the 2-s keep-alive linger
    # The seeding init container writes the same volume the server reads.
    [seed] = spec["initContainers"]
    assert seed["command"][-1] == config["FC_MODEL_DIR"]
    assert {m["name"] for m in seed["volumeMounts"]} == {mounts[config["FC_MODEL_DIR"]]["name"]}


def test_grpc_port_is_the_setting_on_the_pods_the_service_and_the_policy(rendered):
    """FC_GRPC_PORT, the Open Inference Protocol over gRPC: when on, the container port named grpc,
    a port of the public Service that reaches it as cleartext HTTP/2, admitted by the classifier's
    NetworkPolicy by the same rule as http; when off ("0"), none of them."""
    fullname = _fullname(rendered)
    deploy = rendered.get("Deployment", fullname)
    grpc = int(rendered.get("ConfigMap", fullname)["data"]["FC_GRPC_PORT"])
    ports = container_ports(deploy)
    service = {p["name"]: p for p in rendered.get("Service", fullname)["spec"]["ports"]}
    policies = [p for p in rendered.of_kind("NetworkPolicy") if matches(p["spec"]["podSelector"], pod_labels(deploy))]

    def rules_admitting(name: str) -> list[dict[str, Any]]:
        return [
            rule for p in policies for rule in p["spec"]["ingress"] if any(q["port"] == name for q in rule["ports"])
        ]

    if not grpc:
        assert "grpc" not in ports and "grpc" not in service and not rules_admitting("grpc")
        return
    assert ports["grpc"] == grpc and grpc not in (ports["http"], ports["metrics"])
    assert service["grpc"] == {
        "name": "grpc",
        "port": grpc,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "kubernetes.io/h2c",
    }
    if policies:
        assert rules_admitting("grpc") == rules_admitting("http") != [], "gRPC is admitted as http is"


def test_training_job_writes_the_store_the_classifier_reads(rendered):
    train = rendered.get("Job", f"{_fullname(rendered)}-train")
    if train is None:
        return
    deploy = rendered.get("Deployment", _fullname(rendered))
    model_dir = rendered.get("ConfigMap", _fullname(rendered))["data"]["FC_MODEL_DIR"]
    assert _claim_at(deploy, model_dir) == _claim_at(train, model_dir) is not None
    [container] = containers(train)
    assert container["command"][:4] == ["fashion-classifier", "train", "--model-dir", "/models"]
    assert not any(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] == "/models")
    assert "-train:" in container["image"], "training needs the image with TensorFlow"
    assert "-train:" not in containers(deploy)[0]["image"]


def _claim_at(workload: dict[str, Any], path: str) -> str | None:
    """The claim mounted at ``path`` in the workload's first container, or None."""
    volumes = {v["name"]: v for v in pod_template(workload)["spec"].get("volumes", [])}
    for mount in containers(workload, init=False)[0].get("volumeMounts", []):
        if mount["mountPath"] == path:
            return volumes[mount["name"]].get("persistentVolumeClaim", {}).get("claimName")
    return None


def _required_pod_affinity(workload: dict[str, Any]) -> list[dict[str, Any]]:
    affinity = pod_template(workload)["spec"].get("affinity", {}).get("podAffinity", {})
    return affinity.get("requiredDuringSchedulingIgnoredDuringExecution", [])


def test_pods_sharing_a_read_write_once_claim_share_a_node(rendered):
    """An RWO volume attaches to one node: every pod mounting one must be sent to the node of the
    others (required podAffinity on the hostname whose selector matches all of them), and must
    match that selector itself, or the first pod would wait for a partner forever."""
    rwo = {
        c["metadata"]["name"]
        for c in rendered.of_kind("PersistentVolumeClaim")
        if c["spec"]["accessModes"] != ["ReadWriteMany"]
    }
    for claim in rwo:
        sharing = [
            w
            for w in workloads(rendered)
            if any(
                v.get("persistentVolumeClaim", {}).get("claimName") == claim
                for v in pod_template(w)["spec"].get("volumes", [])
            )
        ]
        if len(sharing) < 2 and not any(w["kind"] == "Deployment" for w in sharing):
            continue
        for w in sharing:
            terms = [t for t in _required_pod_affinity(w) if t["topologyKey"] == "kubernetes.io/hostname"]
            label = f"{w['kind']}/{w['metadata']['name']} (claim {claim})"
            assert terms, f"{label}: no required podAffinity on kubernetes.io/hostname"
            for term in terms:
                assert not term.get("namespaces") and not term.get("namespaceSelector"), label
                assert all(matches(term["labelSelector"], pod_labels(other)) for other in sharing), label
            assert "topologySpreadConstraints" not in pod_template(w)["spec"], f"{label}: spread and co-located"


def test_classifier_spreads_over_nodes_on_read_write_many(rendered):
    deploy = rendered.get("Deployment", _fullname(rendered))
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_template(deploy)["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    modes = {c["metadata"]["name"]: c["spec"]["accessModes"] for c in rendered.of_kind("PersistentVolumeClaim")}
    if any(modes[c] != ["ReadWriteMany"] for c in claims):
        return
    assert not _required_pod_affinity(deploy)
    spreads = pod_template(deploy)["spec"]["topologySpreadConstraints"]
    assert spreads and all(matches(s["labelSelector"], pod_labels(deploy)) for s in spreads)
    own = VALUES_MATRIX.get(rendered.name.removeprefix("helm:"), {}).get("topologySpreadConstraints")
    if not own:  # the chart's: over hostnames, never blocking scheduling
        assert [(s["topologyKey"], s["whenUnsatisfiable"]) for s in spreads] == [
            ("kubernetes.io/hostname", "ScheduleAnyway")
        ]


def test_spool_is_shared_but_sqlite_stays_per_pod(rendered):
    """The spool claim is mounted by the classifier only, at FC_SPOOL_DIR; the SQLite log is never
    on a claim (WAL needs one host's shared memory, which NFS-backed ReadWriteMany lacks)."""
    fullname = _fullname(rendered)
    config = rendered.get("ConfigMap", fullname)["data"]
    deploy = rendered.get("Deployment", fullname)
    spool = rendered.get("PersistentVolumeClaim", f"{fullname}-spool")
    if spool is None:
        assert _claim_at(deploy, config["FC_SPOOL_DIR"]) is None
        return
    assert _claim_at(deploy, config["FC_SPOOL_DIR"]) == spool["metadata"]["name"]
    models = rendered.get("PersistentVolumeClaim", f"{fullname}-models")
    assert spool["spec"]["accessModes"] == (
        ["ReadWriteMany"] if models["spec"]["accessModes"] == ["ReadWriteMany"] else ["ReadWriteOnce"]
    )
    users = [
        w["metadata"]["name"]
        for w in workloads(rendered)
        if any(
            v.get("persistentVolumeClaim", {}).get("claimName") == spool["metadata"]["name"]
            for v in pod_template(w)["spec"].get("volumes", [])
        )
    ]
    assert users == [fullname]
    if "FC_SQLITE_PATH" in config:
        mounts = sorted((m["mountPath"] for m in containers(deploy, init=False)[0]["volumeMounts"]), key=len)
        directory = config["FC_SQLITE_PATH"].rsplit("/", 1)[0]
        owner = [m for m in mounts if directory == m or directory.startswith(m + "/")][-1]
        assert _claim_at(deploy, owner) is None, "the SQLite file must not be on a shared claim"


def test_hpa_and_pdbs_target_existing_workloads(rendered):
    scaled = rendered.of_kind("ScaledObject")
    # One owner of the replica count: KEDA makes its own HorizontalPodAutoscaler.
    assert not (scaled and rendered.of_kind("HorizontalPodAutoscaler"))
    for obj in scaled:
        ref = obj["spec"]["scaleTargetRef"]
        target = rendered.get(ref["kind"], ref["name"])
        assert target is not None and "replicas" not in target["spec"]
        [rate] = [t for t in obj["spec"]["triggers"] if t["type"] == "prometheus"]
        query = rate["metadata"]["query"]
        for counter in ("fc_http_requests_total", "fc_grpc_requests_total"):  # HTTP requests and gRPC calls
            assert re.search(rf"\b{counter}\{{", query), query
        assert f'service="{ref["name"]}-metrics"' in query and f'namespace="{obj["metadata"]["namespace"]}"' in query
        assert rendered.get("Service", f"{ref['name']}-metrics") is not None, "KEDA reads the ServiceMonitor's series"
    for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = rendered.get(ref["kind"], ref["name"])
        assert target is not None
        assert "replicas" not in target["spec"], "a Deployment with replicas fights its HPA on every apply"
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        assert selected(rendered, pdb["spec"]["selector"]), pdb["metadata"]["name"]


def test_network_policies_let_the_right_pods_in(rendered):
    policies = rendered.of_kind("NetworkPolicy")
    if not policies:
        return
    fullname = _fullname(rendered)
    cassandra_policy = next((p for p in policies if p["metadata"]["name"] == f"{fullname}-cassandra"), None)
    [sts] = rendered.of_kind("StatefulSet") or [None]
    assert (cassandra_policy is None) == (sts is None), "a policy for Cassandra exactly when the release runs it"
    if sts is not None:
        assert matches(cassandra_policy["spec"]["podSelector"], pod_labels(sts))
        cql_sources = [
            peer["podSelector"]
            for rule in cassandra_policy["spec"]["ingress"]
            if any(p["port"] == "cql" for p in rule["ports"])
            for peer in rule["from"]
        ]
        allowed = {
            w["metadata"]["name"]
            for w in workloads(rendered)
            if any(matches(sel, pod_labels(w)) for sel in cql_sources)
        }
        assert {fullname, f"{fullname}-cassandra"} <= allowed
        assert f"{fullname}-train" not in allowed, "training does not need Cassandra"
    for policy in policies:
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                targets = selected(rendered, policy["spec"]["podSelector"])
                assert any(port["port"] in container_ports(t) for t in targets), policy["metadata"]["name"]
    # The metrics port: only from named namespaces (Prometheus's), never from anywhere.
    classifier = rendered.get("Deployment", fullname)
    metrics_rules = [
        (p, rule)
        for p in policies
        if matches(p["spec"]["podSelector"], pod_labels(classifier))
        for rule in p["spec"]["ingress"]
        if any(port["port"] == "metrics" for port in rule["ports"])
    ]
    for policy, rule in metrics_rules:
        name = policy["metadata"]["name"]
        assert rule.get("from"), f"{name}: the metrics port is open to every source"
        for peer in rule["from"]:
            assert set(peer) == {"namespaceSelector"}, f"{name}: metrics open to {peer}"
            selector, key = peer["namespaceSelector"], "kubernetes.io/metadata.name"
            named = [
                e
                for e in selector.get("matchExpressions", [])
                if e["key"] == key and e["operator"] == "In" and e["values"]
            ]
            assert key in selector.get("matchLabels", {}) or named, f"{name}: metrics open to {peer}"


def test_service_monitor_scrapes_the_classifier_service(rendered):
    fullname = _fullname(rendered)
    deploy = rendered.get("Deployment", fullname)
    for sm in rendered.of_kind("ServiceMonitor"):
        assert sm["metadata"]["labels"].get("release") == "kube-prometheus-stack"
        services = [s for s in rendered.of_kind("Service") if matches(sm["spec"]["selector"], s["metadata"]["labels"])]
        # Its own headless Service, selecting the classifier pods, on the metrics port only.
        assert [s["metadata"]["name"] for s in services] == [f"{fullname}-metrics"]
        [svc] = services
        assert svc["spec"].get("clusterIP") == "None" and svc["spec"].get("type", "ClusterIP") == "ClusterIP"
        assert matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(deploy))
        assert [p.get("targetPort") for p in svc["spec"]["ports"]] == ["metrics"]
        names = {p["name"] for p in svc["spec"]["ports"]}
        for endpoint in sm["spec"]["endpoints"]:
            assert endpoint["port"] in names
            assert endpoint["path"] == "/metrics"


def test_metrics_are_never_on_the_public_service_or_the_ingress(rendered):
    fullname = _fullname(rendered)
    metrics_port = container_ports(rendered.get("Deployment", fullname))["metrics"]
    public = rendered.get("Service", fullname)
    for port in public["spec"]["ports"]:
        assert port.get("targetPort", port["port"]) not in ("metrics", metrics_port), port
    for ingress in rendered.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == fullname and backend["port"] == {"name": "http"}, backend
    http_port = next(p["port"] for p in public["spec"]["ports"] if p["name"] == "http")
    for route in rendered.of_kind("HTTPRoute"):
        refs = [ref for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]
        assert refs == [{"name": fullname, "port": http_port}], refs


def test_service_monitors_keep_the_apps_endpoint_label(rendered):
    """The alerts, the dashboard and KEDA filter on the app's `endpoint` label, which a
    ServiceMonitor's own target label `endpoint` replaces unless honorLabels is set."""
    for monitor in rendered.of_kind("ServiceMonitor"):
        assert [e.get("honorLabels") for e in monitor["spec"]["endpoints"]] == [True], monitor["metadata"]["name"]


def test_alerts_and_dashboard_use_contract_metrics(rendered):
    for rule in rendered.of_kind("PrometheusRule"):
        assert rule["metadata"]["labels"].get("release") == "kube-prometheus-stack"
        exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
        alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
        assert {
            "FashionClassifierHighErrorRate",
            "FashionClassifierHighLatency",
            "FashionClassifierPredlogSpoolGrowing",
            "FashionClassifierModelLoadFailures",
            "FashionClassifierCandidateWorse",
            "FashionClassifierCandidateWithdrawn",
        } <= alerts
        _assert_contract_metrics(exprs)
    for cm in rendered.of_kind("ConfigMap"):
        if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            dashboard = json.loads(cm["data"]["fashion-classifier.json"])
            exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
            assert len(exprs) > 10
            _assert_contract_metrics(exprs)


def test_standard_labels_on_every_object(rendered):
    for d in rendered.docs:
        labels = d["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"):
            assert key in labels, f"{d['kind']}/{d['metadata']['name']} lacks {key}"
        if d["kind"] != "Namespace":
            assert labels.get("app.kubernetes.io/instance"), f"{d['kind']}/{d['metadata']['name']}"


def test_images_are_the_project_images_or_cassandra(rendered):
    for w in workloads(rendered):
        for c in containers(w):
            image = c["image"]
            assert re.fullmatch(r"(fashion-classifier(-train)?:[\w.-]+|cassandra:5\.0\.8)", image), image
            assert c.get("resources", {}).get("limits", {}).get("memory"), f"{c['name']}: no memory limit"


def _fullname(r: Rendered) -> str:
    return next(d["metadata"]["name"] for d in r.docs if d["kind"] == "Deployment")


def _assert_contract_metrics(exprs: list[str]) -> None:
    used = {m for e in exprs for m in re.findall(r"\bfc_[a-z_]+", e)}
    base = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert base <= CONTRACT_METRICS, f"metrics outside the contract: {sorted(base - CONTRACT_METRICS)}"
