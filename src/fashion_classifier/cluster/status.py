"""What a release looks like in the cluster right now, as a list of lines.

Objects are looked up by the names the release itself rendered (see :mod:`release`), so a
``fullnameOverride`` or another release name needs nothing special. The model version each
classifier pod serves is asked from the pod (``/v2/models/<name>``) through the API server's pod
proxy; a pod that cannot be reached that way (no ``pods/proxy`` permission, a fake node) is shown
as such instead of failing the command.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fashion_classifier.cluster.connect import Cluster
from fashion_classifier.cluster.errors import ClusterError, NotFound
from fashion_classifier.cluster.release import Release

SERVING_PORT = 8000
DEFAULT_MODEL_NAME = "fashion"


@dataclass
class PodLine:
    name: str
    phase: str
    ready: bool
    node: str
    model_version: str = "-"


@dataclass
class ReleaseStatus:
    release: Release
    lines: list[str] = field(default_factory=list)
    classifier_pods: list[PodLine] = field(default_factory=list)
    cassandra_pods: list[PodLine] = field(default_factory=list)


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _pods(cluster: Cluster, namespace: str, selector: dict[str, str]) -> list[PodLine]:
    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    items = cluster.call(
        f"list pods in namespace {namespace!r}",
        cluster.core.list_namespaced_pod,
        namespace,
        label_selector=label_selector,
    ).items
    return sorted(
        (PodLine(p.metadata.name, p.status.phase or "Unknown", _ready(p), p.spec.node_name or "-") for p in items),
        key=lambda line: line.name,
    )


def _model_name(release: Release) -> str:
    # The classifier's settings ConfigMap has the Deployment's name (the chart's fullname).
    name = release.deployment_name
    configmap = next((c for c in release.all("ConfigMap") if c["metadata"]["name"] == name), {})
    return str((configmap.get("data") or {}).get("FC_MODEL_NAME", DEFAULT_MODEL_NAME))


def _served_version(cluster: Cluster, namespace: str, pod: str, model: str) -> str:
    try:
        # Raw bytes: with its content preloaded, the client turns a JSON answer into the repr of
        # a Python dict (single quotes), which is no longer JSON.
        response = cluster.call(
            f"ask pod {pod} for its model",
            cluster.core.connect_get_namespaced_pod_proxy_with_path,
            f"{pod}:{SERVING_PORT}",
            namespace,
            f"v2/models/{model}",
            _request_timeout=3,
            _preload_content=False,
        )
    except ClusterError:
        return "unknown (pod not reachable through the API server)"
    try:
        versions = json.loads(response.data)["versions"]
        return ",".join(versions) or "none loaded"
    except (ValueError, KeyError, TypeError, AttributeError):
        return "unknown (unexpected answer)"


def _workload(cluster: Cluster, kind: str, name: str, namespace: str) -> Any | None:
    read = {
        "Deployment": cluster.apps.read_namespaced_deployment,
        "StatefulSet": cluster.apps.read_namespaced_stateful_set,
    }[kind]
    try:
        return cluster.call(f"read {kind} {name}", read, name, namespace)
    except NotFound:
        return None


def collect(cluster: Cluster, release: Release, model_versions: bool = True) -> ReleaseStatus:
    ns = release.namespace
    status = ReleaseStatus(release)
    out = status.lines
    out.append(
        f"release {release.name} (namespace {ns}): revision {release.revision}, {release.status}, "
        f"chart {release.chart}, app {release.app_version}"
    )
    for kind in ("Deployment", "StatefulSet"):
        for obj in release.all(kind):
            name = obj["metadata"]["name"]
            live = _workload(cluster, kind, name, ns)
            if live is None:
                out.append(f"{kind.lower()} {name}: missing")
                continue
            s = live.status
            out.append(
                f"{kind.lower()} {name}: {s.ready_replicas or 0}/{live.spec.replicas} ready, "
                f"{s.updated_replicas or 0} up to date, {s.available_replicas or 0} available"
                if kind == "Deployment"
                else f"{kind.lower()} {name}: {s.ready_replicas or 0}/{live.spec.replicas} ready"
            )
    classifier = release.find("Deployment", "classifier")
    for name in release.autoscalers(classifier["metadata"]["name"]) if classifier else []:
        try:
            hpa = cluster.call(
                f"read HorizontalPodAutoscaler {name}",
                cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler,
                name,
                ns,
            )
            out.append(
                f"autoscaler {name}: {hpa.spec.min_replicas}-{hpa.spec.max_replicas} replicas, "
                f"currently {hpa.status.current_replicas}, desired {hpa.status.desired_replicas}"
            )
        except NotFound:
            out.append(f"autoscaler {name}: missing")
    for obj in release.all("PodDisruptionBudget"):
        name = obj["metadata"]["name"]
        try:
            pdb = cluster.call(
                f"read PodDisruptionBudget {name}", cluster.policy.read_namespaced_pod_disruption_budget, name, ns
            )
            out.append(
                f"disruption budget {name}: {pdb.status.current_healthy}/{pdb.status.expected_pods} "
                f"healthy, {pdb.status.disruptions_allowed} disruptions allowed"
            )
        except NotFound:
            out.append(f"disruption budget {name}: missing")
    for obj in release.all("Service"):
        name = obj["metadata"]["name"]
        # EndpointSlices, not the Endpoints API (deprecated since 1.33).
        slices = cluster.call(
            f"list the EndpointSlices of Service {name}",
            cluster.discovery.list_namespaced_endpoint_slice,
            ns,
            label_selector=f"kubernetes.io/service-name={name}",
        ).items
        ready = sum(1 for s in slices for e in s.endpoints or [] if e.conditions and e.conditions.ready)
        out.append(f"service {name}: {ready} ready endpoint{'s' if ready != 1 else ''}")

    deployment = release.find("Deployment", "classifier")
    if deployment is not None:
        selector = deployment["spec"]["selector"]["matchLabels"]
        status.classifier_pods = _pods(cluster, ns, selector)
        if model_versions and status.classifier_pods:
            model = _model_name(release)
            with ThreadPoolExecutor(max_workers=8) as pool:
                versions = pool.map(lambda p: _served_version(cluster, ns, p.name, model), status.classifier_pods)
                for pod, version in zip(status.classifier_pods, versions, strict=True):
                    pod.model_version = version
    cassandra = release.find("StatefulSet", "cassandra")
    if cassandra is not None:
        status.cassandra_pods = _pods(cluster, ns, cassandra["spec"]["selector"]["matchLabels"])
    for title, pods, show_model in (
        ("classifier pods", status.classifier_pods, model_versions),
        ("cassandra pods", status.cassandra_pods, False),
    ):
        if deployment is None and title.startswith("classifier"):
            continue
        if title.startswith("cassandra") and cassandra is None:
            continue
        out.append(f"{title}: {len(pods)}")
        for pod in pods:
            line = f"  {pod.name}  {pod.phase}{'' if pod.ready else ' (not ready)'}  node {pod.node}"
            out.append(line + (f"  model {pod.model_version}" if show_model else ""))
    return status
