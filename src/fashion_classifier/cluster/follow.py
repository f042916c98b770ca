"""Following a Job to its end: pod phases as they change, the training logs, the outcome.

Logs come from the kubelet through the API server. When they cannot be had (no permission for
``pods/log``, a node without a reachable kubelet such as kwok's fake nodes, a pod already gone),
that is reported once per pod and following goes on: the Job's status decides the outcome, the
logs only show progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fashion_classifier.cluster.connect import Cluster
from fashion_classifier.cluster.errors import ClusterError, OperationFailed

Emit = Callable[[str], None]


@dataclass(frozen=True)
class JobOutcome:
    name: str
    succeeded: bool
    seconds: float
    reason: str
    model_version: str | None
    logs_seen: bool


class LogFollower(threading.Thread):
    """Streams one container's log lines to ``emit``; says once why when there are none."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, container: str, emit: Emit) -> None:
        super().__init__(daemon=True, name=f"logs-{pod}")
        self.cluster, self.namespace, self.pod, self.container, self.emit = cluster, namespace, pod, container, emit
        self.lines = 0

    def run(self) -> None:
        try:
            # A day of read timeout: a training epoch can print nothing for minutes.
            response = self.cluster.call(
                f"read the logs of pod {self.pod}",
                self.cluster.core.read_namespaced_pod_log,
                self.pod,
                self.namespace,
                container=self.container,
                follow=True,
                _preload_content=False,
                _request_timeout=(self.cluster.timeout, 86400),
            )
            pending = b""
            for chunk in response.stream(4096):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._line(line)
            if pending:
                self._line(pending)
            response.release_conn()
        except ClusterError as exc:
            self.emit(f"logs of pod {self.pod} unavailable: {_short(str(exc))}")
        except Exception as exc:  # a broken stream must not end the follow: the Job status decides
            self.emit(f"logs of pod {self.pod} interrupted: {_short(str(exc))}")
        else:
            if self.lines == 0:
                self.emit(f"logs of pod {self.pod} unavailable: the container wrote none")

    def _line(self, raw: bytes) -> None:
        self.lines += 1
        self.emit(f"  | {raw.decode('utf-8', 'replace').rstrip()}")


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _condition(job: Any, kind: str) -> Any | None:
    for cond in job.status.conditions or []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def _pod_summary(pod: Any) -> str:
    phase = pod.status.phase or "Unknown"
    detail = ""
    for cond in pod.status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            detail = f" ({cond.reason}: {cond.message})"
    for status in pod.status.container_statuses or []:
        waiting = status.state and status.state.waiting
        terminated = status.state and status.state.terminated
        if waiting and waiting.reason:
            detail = f" ({waiting.reason})"
        if terminated:
            detail = f" (exit code {terminated.exit_code}{', ' + terminated.reason if terminated.reason else ''})"
    return f"{phase}{detail}"


def _termination(pod: Any) -> tuple[int | None, str | None]:
    for status in pod.status.container_statuses or []:
        terminated = status.state and status.state.terminated
        if terminated:
            return terminated.exit_code, (terminated.message or "").strip() or None
    return None, None


def follow_job(
    cluster: Cluster,
    namespace: str,
    name: str,
    emit: Emit,
    timeout: float,
    follow_logs: bool = True,
    interval: float = 1.0,
) -> JobOutcome:
    """Report the Job's pods until it completes or fails; OperationFailed after ``timeout`` s."""
    start = time.monotonic()
    phases: dict[str, str] = {}
    followers: dict[str, LogFollower] = {}
    while True:
        job = cluster.call(f"read Job {name}", cluster.batch.read_namespaced_job, name, namespace)
        pods = cluster.call(
            f"list the pods of Job {name}",
            cluster.core.list_namespaced_pod,
            namespace,
            label_selector=f"job-name={name}",
        ).items
        pods.sort(key=lambda p: p.metadata.creation_timestamp)
        for pod in pods:
            summary = _pod_summary(pod)
            if phases.get(pod.metadata.name) != summary:
                phases[pod.metadata.name] = summary
                emit(f"pod {pod.metadata.name}: {summary}")
            started = pod.status.phase in ("Running", "Succeeded", "Failed")
            if follow_logs and started and pod.metadata.name not in followers:
                container = pod.spec.containers[0].name
                followers[pod.metadata.name] = LogFollower(cluster, namespace, pod.metadata.name, container, emit)
                followers[pod.metadata.name].start()
        done = _condition(job, "Complete") or _condition(job, "Failed")
        if done is not None:
            break
        if time.monotonic() - start > timeout:
            raise OperationFailed(
                f"Job {name} still running after {timeout:g}s; it goes on in the cluster: "
                f"kubectl -n {namespace} get job {name}"
            )
        time.sleep(interval)
    for follower in followers.values():
        # The container has ended, so its log stream ends too; don't hang on a stuck connection.
        follower.join(timeout=10)
    seconds = time.monotonic() - start
    succeeded = done.type == "Complete"
    version = None
    reason = done.reason or done.type
    finished = [p for p in pods if p.status.phase in ("Succeeded", "Failed")]
    if succeeded:
        for pod in finished:
            if pod.status.phase == "Succeeded":
                _, version = _termination(pod)
    else:
        failed = [p for p in finished if p.status.phase == "Failed"]
        if failed:
            code, message = _termination(failed[-1])
            # With FallbackToLogsOnError the message is the log's tail: its last line says most.
            last = message.splitlines()[-1].strip() if message else ""
            reason += f"; last pod {failed[-1].metadata.name} exited {code}" + (f": {last}" if last else "")
        elif done.message:
            reason += f": {done.message}"
    return JobOutcome(name, succeeded, seconds, reason, version, any(f.lines for f in followers.values()))
