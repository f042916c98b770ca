"""The expected failures of cluster operations, each printed by the CLI as one line."""

from __future__ import annotations


class ClusterError(Exception):
    """A cluster operation could not be done; the message is meant for the user as is."""


class ClientMissing(ClusterError):
    """The ``kubernetes`` package is not installed (the serving image leaves it out)."""


class NoCluster(ClusterError):
    """No usable cluster: no kubeconfig or in-cluster config, or the API server is unreachable."""


class Forbidden(ClusterError):
    """The API server refused the credentials (401) or RBAC denied the request (403)."""


class NotFound(ClusterError):
    """An object the operation needs does not exist."""


class ReleaseNotFound(NotFound):
    """No Helm release of that name in the namespace."""


class OperationFailed(ClusterError):
    """The operation ran and failed (a Job failed, a rollout timed out)."""


class Refused(ClusterError):
    """The request contradicts the release's own configuration (e.g. the autoscaler's range)."""
