"""kubernetes-validate --strict against the Kubernetes 1.30 and 1.34 schemas, for every rendered set.

Catches wrong types, unknown fields (typos) and missing required fields. The custom resources
(Prometheus Operator, Gateway API, KEDA) have no schema there: test_cross_objects checks what
matters about them, and tests/cluster/test_cluster_dry_run.py has a real API server check them
against their CRDs.
"""

from __future__ import annotations

import re

import pytest
from k8s_support import KUBERNETES_VERSIONS

CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "HTTPRoute", "ScaledObject"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_match_the_kubernetes_schema(tools, rendered, version):
    proc = tools.run("kubernetes-validate", "--strict", "-k", version, rendered.file, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{rendered.name} on {version}:\n{output}"
    assert "ERROR" not in output, output
    unknown = set(re.findall(r"Couldn't find schema for kind (\w+)", output))
    assert unknown <= CUSTOM_KINDS, f"no schema for {unknown - CUSTOM_KINDS}"
    passed = len(re.findall(r"^INFO .* passed for resource", output, re.MULTILINE))
    assert passed == len([d for d in rendered.docs if d["kind"] not in CUSTOM_KINDS])


def test_validator_rejects_a_broken_manifest(tools, tmp_path):
    """The check above would pass vacuously if the validator accepted anything."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports:\n    - port: 80\n      protocl: TCP\n"
    )
    proc = tools.run("kubernetes-validate", "--strict", "-k", KUBERNETES_VERSIONS[-1], bad, check=False)
    assert proc.returncode != 0
    assert "protocl" in proc.stdout + proc.stderr
