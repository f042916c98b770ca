"""The local Kubernetes clusters of the cluster tests, each started once per session.

``kube``: ``scripts/kube-local up`` builds what is missing and starts etcd, the API server, the
controller-manager, the scheduler and kwok on 127.0.0.1 (fake nodes: fast checks).
``real_node``: ``scripts/kube-node up``, a control plane of its own plus a real kubelet node whose
pods really run (tests marked ``realnode``). If a cluster cannot start, every test using it fails
with its output: a cluster suite that silently skips proves nothing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import KUBE_LOCAL, Kube


def _cluster(script: Path, *steps: list[str], down_timeout: float) -> Iterator[Kube]:
    """``script up`` and any further steps, the cluster for the session, ``script down`` after.

    A cluster someone started before the session is theirs: use it, leave it running (as with
    FC_KUBE_KEEP=1). Generous timeouts: on a machine without the cached binaries, `up` builds them.
    """
    already_up = subprocess.run([script, "status"], capture_output=True, text=True).returncode == 0
    for step in ([script, "up"], *steps):
        proc = subprocess.run(step, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            pytest.fail(
                f"{' '.join(map(str, step))} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-6000:]}",
                pytrace=False,
            )
    env = subprocess.run([script, "env"], capture_output=True, text=True, check=True).stdout
    yield Kube(Path(env.strip().split("=", 1)[1]))
    if not already_up and not os.environ.get("FC_KUBE_KEEP"):
        subprocess.run([script, "down"], capture_output=True, text=True, timeout=down_timeout)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    yield from _cluster(KUBE_LOCAL, down_timeout=120)


@pytest.fixture(scope="session")
def real_node() -> Iterator[Kube]:
    """scripts/kube-node: its own control plane plus one real kubelet node, the project's podman
    images imported into its containerd."""
    from real_node_support import KUBE_NODE, podman_images

    yield from _cluster(KUBE_NODE, [KUBE_NODE, "import", *podman_images().values()], down_timeout=600)
