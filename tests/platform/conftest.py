"""Fixtures of the platform checks: the pinned tools and rendered manifests of the chart and overlays."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from k8s_support import (
    CHART,
    COMPONENTS,
    K8S,
    NAMESPACE,
    OVERLAYS,
    RELEASE,
    TOOLS_DIR,
    VALUES_MATRIX,
    Rendered,
    Tools,
    parse_docs,
)


@pytest.fixture(scope="session")
def tools() -> Tools:
    if not TOOLS_DIR.is_dir():
        pytest.fail(f"{TOOLS_DIR} does not exist: run scripts/k8s-tools install")
    return Tools(TOOLS_DIR / "bin")


@pytest.fixture(scope="session")
def render_chart(tools: Tools, tmp_path_factory) -> Callable[..., Rendered]:
    out = tmp_path_factory.mktemp("helm")
    cache: dict[tuple, Rendered] = {}

    def render(
        values: dict[str, Any] | None = None,
        name: str = "custom",
        release: str = RELEASE,
        skip_tests: bool = False,
        kube_version: str = "1.34.0",
    ) -> Rendered:
        key = (yaml.safe_dump(values or {}), release, skip_tests, kube_version)
        if key not in cache:
            values_file = out / f"{name}-values.yaml"
            values_file.write_text(yaml.safe_dump(values or {}))
            args = [
                "template",
                release,
                CHART,
                "--namespace",
                NAMESPACE,
                "--kube-version",
                kube_version,
                "-f",
                values_file,
            ]
            if skip_tests:
                args.append("--skip-tests")
            text = tools.run("helm", *args).stdout
            file = out / f"{name}-{release}-{len(cache)}.yaml"
            file.write_text(text)
            cache[key] = Rendered(f"helm:{name}", text, parse_docs(text), file)
        return cache[key]

    return render


@pytest.fixture(scope="session")
def render_kustomize(tools: Tools, tmp_path_factory) -> Callable[[str], Rendered]:
    out = tmp_path_factory.mktemp("kustomize")
    cache: dict[str, Rendered] = {}

    def render(target: str) -> Rendered:
        """base, an overlay, or "with:a+b": the base with the components a and b of k8s/components."""
        if target not in cache:
            if target.startswith("with:"):
                # An overlay of our own beside the real ones, in a copy of k8s/ (kustomize loads
                # components by relative path only from within the tree).
                tree = out / f"tree-{len(cache)}"
                shutil.copytree(K8S, tree)
                path = tree / "overlays" / "under-test"
                path.mkdir()
                components = [f"../../components/{c}" for c in target.removeprefix("with:").split("+")]
                path.joinpath("kustomization.yaml").write_text(
                    yaml.safe_dump(
                        {
                            "apiVersion": "kustomize.config.k8s.io/v1beta1",
                            "kind": "Kustomization",
                            "resources": ["../../base"],
                            "components": components,
                        }
                    )
                )
            else:
                path = K8S / ("base" if target == "base" else f"overlays/{target}")
            text = tools.run("kubectl", "kustomize", path).stdout
            file = out / f"{target.replace(':', '-').replace('+', '-')}.yaml"
            file.write_text(text)
            cache[target] = Rendered(f"kustomize:{target}", text, parse_docs(text), file)
        return cache[target]

    return render


ALL_TARGETS = [
    *(f"helm:{name}" for name in VALUES_MATRIX),
    "kustomize:base",
    *(f"kustomize:{overlay}" for overlay in OVERLAYS),
    f"kustomize:with:{'+'.join(COMPONENTS)}",
]


@pytest.fixture(params=ALL_TARGETS)
def rendered(request, render_chart, render_kustomize) -> Rendered:
    """Each rendered manifest set in turn: every Helm values set and every kustomize target."""
    kind, name = request.param.split(":", 1)
    if kind == "helm":
        return render_chart(VALUES_MATRIX[name], name=name)
    return render_kustomize(name)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "image: builds the container images with podman and runs them (heavy; its own CI stage: "
        "pytest -m image tests/platform)",
    )
