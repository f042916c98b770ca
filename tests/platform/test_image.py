"""Builds both images with podman and runs them (scripts/image-build, scripts/image-smoke).

Heavy (a debootstrap base, two lock installs, two trainings): its own CI stage,
`pytest -m image tests/platform`; the other platform checks run with `-m "not image"`.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from k8s_support import ROOT


def _run(script: str, timeout: int) -> str:
    proc = subprocess.run([ROOT / "scripts" / script], capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    print(output[-6000:])
    assert proc.returncode == 0, f"scripts/{script} exited {proc.returncode}:\n{output[-6000:]}"
    return output


@pytest.mark.image
@pytest.mark.timeout(2400)
def test_images_build_train_serve_and_hot_reload(capsys):
    built = _run("image-build", timeout=1800)
    sizes = re.search(r"serve (\d+) MB .* train (\d+) MB", built)
    assert sizes, built[-2000:]
    with capsys.disabled():  # CI prints the sizes even when the test passes
        print("\n" + next(line for line in built.splitlines() if line.startswith("image sizes:")))
    serve_mb, train_mb = map(int, sizes.groups())
    # 275: 250 until gRPC, whose grpcio brings a 17 MB native library.
    assert serve_mb <= 275 < train_mb, "the serving image must stay small; the training one has TensorFlow"
    smoke = _run("image-smoke", timeout=600)
    assert "without a restart" in smoke and smoke.rstrip().endswith("OK")
