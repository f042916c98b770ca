"""The benchmark's baseline: the seed's way of serving, Flask + Keras ``model.predict`` per request.

Each worker imports TensorFlow and loads ``model.keras`` of the store's current version
(``FC_MODEL_DIR``). It answers the same multipart uploads as our ``POST /api/v1/predict``
(field ``file``, one or many images) and ``GET /v2/health/ready`` so that the benchmark can
start and drive it like our server. bench/serving.py runs it as::

    FC_MODEL_DIR=model gunicorn -w 2 -k sync --chdir bench 'baseline_app:create_app()'
"""

from __future__ import annotations

import io

import numpy as np
from flask import Flask, jsonify, request
from PIL import Image

from fashion_classifier.artifacts.store import KERAS, current_path
from fashion_classifier.config import CLASS_NAMES, Settings


def _pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("L").resize((28, 28))
    x = np.asarray(image, dtype=np.float32) / 255.0
    # Photos have light backgrounds; the dataset has dark ones.
    return 1.0 - x if x.mean() > 0.5 else x


def create_app() -> Flask:
    import keras  # imports TensorFlow in every worker, as the seed does

    model = keras.models.load_model(current_path(Settings.from_env().model_dir) / KERAS)
    app = Flask(__name__)

    @app.get("/v2/health/ready")
    def ready():
        return jsonify(ready=True)

    @app.post("/api/v1/predict")
    def predict():
        files = request.files.getlist("file")
        if not files:
            return jsonify(error="no file"), 400
        try:
            batch = np.stack([_pixels(f.read()) for f in files])
        except (OSError, ValueError) as exc:
            return jsonify(error=f"not an image: {exc}"), 400
        logits = model.predict(batch, verbose=0)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return jsonify(
            predictions=[
                {"class": int(p.argmax()), "label": CLASS_NAMES[int(p.argmax())], "probabilities": p.tolist()}
                for p in probs
            ]
        )

    return app
