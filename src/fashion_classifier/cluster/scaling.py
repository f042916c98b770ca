"""Scaling the classifier Deployment of a release, with its HorizontalPodAutoscaler (the chart's or KEDA's) in mind.

While the chart's HPA exists it owns the replica count: a count outside its min..max would be
undone at its next sync, so that is refused with the way out; inside the range it is applied and
the HPA may still move it later (said once, so nobody is surprised).
"""

from __future__ import annotations

from typing import Any

from fashion_classifier.cluster.connect import Cluster
from fashion_classifier.cluster.errors import NotFound, Refused
from fashion_classifier.cluster.follow import Emit
from fashion_classifier.cluster.release import Release
from fashion_classifier.cluster.waiting import wait_for


def _autoscaler(cluster: Cluster, release: Release, deployment: str) -> Any | None:
    for name in release.autoscalers(deployment):
        try:
            return cluster.call(
                f"read HorizontalPodAutoscaler {name}",
                cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler,
                name,
                release.namespace,
            )
        except NotFound:
            continue
    return None


def scale(
    cluster: Cluster, release: Release, replicas: int, emit: Emit, wait: bool = True, timeout: float = 300
) -> int:
    """Set the classifier's replica count; with ``wait``, until that many pods are ready. Returns it."""
    name, ns = release.deployment_name, release.namespace
    hpa = _autoscaler(cluster, release, name)
    if hpa is not None:
        low, high = hpa.spec.min_replicas or 1, hpa.spec.max_replicas
        if not low <= replicas <= high:
            raise Refused(
                f"the HorizontalPodAutoscaler {hpa.metadata.name} keeps {name} between {low} and {high} "
                f"replicas and would undo {replicas}: helm upgrade {release.name} ... "
                f"--set autoscaling.minReplicas=...,autoscaling.maxReplicas=... (or autoscaling.enabled=false)"
            )
        emit(f"note: the HorizontalPodAutoscaler {hpa.metadata.name} ({low}-{high}) may change the count later")
    cluster.call(
        f"scale Deployment {name}",
        cluster.apps.patch_namespaced_deployment_scale,
        name,
        ns,
        {"spec": {"replicas": replicas}},
    )
    emit(f"deployment {name}: scaled to {replicas}")
    if not wait:
        return replicas

    def ready() -> int | None:
        d = cluster.call(f"read Deployment {name}", cluster.apps.read_namespaced_deployment, name, ns)
        s = d.status
        if (s.ready_replicas or 0) == replicas and (s.replicas or 0) == replicas and d.spec.replicas == replicas:
            return replicas
        return None

    wait_for(ready, timeout, f"{replicas} ready pods of deployment {name}")
    emit(f"deployment {name}: {replicas}/{replicas} ready")
    return replicas
