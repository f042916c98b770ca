"""A training Job for a release, made from the training Job the chart rendered for that release.

Starting from the release's own rendered Job (see :mod:`release`) keeps everything the chart and
the user's values decided: image, service account, security contexts, resources, node placement,
the ConfigMap, the model-store claim. Only these change:

- a new name (``<fullname>-train-<UTC time>``) and no Helm hook annotations: the Job belongs to
  no release revision, so ``helm upgrade``/``uninstall`` neither replace nor delete it;
- ``--arch``/``--epochs`` on the ``fashion-classifier train`` command line when given;
- the command is wrapped in ``sh -c`` so that, on success, the store's ``CURRENT`` (the version
  just published) is copied to the container's termination message: the kubelet puts it in the
  pod status, where the cluster command reads it even when logs are gone or not allowed (on
  failure, the log's tail takes its place);
- extra labels, on the Job and its pod; the retry count (``backoffLimit``) when given.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from fashion_classifier.cluster.errors import NotFound
from fashion_classifier.cluster.release import Release
from fashion_classifier.config import DEFAULT_ARCHITECTURE

MANAGED_BY = "fashion-classifier-cli"
CREATED_BY = "fashion-classifier.dev/created-by"
DEFAULT_MODEL_DIR = "/models"
# Runs the chart's command, then records the published version where the pod status shows it.
WRAPPER = (
    'fashion-classifier "$@" || exit $?\n'
    'cat "${FC_TRAIN_MODEL_DIR}/CURRENT" > /dev/termination-log 2>/dev/null || true\n'
)


def _train_args(container: dict[str, Any]) -> list[str]:
    """The arguments after ``fashion-classifier`` in the chart's command (``train ...``)."""
    command = list(container.get("command") or []) + list(container.get("args") or [])
    if command[:2] == ["sh", "-c"]:
        raise NotFound("the release's training Job runs a shell command, not `fashion-classifier train`")
    if not command or not command[0].endswith("fashion-classifier") or "train" not in command:
        raise NotFound(f"the release's training Job does not run `fashion-classifier train` ({command})")
    return command[1:]


def _set_option(args: list[str], option: str, value: str) -> list[str]:
    out = list(args)
    if option in out:
        i = out.index(option)
        out[i + 1 : i + 2] = [value]
    else:
        out += [option, value]
    return out


def _option(args: list[str], option: str, default: str) -> str:
    return args[args.index(option) + 1] if option in args and args.index(option) + 1 < len(args) else default


def build_job(
    release: Release,
    arch: str | None = None,
    epochs: int | None = None,
    labels: dict[str, str] | None = None,
    retries: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Job manifest (a dict for the API) of a new training run of ``release``."""
    template = release.find("Job", "training", include_hooks=True)
    if template is None:
        raise NotFound(
            f"release {release.name!r} renders no training Job (training.enabled is false): "
            f"helm upgrade {release.name} ... --set training.enabled=true"
        )
    job = copy.deepcopy(template)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    base = str(job["metadata"]["name"])
    # Job names end up in the pods' job-name label: at most 63 characters.
    job["metadata"]["name"] = f"{base[: 63 - len(stamp) - 1]}-{stamp}"
    meta = job["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("helm.sh/")}
    annotations[CREATED_BY] = "fashion-classifier cluster train"
    meta["annotations"] = annotations
    meta["namespace"] = release.namespace
    meta["labels"] = {**(meta.get("labels") or {}), "app.kubernetes.io/managed-by": MANAGED_BY, **(labels or {})}

    if retries is not None:
        job["spec"]["backoffLimit"] = retries
    pod = job["spec"]["template"]
    pod.setdefault("metadata", {})
    pod["metadata"]["labels"] = {**(pod["metadata"].get("labels") or {}), **(labels or {})}
    containers = pod["spec"]["containers"]
    container = next((c for c in containers if c.get("name") == "train"), containers[0])
    args = _train_args(container)
    if arch:
        args = _set_option(args, "--arch", arch)
    if epochs is not None:
        args = _set_option(args, "--epochs", str(epochs))
    container.pop("args", None)
    container["command"] = ["sh", "-c", WRAPPER, "fashion-classifier", *args]
    env = [e for e in container.get("env") or [] if e.get("name") != "FC_TRAIN_MODEL_DIR"]
    env.append({"name": "FC_TRAIN_MODEL_DIR", "value": _option(args, "--model-dir", DEFAULT_MODEL_DIR)})
    container["env"] = env
    container["terminationMessagePath"] = "/dev/termination-log"
    # On failure the file is empty, so the kubelet uses the log's tail instead: the error.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return job


def describe(job: dict[str, Any]) -> str:
    """``arch mlp, epochs 3`` from a Job made by :func:`build_job`."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = container["command"][4:]
    return f"arch {_option(args, '--arch', DEFAULT_ARCHITECTURE)}, epochs {_option(args, '--epochs', 'default')}"
