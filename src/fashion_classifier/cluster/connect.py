"""The connection to a cluster: credentials, the API groups we use, and one-line errors.

Credentials come from a kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else
``~/.kube/config``) with an optional context, or, when there is none and we run in a pod, from the
pod's service account. Every API call goes through :meth:`Cluster.call`, which turns the client's
exceptions into :mod:`fashion_classifier.cluster.errors` with a message naming what was attempted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fashion_classifier.cluster.errors import ClientMissing, ClusterError, Forbidden, NoCluster, NotFound

T = TypeVar("T")
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def import_client() -> Any:
    """The ``kubernetes`` package, or ClientMissing with the fix."""
    try:
        import kubernetes
    except ImportError:
        raise ClientMissing(
            "the cluster commands need the 'kubernetes' package, which this installation leaves out "
            "(the serving image does): install the cluster extra, pip install 'fashion-classifier[cluster]'"
        ) from None
    return kubernetes


def _kubeconfig_files(explicit: str | None) -> list[Path]:
    if explicit:
        return [Path(explicit).expanduser()]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


@dataclass
class Cluster:
    """API handles of one cluster, and the error translation every call goes through."""

    api_client: Any
    host: str
    context: str
    timeout: float

    @property
    def core(self) -> Any:
        return self._api("CoreV1Api")

    @property
    def apps(self) -> Any:
        return self._api("AppsV1Api")

    @property
    def batch(self) -> Any:
        return self._api("BatchV1Api")

    @property
    def autoscaling(self) -> Any:
        return self._api("AutoscalingV2Api")

    @property
    def policy(self) -> Any:
        return self._api("PolicyV1Api")

    @property
    def discovery(self) -> Any:
        return self._api("DiscoveryV1Api")

    def _api(self, name: str) -> Any:
        from kubernetes import client

        return getattr(client, name)(self.api_client)

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with a request timeout; errors become ClusterError naming ``what``."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise self._api_error(what, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise NoCluster(
                f"no cluster: cannot reach the API server {self.host} to {what} ({_root_cause(exc)})"
            ) from None

    def _api_error(self, what: str, exc: Any) -> ClusterError:
        message = _api_message(exc)
        refused = _websocket_refusal(exc)
        if refused is not None:  # exec: the API server's answer to the websocket upgrade
            exc.status, message = refused
        if exc.status == 401:
            return Forbidden(
                f"unauthorized: the API server {self.host} rejected the credentials of "
                f"context {self.context!r} (trying to {what})"
            )
        if exc.status == 403:
            return Forbidden(f"forbidden: not allowed to {what} (RBAC): {message}")
        if exc.status == 404:
            return NotFound(f"cannot {what}: {message}")
        if exc.status == 0 or exc.status is None:
            return NoCluster(f"no cluster: cannot reach the API server {self.host} to {what} ({message})")
        return ClusterError(f"cannot {what}: {exc.status} {message}")


def _api_message(exc: Any) -> str:
    # The API server explains itself in a Status object; the client only gives its raw body.
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason or exc.body or exc).strip()


def _websocket_refusal(exc: Any) -> tuple[int, str] | None:
    """(status, message) of a refused websocket upgrade (exec), which the client reports as status 0
    with ``Handshake status 403 Forbidden -+-+- {headers} -+-+- {Status JSON}`` as its reason."""
    reason = str(exc.reason or "")
    if exc.status or not reason.startswith("Handshake status "):
        return None
    try:
        status = int(reason.split()[2])
        message = str(json.loads(reason.rsplit("-+-+-", 1)[-1])["message"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None
    return status, message


def _root_cause(exc: BaseException) -> str:
    # urllib3 wraps the socket error (MaxRetryError -> NewConnectionError -> ConnectionRefusedError):
    # the innermost one is what the user can act on.
    reason = getattr(exc, "reason", None)
    while isinstance(reason, BaseException) and getattr(reason, "reason", None) not in (None, reason):
        reason = reason.reason
    text = str(reason or exc)
    # "<urllib3.connection.HTTPSConnection object at 0x..>: Failed to establish ..." -> the part after ": "
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return text


def connect(kubeconfig: str | None = None, context: str | None = None, timeout: float = 10.0) -> Cluster:
    """A Cluster from a kubeconfig, or from the pod's service account when there is no kubeconfig.

    Nothing is sent to the server yet: an unreachable server shows up at the first call.
    """
    kubernetes = import_client()
    from kubernetes import client, config

    files = _kubeconfig_files(kubeconfig)
    existing = [f for f in files if f.is_file()]
    if kubeconfig and not existing:
        raise NoCluster(f"no cluster: kubeconfig {kubeconfig} does not exist")
    try:
        if existing:
            configuration = client.Configuration()
            config.load_kube_config(
                config_file=str(existing[0]) if kubeconfig else None,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
            _, active = config.list_kube_config_contexts(config_file=str(existing[0]) if kubeconfig else None)
            name = context or (active or {}).get("name", "")
        elif IN_CLUSTER_TOKEN.is_file() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            if context:
                raise NoCluster("no cluster: --context needs a kubeconfig, and there is none (in-cluster config)")
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            name = "in-cluster"
        else:
            looked = ", ".join(str(f) for f in files)
            raise NoCluster(f"no cluster: no kubeconfig ({looked}) and not running in a pod")
    except kubernetes.config.ConfigException as exc:
        raise NoCluster(f"no cluster: {exc}") from None
    # One attempt per request: a dead API server should fail the command in seconds, not after
    # urllib3's retries; the operations that wait poll on their own.
    configuration.retries = 0
    return Cluster(client.ApiClient(configuration), configuration.host, name, timeout)
