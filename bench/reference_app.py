"""The benchmark's machine calibration: the minimal Flask + LiteRT app the speed targets came from.

shared/notes/serving-performance.md measured this app (no metrics, ids, logging, validation or
photo handling: Werkzeug's multipart parser, Pillow to 28×28 gray, one LiteRT invoke, ``jsonify``
of the probabilities) at 2,824 requests/s for one 28×28 PNG per upload at 16 connections, with
one fixed multipart boundary, 2 sync workers, on 2026-11-24. Issue 3's absolute targets were set
from that figure. The host behind this machine changes between sessions, so bench/serving.py
runs this app in the same run as ours and reports how fast the machine is against that day.

    FC_MODEL_DIR=model gunicorn -w 2 -k sync --chdir bench 'reference_app:create_app()'
"""

from __future__ import annotations

import io

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from flask import Flask, jsonify, request
from PIL import Image

from fashion_classifier.artifacts.store import TFLITE, current_path
from fashion_classifier.config import CLASS_NAMES, Settings


def create_app() -> Flask:
    interpreter = Interpreter(model_path=str(current_path(Settings.from_env().model_dir) / TFLITE), num_threads=1)
    interpreter.allocate_tensors()
    first = interpreter.get_input_details()[0]["index"]
    output = interpreter.get_output_details()[0]["index"]
    app = Flask(__name__)

    @app.get("/v2/health/ready")
    def ready():
        return jsonify(ready=True)

    @app.post("/api/v1/predict")
    def predict():
        image = Image.open(io.BytesIO(request.files["file"].read()))
        if image.format == "JPEG":
            image.draft("L", (28, 28))  # as the notes' JPEG run did
        image = image.convert("L")
        if image.size != (28, 28):
            image = image.resize((28, 28))
        interpreter.set_tensor(first, (np.asarray(image, dtype=np.float32) / 255.0)[None])
        interpreter.invoke()
        probs = interpreter.get_tensor(output)[0]
        best = int(probs.argmax())
        probabilities = dict(zip(CLASS_NAMES, probs.tolist(), strict=True))
        return jsonify({"class": best, "label": CLASS_NAMES[best], "probabilities": probabilities})

    return app
