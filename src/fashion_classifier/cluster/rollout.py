"""Rolling the classifier Deployment: optionally restart its pods, then wait for the rollout.

Without ``restart`` this waits for whatever rollout is in progress (after a ``helm upgrade``,
say) like ``kubectl rollout status``; with it, it first stamps the pod template the way
``kubectl rollout restart`` does, so every pod is replaced (one at a time: maxUnavailable 0).
New model versions need no restart: the pods hot-reload them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fashion_classifier.cluster.connect import Cluster
from fashion_classifier.cluster.follow import Emit
from fashion_classifier.cluster.release import Release
from fashion_classifier.cluster.waiting import wait_for

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@dataclass(frozen=True)
class Rollout:
    deployment: str
    revision: str
    replicas: int
    restarted: bool


def rollout(cluster: Cluster, release: Release, emit: Emit, restart: bool = False, timeout: float = 600) -> Rollout:
    name, ns = release.deployment_name, release.namespace
    if restart:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
        cluster.call(f"restart Deployment {name}", cluster.apps.patch_namespaced_deployment, name, ns, patch)
        emit(f"deployment {name}: restart requested at {now}")
    last: list[str] = []

    def done() -> Rollout | None:
        d = cluster.call(f"read Deployment {name}", cluster.apps.read_namespaced_deployment, name, ns)
        s, want = d.status, d.spec.replicas or 0
        progress = (
            f"{s.updated_replicas or 0}/{want} updated, {s.ready_replicas or 0} ready, {s.replicas or 0} in total"
        )
        if progress not in last:
            last.append(progress)
            emit(f"deployment {name}: {progress}")
        finished = (
            (s.observed_generation or 0) >= d.metadata.generation
            and (s.updated_replicas or 0) == want
            and (s.replicas or 0) == want
            and (s.available_replicas or 0) == want
        )
        if not finished:
            return None
        revision = (d.metadata.annotations or {}).get("deployment.kubernetes.io/revision", "?")
        return Rollout(name, revision, want, restart)

    return wait_for(done, timeout, f"the rollout of deployment {name}")
