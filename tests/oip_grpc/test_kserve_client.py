"""KServe's own gRPC client (``InferenceGRPCClient``) talks to the server unchanged: UINT8 and FP32,
raw and typed contents, errors as gRPC codes; it answers as tritonclient's calls do."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from fashion_classifier.config import CLASS_NAMES, PROJECT_ROOT
from oip_grpc.conftest import grpc_target

KSERVE_PYTHON = PROJECT_ROOT / "var" / "bench" / "venvs" / "kserve" / "bin" / "python"
SCRIPT = PROJECT_ROOT / "tests" / "oip_grpc" / "kserve_client.py"


@pytest.fixture(scope="module")
def kserve_report(server, images, tmp_path_factory) -> dict:
    if not KSERVE_PYTHON.is_file():
        pytest.fail(f"{KSERVE_PYTHON} missing: scripts/setup installs KServe's venv (bench/peers-setup kserve)")
    pixels = tmp_path_factory.mktemp("kserve") / "pixels.npy"
    np.save(pixels, images[0][:4])
    proc = subprocess.run(
        [KSERVE_PYTHON, SCRIPT, grpc_target(server), pixels], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_health_through_kserve(kserve_report):
    assert kserve_report["live"] and kserve_report["ready"] and kserve_report["model_ready"]


@pytest.mark.parametrize("case", ["UINT8 raw", "UINT8 typed", "FP32 raw", "FP32 typed"])
def test_infer_through_kserve(kserve_report, triton, images, case):
    answer = kserve_report[case]
    tensor = grpcclient.InferInput("pixels", [4, 28, 28], "UINT8")
    tensor.set_data_from_numpy(images[0][:4])
    expected = triton.infer("fashion", [tensor])
    np.testing.assert_allclose(answer["probabilities"], expected.as_numpy("probabilities"), rtol=1e-5, atol=1e-6)
    assert answer["classes"] == expected.as_numpy("class").tolist()
    assert answer["labels"] == [CLASS_NAMES[k] for k in answer["classes"]]
    assert answer["id"] == f"{case.split()[0]}-{case.endswith('raw')}"


def test_errors_through_kserve(kserve_report):
    assert kserve_report["bad shape"]["code"] == "INVALID_ARGUMENT"
    assert "shape [1, 27, 28] not supported" in kserve_report["bad shape"]["details"]
    assert kserve_report["unknown model"]["code"] == "NOT_FOUND"
