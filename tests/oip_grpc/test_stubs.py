"""The committed stubs are what the protocol's published proto generates (scripts/grpc-stubs)."""

from __future__ import annotations

import os
import subprocess
import sys

from fashion_classifier.config import PROJECT_ROOT


def test_the_stubs_are_a_fresh_generation_of_the_published_proto():
    proc = subprocess.run(
        [PROJECT_ROOT / "scripts" / "grpc-stubs", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_changed_stub_is_caught(tmp_path):
    """--check compares byte for byte: a copy of the tree with one edited stub fails it."""
    tree = tmp_path / "tree"
    for part in ("scripts/grpc-stubs", "scripts/oip-specs", "src/fashion_classifier/oip_grpc/stubs"):
        (tree / part).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", PROJECT_ROOT / part, tree / part], check=True)
    stub = tree / "src/fashion_classifier/oip_grpc/stubs/grpc_predict_v2_pb2.py"
    stub.write_text(stub.read_text().replace("ModelInferRequest", "ModelInferRequestX", 1))
    proc = subprocess.run(
        [tree / "scripts" / "grpc-stubs", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable},
        cwd=tree,
    )
    assert proc.returncode == 1 and "grpc_predict_v2_pb2.py differs" in proc.stderr, proc.stderr
