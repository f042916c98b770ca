"""TF-Serving-style REST API (KServe's V1 protocol) under ``/v1``.

``POST /v1/models/<name>:predict`` takes the row format ``{"instances": [...]}`` or the
columnar format ``{"inputs": ...}`` and answers ``{"predictions": [[p0, ..., p9], ...]}``: one
list of 10 softmax probabilities per image, in class order. An instance is a 28×28 (or 784)
array of pixels in [0, 1] (0–255 accepted, see ``inference.arrays``), ``{"b64": "<image file>"}`` (TF
Serving's binary convention), or ``{"pixels": ...}`` naming the model's input. Errors are
``{"error": "..."}``.
"""

from __future__ import annotations

from flask import Blueprint, Response
from werkzeug.wrappers import Request

from fashion_classifier.errors import InvalidInput
from fashion_classifier.inference.arms import check_model_name
from fashion_classifier.inference.serving_state import ServingState
from fashion_classifier.web import answers, inputs
from fashion_classifier.web.answers import Answer, rollout_key
from fashion_classifier.web.responses import json_response
from fashion_classifier.web.state import serving_state

bp = Blueprint("tfserving", __name__, url_prefix="/v1")


@bp.get("/models")
def list_models() -> Response:
    return json_response({"models": [serving_state().settings.model_name]})


@bp.get("/models/<model_name>")
def model_status(model_name: str) -> Response:
    check_model_name(model_name, serving_state().settings.model_name)
    return json_response({"name": model_name, "ready": serving_state().model is not None})


def run_predict(state: ServingState, request: Request, started: float, model_name: str) -> Answer:
    check_model_name(model_name, state.settings.model_name)
    body = inputs.parse_json(request)
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise InvalidInput('the body must be an object with either "instances" or "inputs"')
    if "instances" in body:
        batch = inputs.decode_instances(body["instances"], state.settings.max_batch)
    else:
        columns = body["inputs"]
        if isinstance(columns, dict):
            if set(columns) != {"pixels"}:
                raise InvalidInput('named "inputs" must be {"pixels": [...]}, the model\'s only input')
            columns = columns["pixels"]
        if isinstance(columns, dict) and set(columns) == {"b64"}:  # a single binary input
            columns = [columns]
        if _looks_like_one_image(columns):
            columns = [columns]
        batch = inputs.decode_instances(columns, state.settings.max_batch, field="inputs")
    outcome = state.classifier.classify(batch.pixels, "v1", batch.infos, started, rollout_key(request.environ))
    return Answer.json({"predictions": outcome.probs.tolist()}, outcome)


bp.add_url_rule("/models/<model_name>:predict", "predict", answers.view(run_predict), methods=["POST"])


def _looks_like_one_image(columns: object) -> bool:
    """A bare 28×28 or 784 array given as "inputs" (one image without its batch dimension)."""
    if not isinstance(columns, list):
        return False
    if len(columns) == 28 * 28:
        return all(_is_number(v) for v in columns)
    return len(columns) == 28 and all(
        isinstance(row, list) and len(row) == 28 and all(_is_number(v) for v in row) for row in columns
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
