"""A Job that runs one ``fashion-classifier model ...`` command on a release's model store.

The classifier pods mount the store read-only, so a rollout move (canary, shadow, promote,
rollback, guard) runs in a pod of its own, made from the release's rendered classifier pod: same
image, service account, security contexts, settings (the ConfigMap and the Cassandra
credentials, which ``report`` and ``guard`` read the log with), node placement (a ReadWriteOnce
store is mounted where the classifier pods run). Only these change:

- one container running the command, with the store mounted writable at /models and an
  emptyDir at /tmp (the spool of a log it reads);
- no init containers, ports, probes or other volumes;
- the component label ``model-command``: no Service ever selects the pod;
- a name ``<fullname>-model-<UTC time>``, no retries, and removal 10 minutes after it ends.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from fashion_classifier.cluster.errors import NotFound
from fashion_classifier.cluster.release import COMPONENT, Release
from fashion_classifier.cluster.training import CREATED_BY, MANAGED_BY

MODEL_DIR = "/models"
COMPONENT_VALUE = "model-command"
# Actions that act on the store (they take --model-dir); report reads the log only.
STORE_ACTIONS = ("canary", "shadow", "promote", "rollback", "status", "guard")
# The classifier's variables this pod sets itself or has no use for (the API token's file is not mounted).
_OWN_ENV = ("FC_API_TOKEN_FILE", "FC_SPOOL_DIR", "HOME")


def build_job(release: Release, args: list[str], now: datetime | None = None) -> dict[str, Any]:
    """The Job manifest of ``fashion-classifier model ARGS...`` on ``release``'s store."""
    deployment = release.find("Deployment", "classifier")
    if deployment is None:
        raise NotFound(f"release {release.name!r} renders no classifier Deployment")
    pod = copy.deepcopy(deployment["spec"]["template"])
    spec = pod["spec"]
    source = next((c for c in spec["containers"] if c.get("name") == "classifier"), spec["containers"][0])
    store = next((v for v in spec.get("volumes", []) if v["name"] == "models"), None)
    if store is None:
        raise NotFound(f"release {release.name!r}'s classifier pods mount no model store")
    command = ["fashion-classifier", "model", *args]
    if args and args[0] in STORE_ACTIONS:
        command += ["--model-dir", MODEL_DIR]
    container = {
        "name": "model",
        "image": source["image"],
        "imagePullPolicy": source.get("imagePullPolicy", "IfNotPresent"),
        "command": command,
        "envFrom": source.get("envFrom", []),
        "env": [
            *(e for e in source.get("env", []) if e["name"] not in _OWN_ENV),
            # The root filesystem is read-only: the log's spool (report, guard) goes to /tmp.
            {"name": "FC_SPOOL_DIR", "value": "/tmp/spool"},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "securityContext": source.get("securityContext", {}),
        "volumeMounts": [{"name": "models", "mountPath": MODEL_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec.update(
        containers=[container],
        volumes=[store, {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        restartPolicy="Never",
    )
    spec.pop("initContainers", None)
    labels = dict(pod.get("metadata", {}).get("labels") or {})
    labels[COMPONENT] = COMPONENT_VALUE
    pod["metadata"] = {"labels": labels}
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    base = str(deployment["metadata"]["name"])
    name = f"{base[: 63 - len(stamp) - 7]}-model-{stamp}"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": release.namespace,
            "labels": {
                **{k: v for k, v in labels.items() if k.startswith("app.kubernetes.io/")},
                "app.kubernetes.io/managed-by": MANAGED_BY,
            },
            "annotations": {CREATED_BY: f"fashion-classifier cluster model {' '.join(args[:1])}".strip()},
        },
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 600, "template": pod},
    }
