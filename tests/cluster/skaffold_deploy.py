"""The deploy half of the skaffold loop, run for real: `skaffold deploy` and `skaffold delete`.

`skaffold dev`/`run` build both images with a Docker daemon, which this machine lacks, so the build
half cannot run here; the images are built by podman (scripts/image-build) instead and handed to
`skaffold deploy --build-artifacts`, which installs the chart exactly as `skaffold dev` would after
its build: the same skaffold.yaml, profiles, Helm flags and `setValueTemplates`.

skaffold is the one scripts/k8s-tools builds from the Go module proxy. Nothing it runs may reach
the network: the update check is off (flag and private global config), telemetry is off
(`collect-metrics: false`, and `--interactive=false` so that no first-run prompt turns it on), no
image is pushed (`skaffold deploy` never builds, so never pushes) or loaded (`--load-images=false`;
`local-cluster: false` also stops it from looking for a minikube binary or a local registry), and
the one lookup no switch stops (`skaffold delete` asks Docker Hub about the Dockerfile's base
image) meets a dead proxy on loopback (_env).

Used by tests/cluster/test_skaffold_kwok.py (kwok control plane) and the real-node tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from cluster_support import ROOT, TOOLS_BIN

SKAFFOLD = TOOLS_BIN / "skaffold"
SKAFFOLD_YAML = ROOT / "skaffold.yaml"
# The release name in skaffold.yaml (deploy.helm.releases[0].name).
RELEASE = "fashion-classifier"
# skaffold.yaml's artifact names -> the podman-built images that stand for their builds: the names
# docker/podman-env.sh gives them with FC_IMAGE_TAG unset (real_node_support.podman_images() reads
# the live ones; pass those as `images` when the tag may differ).
PODMAN_IMAGES = {
    "fashion-classifier": "localhost/fashion-classifier:0.1.0",
    "fashion-classifier-train": "localhost/fashion-classifier-train:0.1.0",
}
# `kind`: what `skaffold dev` on a kind cluster deploys (the kube context here is not kind-*, so it
# is named, not auto-activated). `lite`: no Cassandra, no training hook, no Prometheus Operator
# objects (see skaffold.yaml).
DEFAULT_PROFILES = ("kind", "lite")
# Where anything that would leave the machine is sent instead (see _env): nothing listens there.
DEAD_PROXY = "http://127.0.0.1:9"
# skaffold's global config (--config), in place of the per-user ~/.skaffold/config.
GLOBAL_CONFIG = """\
global:
  update-check: false
  collect-metrics: false
  local-cluster: false
  survey:
    disable-prompt: true
