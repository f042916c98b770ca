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


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    # A control plane someone started before the session is theirs: use it, leave it running.
    already_up = subprocess.run([KUBE_LOCAL, "status"], capture_output=True, text=True).returncode == 0
    # Generous: on a machine without the cached binaries, `up` builds them first (minutes).
    proc = subprocess.run([KUBE_LOCAL, "up"], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        pytest.fail(f"scripts/kube-local up failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-6000:]}", pytrace=False)
    env = subprocess.run([KUBE_LOCAL, "env"], capture_output=True, text=True, check=True).stdout
    kubeconfig = Path(env.strip().split("=", 1)[1])
    yield Kube(kubeconfig)
    if not already_up and not os.environ.get("FC_KUBE_KEEP"):
        subprocess.run([KUBE_LOCAL, "down"], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def real_node() -> Iterator[Kube]:
    """scripts/kube-node: its own control plane plus one real kubelet node, the project's podman
    images imported into its containerd. Torn down at the end (FC_KUBE_KEEP=1 keeps it)."""
    from real_node_support import KUBE_NODE, podman_images

    already_up = subprocess.run([KUBE_NODE, "status"], capture_output=True, text=True).returncode == 0
    steps = [[KUBE_NODE, "up"], [KUBE_NODE, "import", *podman_images().values()]]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(map(str, step))} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                        f"{proc.stderr[-6000:]}", pytrace=False)
    env = subprocess.run([KUBE_NODE, "env"], capture_output=True, text=True, check=True).stdout
    yield Kube(Path(env.strip().split("=", 1)[1]))
    if not already_up and not os.environ.get("FC_KUBE_KEEP"):
        subprocess.run([KUBE_NODE, "down"], capture_output=True, text=True, timeout=600)
