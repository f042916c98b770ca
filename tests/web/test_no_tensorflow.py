"""Serving never imports TensorFlow: checked in a fresh interpreter that serves every route."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import io, json, sys
from PIL import Image
from fashion_classifier import metrics
from fashion_classifier.config import Settings
from fashion_classifier.web import create_app

app = create_app(Settings.from_env())
client = app.test_client()
buf = io.BytesIO(); Image.new("L", (28, 28), 40).save(buf, "PNG")
statuses = [
    client.post("/api/v1/predict", data={"file": (io.BytesIO(buf.getvalue()), "a.png")}).status_code,
    client.post("/", data={"file": (io.BytesIO(buf.getvalue()), "a.png")}).status_code,
    client.post("/v1/models/fashion:predict", json={"instances": [[[0] * 28] * 28]}).status_code,
    client.post("/v2/models/fashion/infer", json={"inputs": [
        {"name": "p", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}]}).status_code,
    client.get("/model").status_code,
    client.get("/predictions").status_code,
    200 if b"fc_predictions_total" in metrics.render()[0] else 500,
]
frameworks = ("tensorflow", "keras", "tf_keras", "jax", "torch")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in frameworks)
print(json.dumps({"statuses": statuses, "heavy": heavy}))
"""


def test_serving_process_never_imports_tensorflow(settings, tmp_path):
    env = {
        "FC_MODEL_DIR": str(settings.model_dir),
        "FC_PREDLOG": "sqlite",
        "FC_SQLITE_PATH": str(tmp_path / "p.sqlite3"),
        "FC_SPOOL_DIR": str(tmp_path / "spool"),
        "FC_RELOAD_INTERVAL": "0",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200] * 7
    assert result["heavy"] == []