"""


def _kube_context(kubeconfig: Path) -> str:
    """The kubeconfig's current-context, named explicitly so that skaffold and helm agree on it."""
    proc = subprocess.run(
        [str(TOOLS_BIN / "kubectl"), "config", "current-context", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def _server_host(kubeconfig: Path) -> str:
    proc = subprocess.run(
        [
            str(TOOLS_BIN / "kubectl"),
            "config",
            "view",
            "--minify",
            "--kubeconfig",
            str(kubeconfig),
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return urlsplit(proc.stdout.strip()).hostname or "127.0.0.1"


def _env(kubeconfig: Path, home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        # skaffold creates ~/.skaffold/config and ~/.skaffold/cache even with --config: a private,
        # temporary HOME keeps the user's untouched (helm needs nothing from HOME for a local chart).
        "HOME": str(home),
        # helm and kubectl are found on PATH (skaffold shells out to both): the pinned ones first.
        "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # The same switches as the flags, for any skaffold process that reads only the environment.
        "SKAFFOLD_UPDATE_CHECK": "false",
        "SKAFFOLD_INTERACTIVE": "false",
    }
    # A fence, not a switch: `skaffold delete` computes the artifacts' inputDigest tags, which reads
    # the Dockerfile's base image config (python:3.11-slim-bookworm) from a Docker daemon or,
    # failing that, from its registry (index.docker.io) -- traced with strace. Every HTTP client of
    # skaffold, helm and kubectl honours these variables: anything but the API server goes to a
    # closed port on loopback and fails at once, without a DNS lookup; skaffold tolerates it.
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        env[var] = DEAD_PROXY
    no_proxy = f"127.0.0.1,localhost,{_server_host(kubeconfig)}"
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def _common(kubeconfig: Path, namespace: str, profiles: Iterable[str], config: Path) -> list[str]:
    return [
        "--filename",
        str(SKAFFOLD_YAML),
        "--profile",
        ",".join(profiles),
        "--profile-auto-activation=false",
        "--kubeconfig",
        str(kubeconfig),
        "--kube-context",
        _kube_context(kubeconfig),
        "--namespace",
        namespace,
        "--config",
        str(config),
        "--interactive=false",
        "--update-check=false",
        "--detect-minikube=false",
        # skaffold.yaml requires no remote configs; never fetch any.
        "--sync-remote-cache=never",
    ]


def _run(args: list[str], kubeconfig: Path, home: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    if not SKAFFOLD.exists():
        raise FileNotFoundError(f"{SKAFFOLD} is missing: run scripts/k8s-tools install")
    return subprocess.run(
        [str(SKAFFOLD), *args], capture_output=True, text=True, cwd=ROOT, env=_env(kubeconfig, home), timeout=timeout
    )


def build_artifacts(images: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
    """The `--build-artifacts` document: what `skaffold build --file-output` would have written.

    imageName is the artifact's name in skaffold.yaml; tag the full reference. skaffold splits the
    tag into the `IMAGE_REPO_<name>`/`IMAGE_TAG_<name>` its setValueTemplates use, so the chart gets
    image.repository=localhost/fashion-classifier and image.tag=0.1.0.
    """
    unknown = set(images) - set(PODMAN_IMAGES)
    if unknown:
        raise ValueError(f"not artifacts of skaffold.yaml: {sorted(unknown)}")
    return {"builds": [{"imageName": name, "tag": tag} for name, tag in images.items()]}


def skaffold_deploy(
    kubeconfig: Path,
    namespace: str,
    images: Mapping[str, str] | None = None,
    *,
    profiles: Iterable[str] = DEFAULT_PROFILES,
    status_check: bool = True,
    verbosity: str = "info",
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """`skaffold deploy` of skaffold.yaml's release into `namespace` (created if missing).

    images: artifact name -> image reference, default the podman-built PODMAN_IMAGES (both
    artifacts must be named: skaffold refuses a deploy with an artifact it has no tag for).
    With status_check, skaffold waits for the release's Deployments to roll out (its
    statusCheckDeadlineSeconds, 10 min by default) and fails if they do not.
    verbosity: skaffold's --verbosity (debug shows the update check and metrics being skipped).
    Returns the completed process (check returncode; stdout/stderr carry skaffold's and helm's output).
    """
    images = PODMAN_IMAGES if images is None else images
    kubeconfig = Path(kubeconfig).resolve()
    with tempfile.TemporaryDirectory(prefix="fc-skaffold-") as tmp:
        artifacts, config = Path(tmp, "build-artifacts.json"), Path(tmp, "config")
        artifacts.write_text(json.dumps(build_artifacts(images)))
        config.write_text(GLOBAL_CONFIG)
        return _run(
            [
                "deploy",
                *_common(kubeconfig, namespace, profiles, config),
                "--build-artifacts",
                str(artifacts),
                # Never `kind load`/push: the images are already in the node's runtime (or,
                # on kwok, not needed at all).
                "--load-images=false",
                "--port-forward=off",
                "--tail=false",
                f"--status-check={str(status_check).lower()}",
                f"--verbosity={verbosity}",
            ],
            kubeconfig,
            Path(tmp),
            timeout,
        )


def skaffold_delete(
    kubeconfig: Path, namespace: str, *, profiles: Iterable[str] = DEFAULT_PROFILES, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`skaffold delete`: `helm uninstall` of the release that skaffold_deploy installed.

    It keeps the namespace and what the chart keeps on purpose (the model store and spool claims).
    """
    kubeconfig = Path(kubeconfig).resolve()
    with tempfile.TemporaryDirectory(prefix="fc-skaffold-") as tmp:
        config = Path(tmp, "config")
        config.write_text(GLOBAL_CONFIG)
        return _run(["delete", *_common(kubeconfig, namespace, profiles, config)], kubeconfig, Path(tmp), timeout)
