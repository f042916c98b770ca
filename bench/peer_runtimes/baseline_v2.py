"""The baseline (bench/baseline_app.py: Flask + Keras ``model.predict`` per request) plus a V2
``/v2/models/fashion/infer`` route, so that the peers benchmark can send it the same V2 tensors as
every other server. The route calls the very model the upload route uses, the same way
(``model.predict`` per request), and answers ``probabilities`` like the peers' runtimes.

    gunicorn -w 2 --chdir bench/peer_runtimes 'baseline_v2:create_app()'   (PYTHONPATH=bench)
"""

from __future__ import annotations

import baseline_app
import keras
import numpy as np
from flask import Flask, jsonify, request


def create_app() -> Flask:
    # baseline_app.create_app keeps its model in a closure: catch it as it is loaded rather than
    # loading a second copy (which would double the worker's memory).
    loaded = []
    load_model = keras.models.load_model

    def capture(*args, **kwargs):
        loaded.append(load_model(*args, **kwargs))
        return loaded[-1]

    keras.models.load_model = capture
    try:
        app = baseline_app.create_app()
    finally:
        keras.models.load_model = load_model
    model = loaded[0]

    @app.post("/v2/models/fashion/infer")
    def infer():
        body = request.get_json(force=True, silent=True) or {}
        try:
            tensor = body["inputs"][0]
            x = np.asarray(tensor["data"], dtype=np.float32).reshape(-1, 28, 28)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return jsonify(error=f"bad request: {exc}"), 400
        if tensor.get("datatype") == "UINT8":
            x /= 255.0
        logits = model.predict(x, verbose=0)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return jsonify(
            model_name="fashion",
            outputs=[
                {
                    "name": "probabilities",
                    "shape": list(probs.shape),
                    "datatype": "FP32",
                    "data": probs.ravel().tolist(),
                }
            ],
        )

    return app
