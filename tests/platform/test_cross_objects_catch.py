"""Each cross-object check fails on a manifest broken the way it is meant to catch."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import test_cross_objects as checks
from k8s_support import Rendered


def _mutated(rendered: Rendered, mutate: Callable[[Rendered], None]) -> Rendered:
    broken = Rendered(rendered.name, rendered.text, copy.deepcopy(rendered.docs), rendered.file)
    mutate(broken)
    return broken


def _deploy(r: Rendered) -> dict:
    return r.get("Deployment", "fashion-classifier")


def _pod(r: Rendered) -> dict:
    return _deploy(r)["spec"]["template"]["spec"]


def _config(r: Rendered) -> dict:
    return r.get("ConfigMap", "fashion-classifier")["data"]


def _spec(r: Rendered, kind: str, suffix: str = "") -> dict:
    return r.get(kind, f"fashion-classifier{suffix}")["spec"]


def _port(ports: list[dict], name: str) -> dict:
    return next(p for p in ports if p["name"] == name)


def _replace_volume(r: Rendered, volume: dict) -> None:
    volumes = _pod(r)["volumes"]
    volumes[[v["name"] for v in volumes].index(volume["name"])] = volume


CASSANDRA_HOSTS_3 = ",".join(f"fashion-classifier-cassandra-{i}.fashion-classifier-cassandra" for i in range(3))


BREAKAGES = {
    "selector-mismatch": (
        checks.test_workload_selectors_match_their_pod_labels,
        lambda r: _deploy(r)["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/component": "web"}),
    ),
    "service-port-name": (
        checks.test_services_select_pods_and_target_existing_ports,
        lambda r: r.get("Service", "fashion-classifier")["spec"]["ports"][0].update(targetPort="htttp"),
    ),
    "service-selects-nothing": (
        checks.test_services_select_pods_and_target_existing_ports,
        lambda r: r.get("Service", "fashion-classifier")["spec"]["selector"].update(
            {"app.kubernetes.io/component": "api"}
        ),
    ),
    "mount-without-volume": (
        checks.test_every_volume_mount_has_a_volume_and_every_volume_is_used,
        lambda r: _pod(r)["volumes"].pop(),
    ),
    "claim-missing": (
        checks.test_claims_exist,
        lambda r: _pod(r)["volumes"][0]["persistentVolumeClaim"].update(claimName="models"),
    ),
    "secret-key-missing": (
        checks.test_config_maps_secrets_and_service_accounts_exist,
        lambda r: r.get("Secret", "fashion-classifier-cassandra-app")["data"].clear(),
    ),
    "service-account-missing": (
        checks.test_config_maps_secrets_and_service_accounts_exist,
        lambda r: _pod(r).update(serviceAccountName="classifier"),
    ),
    "statefulset-service-not-headless": (
        checks.test_statefulset_service_is_headless_and_selects_it,
        lambda r: _spec(r, "Service", "-cassandra").pop("clusterIP"),
    ),
    "host-beyond-replicas": (
        checks.test_cassandra_hosts_and_seeds_are_statefulset_pods,
        lambda r: _config(r).update(FC_CASSANDRA_HOSTS=CASSANDRA_HOSTS_3),
    ),
    "replication-above-replicas": (
        checks.test_cassandra_hosts_and_seeds_are_statefulset_pods,
        lambda r: _config(r).update(FC_CASSANDRA_REPLICATION="3"),
    ),
    "scrape-port": (
        checks.test_probes_and_scrape_annotations_point_at_real_ports,
        lambda r: _deploy(r)["spec"]["template"]["metadata"]["annotations"].update({"prometheus.io/port": "9090"}),
    ),
    "probe-port": (
        checks.test_probes_and_scrape_annotations_point_at_real_ports,
        lambda r: _pod(r)["containers"][0]["readinessProbe"]["httpGet"].update(port="health"),
    ),
    "model-volume-writable": (
        checks.test_classifier_contract,
        lambda r: _pod(r)["containers"][0]["volumeMounts"][0].pop("readOnly"),
    ),
    "hpa-and-replicas": (
        checks.test_hpa_and_pdbs_target_existing_workloads,
        lambda r: _deploy(r)["spec"].update(replicas=2),
    ),
    "training-reaches-cassandra": (
        checks.test_network_policies_let_the_right_pods_in,
        lambda r: _spec(r, "Job", "-train")["template"]["metadata"]["labels"].update(
            {"fashion-classifier/cassandra-client": "true"}
        ),
    ),
    "service-monitor-port": (
        checks.test_service_monitor_scrapes_the_classifier_service,
        lambda r: _spec(r, "ServiceMonitor")["endpoints"][0].update(port="http"),
    ),
    "service-monitor-on-public-service": (
        checks.test_service_monitor_scrapes_the_classifier_service,
        lambda r: _spec(r, "ServiceMonitor")["selector"]["matchLabels"].update(
            {"app.kubernetes.io/component": "classifier"}
        ),
    ),
    "metrics-on-public-service": (
        checks.test_metrics_are_never_on_the_public_service_or_the_ingress,
        lambda r: _spec(r, "Service")["ports"].append({"name": "metrics", "port": 9464, "targetPort": "metrics"}),
    ),
    "metrics-open-to-all": (
        checks.test_network_policies_let_the_right_pods_in,
        lambda r: _spec(r, "NetworkPolicy")["ingress"][1].pop("from"),
    ),
    "metrics-open-to-every-namespace": (
        checks.test_network_policies_let_the_right_pods_in,
        lambda r: _spec(r, "NetworkPolicy")["ingress"][1]["from"][0]["namespaceSelector"].update(matchExpressions=[]),
    ),
    "scrape-annotation-on-http": (
        checks.test_classifier_contract,
        lambda r: _deploy(r)["spec"]["template"]["metadata"]["annotations"].update({"prometheus.io/port": "8000"}),
    ),
    "alert-on-unknown-metric": (
        checks.test_alerts_and_dashboard_use_contract_metrics,
        lambda r: r.get("PrometheusRule", "fashion-classifier")["spec"]["groups"][0]["rules"][0].update(
            expr="rate(fc_http_errors_total[5m]) > 1"
        ),
    ),
    "unlabelled-object": (
        checks.test_standard_labels_on_every_object,
        lambda r: r.get("Service", "fashion-classifier")["metadata"]["labels"].pop("app.kubernetes.io/part-of"),
    ),
    "no-memory-limit": (
        checks.test_images_are_the_project_images_or_cassandra,
        lambda r: _pod(r)["containers"][0]["resources"].pop("limits"),
    ),
    "training-job-free-to-roam": (
        checks.test_pods_sharing_a_read_write_once_claim_share_a_node,
        lambda r: _spec(r, "Job", "-train")["template"]["spec"].pop("affinity"),
    ),
    "training-job-unmatched": (
        checks.test_pods_sharing_a_read_write_once_claim_share_a_node,
        lambda r: _spec(r, "Job", "-train")["template"]["metadata"]["labels"].pop("fashion-classifier.dev/rwo-volumes"),
    ),
    "rwx-without-spread": (
        checks.test_classifier_spreads_over_nodes_on_read_write_many,
        lambda r: [c["spec"].update(accessModes=["ReadWriteMany"]) for c in r.of_kind("PersistentVolumeClaim")],
    ),
    "spool-on-emptydir": (
        checks.test_spool_is_shared_but_sqlite_stays_per_pod,
        lambda r: _replace_volume(r, {"name": "spool", "emptyDir": {}}),
    ),
    "grpc-setting-not-the-port": (
        checks.test_grpc_port_is_the_setting_on_the_pods_the_service_and_the_policy,
        lambda r: _config(r).update(FC_GRPC_PORT="8082"),
    ),
    "grpc-service-port-without-h2c": (
        checks.test_grpc_port_is_the_setting_on_the_pods_the_service_and_the_policy,
        lambda r: _port(_spec(r, "Service")["ports"], "grpc").pop("appProtocol"),
    ),
    "grpc-not-admitted": (
        checks.test_grpc_port_is_the_setting_on_the_pods_the_service_and_the_policy,
        lambda r: _spec(r, "NetworkPolicy")["ingress"][0]["ports"].pop(),
    ),
    "grpc-off-but-exposed": (
        checks.test_grpc_port_is_the_setting_on_the_pods_the_service_and_the_policy,
        lambda r: _config(r).update(FC_GRPC_PORT="0"),
    ),
    "sqlite-on-the-shared-claim": (
        checks.test_spool_is_shared_but_sqlite_stays_per_pod,
        lambda r: _config(r).update(FC_SQLITE_PATH="/var/lib/fashion-classifier/spool/log.sqlite3"),
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_check_catches(render_chart, breakage):
    check, mutate = BREAKAGES[breakage]
    good = render_chart({}, name="defaults")
    check(good)
    with pytest.raises(AssertionError):
        check(_mutated(good, mutate))
