"""What the cluster commands read of a release's rendered objects, from the chart itself."""

from __future__ import annotations

import subprocess

import yaml
from cluster_support import CHART, TOOLS_BIN

from fashion_classifier.cluster.release import Release


def _release(*values: str) -> Release:
    helm = str(TOOLS_BIN / "helm")
    text = subprocess.run(
        [helm, "template", "fc", str(CHART), "-n", "ns", *values, "--skip-tests"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = [d for d in yaml.safe_load_all(text) if d]
    return Release("fc", "ns", 1, "deployed", "fashion-classifier-0.1.0", "0.1.0", {}, objects)


def test_the_autoscaler_is_the_charts_or_the_one_keda_makes():
    assert _release().autoscalers("fc-fashion-classifier") == ["fc-fashion-classifier"]
    keda = _release("--set", "autoscaling.keda.enabled=true", "--set", "autoscaling.keda.prometheusUrl=http://p:9090")
    assert keda.autoscalers("fc-fashion-classifier") == ["keda-hpa-fc-fashion-classifier"]
    assert _release("--set", "autoscaling.enabled=false").autoscalers("fc-fashion-classifier") == []
