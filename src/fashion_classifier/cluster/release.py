"""A Helm release as Helm itself recorded it: its values, and every object it rendered, hooks included.

Helm 3 keeps each revision in a Secret of type ``helm.sh/release.v1`` labelled
``owner=helm,name=<release>``: ``data.release`` is base64 (Kubernetes) of base64 (Helm) of gzip of
the release JSON. Reading it tells the cluster commands the release's real object names and the
training Job exactly as the chart rendered it for that release, with no chart or values at hand.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from typing import Any

from fashion_classifier.cluster.connect import Cluster
from fashion_classifier.cluster.errors import NotFound, ReleaseNotFound

COMPONENT = "app.kubernetes.io/component"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    revision: int
    status: str
    chart: str
    app_version: str
    values: dict[str, Any]
    objects: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[dict[str, Any]] = field(default_factory=list)

    def find(self, kind: str, component: str | None = None, include_hooks: bool = False) -> dict[str, Any] | None:
        """The first rendered object of ``kind`` (and ``app.kubernetes.io/component``), or None."""
        for obj in self.objects + (self.hooks if include_hooks else []):
            if obj.get("kind") != kind:
                continue
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if component is None or labels.get(COMPONENT) == component:
                return obj
        return None

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj.get("kind") == kind]

    def autoscalers(self, deployment: str) -> list[str]:
        """Names of the HorizontalPodAutoscalers that own ``deployment``'s replica count: the
        release's own, and the one KEDA makes for each of its ScaledObjects (``keda-hpa-<name>``
        unless the ScaledObject names it)."""
        names = [
            obj["metadata"]["name"]
            for obj in self.all("HorizontalPodAutoscaler")
            if obj["spec"]["scaleTargetRef"].get("name") == deployment
        ]
        for obj in self.all("ScaledObject"):
            if obj["spec"]["scaleTargetRef"].get("name") == deployment:
                advanced = obj["spec"].get("advanced") or {}
                named = (advanced.get("horizontalPodAutoscalerConfig") or {}).get("name")
                names.append(named or f"keda-hpa-{obj['metadata']['name']}")
        return names

    @property
    def deployment_name(self) -> str:
        deployment = self.find("Deployment", "classifier")
        if deployment is None:
            raise NotFound(
                f"release {self.name!r} has no classifier Deployment: is it a fashion-classifier release "
                f"(chart {self.chart})?"
            )
        return str(deployment["metadata"]["name"])


def decode(data: str | bytes) -> dict[str, Any]:
    """The release JSON from a Secret's ``data.release`` (still base64-encoded by Kubernetes)."""
    raw = base64.b64decode(base64.b64decode(data))
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def _parse_manifests(text: str) -> list[dict[str, Any]]:
    import yaml  # a dependency of the kubernetes client, so present whenever a cluster is

    return [doc for doc in yaml.safe_load_all(text or "") if isinstance(doc, dict)]


def from_record(record: dict[str, Any], namespace: str) -> Release:
    chart = record.get("chart") or {}
    meta = chart.get("metadata") or {}
    hooks: list[dict[str, Any]] = []
    for hook in record.get("hooks") or []:
        hooks.extend(_parse_manifests(hook.get("manifest", "")))
    return Release(
        name=record["name"],
        namespace=record.get("namespace") or namespace,
        revision=int(record.get("version", 0)),
        status=(record.get("info") or {}).get("status", "unknown"),
        chart=f"{meta.get('name', '?')}-{meta.get('version', '?')}",
        app_version=str(meta.get("appVersion", "")),
        values=record.get("config") or {},
        objects=_parse_manifests(record.get("manifest", "")),
        hooks=hooks,
    )


def load(cluster: Cluster, namespace: str, name: str) -> Release:
    """The release's current revision: the newest deployed one, else the newest of any status."""
    secrets = cluster.call(
        f"read Helm release {name!r} (secrets in namespace {namespace!r})",
        cluster.core.list_namespaced_secret,
        namespace,
        label_selector=f"owner=helm,name={name}",
    ).items
    records = [s for s in secrets if s.type == "helm.sh/release.v1" and s.data and "release" in s.data]
    if not records:
        raise ReleaseNotFound(
            f"release {name!r} not found in namespace {namespace!r} "
            f"(helm list -n {namespace}; or pass --release/--namespace)"
        )

    def revision(secret: Any) -> int:
        return int((secret.metadata.labels or {}).get("version", "0"))

    deployed = [s for s in records if (s.metadata.labels or {}).get("status") == "deployed"]
    newest = max(deployed or records, key=revision)
    return from_record(decode(newest.data["release"]), namespace)
