"""``cluster cassandra-repair``: ``nodetool repair -pr`` on every node of a Cassandra StatefulSet.

With replication factor 2 and writes at LOCAL_ONE, a replica that was down for longer than the
hint window (3 h) misses writes until a repair; deletes need one within ``gc_grace_seconds`` (10
days). ``-pr`` repairs only each node's primary ranges, so one pass over all nodes repairs every
range once. Nodes are repaired one after another (a repair streams between replicas, and two at
once would double the load). The chart's CronJob runs this with a ServiceAccount that may only read
the StatefulSet and exec into its pods.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fashion_classifier.cluster.connect import Cluster
from fashion_classifier.cluster.errors import OperationFailed

CONTAINER = "cassandra"
ERROR_CHANNEL = 3  # of the exec protocol: where the API server sends the Status of the command
# nodetool is a JVM: the image's default heap (a quarter of the node's memory) would not fit the
# container's limit next to Cassandra's own.
COMMAND = ["/bin/bash", "-c", 'MAX_HEAP_SIZE=128M HEAP_NEWSIZE=32M exec nodetool repair -pr "$@"', "repair"]


def repair(
    cluster: Cluster, namespace: str, statefulset: str, keyspaces: list[str], emit: Callable[[str], None]
) -> None:
    """Repair each pod's primary ranges in turn; OperationFailed names the pods that failed."""
    sts = cluster.call(
        f"read StatefulSet {statefulset}", cluster.apps.read_namespaced_stateful_set, statefulset, namespace
    )
    replicas = int(sts.spec.replicas or 0)
    failed = []
    for index in range(replicas):
        pod = f"{statefulset}-{index}"
        emit(f"{pod}: nodetool repair -pr {' '.join(keyspaces)}".rstrip())
        code = _exec(cluster, namespace, pod, [*COMMAND, *keyspaces], emit)
        emit(f"{pod}: {'repaired' if code == 0 else f'failed (exit code {code})'}")
        if code != 0:
            failed.append(pod)
    if failed:
        raise OperationFailed(f"repair failed on {', '.join(failed)} (of {replicas} pods)")
    emit(f"repaired the primary ranges of all {replicas} pods of {statefulset}")


def _exec(cluster: Cluster, namespace: str, pod: str, command: list[str], emit: Callable[[str], None]) -> int:
    """Run ``command`` in the pod's Cassandra container, streaming its output; its exit code."""
    from kubernetes.stream import stream

    resp = cluster.call(
        f"exec into pod {pod}",
        stream,
        cluster.core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container=CONTAINER,
        command=command,
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    try:
        while True:
            running = resp.is_open()
            if running:
                resp.update(timeout=5)
            for text in (
                resp.read_stdout() if resp.peek_stdout() else "",
                resp.read_stderr() if resp.peek_stderr() else "",
            ):
                for line in text.splitlines():
                    emit(f"  {line}")
            if not running:  # and what arrived with the close has been shown
                break
        status = json.loads(resp.read_channel(ERROR_CHANNEL) or "{}")  # exec's outcome, a Status object
    finally:
        resp.close()
    code = exit_code(status)
    if code == -1 and status.get("message"):
        emit(f"  {status['message']}")
    return code


def exit_code(status: dict) -> int:
    """The exit code in the Status object of exec's error channel (-1 when it has none, e.g. no container)."""
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                break
    return -1
