"""``cluster ensure-secrets``: create Secrets with random values, only where they do not exist.

Kustomize cannot generate random values, so the kustomize base runs this in a Job (train image,
which has the ``kubernetes`` client) to create the Cassandra roles' and the API token's Secrets on
first apply. An existing Secret is never read beyond its existence nor changed: re-running the Job
keeps every password. Pods that reference a Secret wait until it exists.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from fashion_classifier.cluster.connect import Cluster
from fashion_classifier.cluster.errors import ClusterError, NotFound

RANDOM_LENGTH = 32
_ALPHABET = string.ascii_letters + string.digits
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


@dataclass(frozen=True)
class SecretSpec:
    """A Secret to ensure: literal keys keep their value, the others get a random one."""

    name: str
    keys: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, text: str) -> SecretSpec:
        """``NAME:KEY[=VALUE][,KEY[=VALUE]...]``, e.g. ``db-admin:username=fc_admin,password``."""
        name, sep, rest = text.partition(":")
        if not sep or not _NAME.match(name) or not rest:
            raise ValueError(f"{text!r} is not NAME:KEY[=VALUE][,...]")
        keys = []
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not _KEY.match(key):
                raise ValueError(f"{key!r} is not a valid Secret key")
            keys.append((key, value if eq else None))
        return cls(name, tuple(keys))

    def data(self) -> dict[str, str]:
        return {key: value if value is not None else random_value() for key, value in self.keys}


def random_value(length: int = RANDOM_LENGTH) -> str:
    """Letters and digits from the OS's CSPRNG (~190 bits at 32 characters)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def ensure(cluster: Cluster, namespace: str, spec: SecretSpec, labels: dict[str, str]) -> bool:
    """Create the Secret unless it exists; True when created."""
    from kubernetes import client

    try:
        cluster.call(f"read Secret {spec.name}", cluster.core.read_namespaced_secret, spec.name, namespace)
        return False
    except NotFound:
        pass
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=spec.name, namespace=namespace, labels=labels),
        type="Opaque",
        string_data=spec.data(),
    )
    try:
        cluster.call(f"create Secret {spec.name}", cluster.core.create_namespaced_secret, namespace, body)
    except ClusterError as exc:
        if "already exists" in str(exc):  # another run created it a moment ago: keep that one
            return False
        raise
    return True
