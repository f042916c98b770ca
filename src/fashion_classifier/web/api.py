"""The service's own REST API under ``/api/v1``: predict, feedback, prediction history, model.

Feedback and the prediction history need the API token when one is configured (``auth``);
predict and model stay open.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from flask import Blueprint, Response, request
from werkzeug.wrappers import Request

from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.errors import InvalidInput, ModelNotReady, UnsupportedMediaType
from fashion_classifier.inference.serving_state import ServingState
from fashion_classifier.predlog.base import InvalidPageState
from fashion_classifier.web import answers, auth, feedback, inputs
from fashion_classifier.web.answers import Answer, rollout_key
from fashion_classifier.web.auth import require_token
from fashion_classifier.web.responses import json_response
from fashion_classifier.web.results import prediction_results, record_json
from fashion_classifier.web.state import serving_state

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.record_once(auth.install)

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_LIST = 1000


def run_predict(state: ServingState, request: Request, started: float) -> Answer:
    """Multipart files (``file``/``files``), a raw image body, or JSON ``{"instances": [...]}``."""
    max_batch = state.settings.max_batch
    mimetype = request.mimetype
    if mimetype.startswith("multipart/"):
        batch = inputs.decode_uploads(inputs.uploaded_files(request, max_batch), max_batch)
    elif request.is_json:
        body = inputs.parse_json(request)
        if not isinstance(body, dict) or "instances" not in body:
            raise InvalidInput('JSON body must be an object {"instances": [...]}')
        batch = inputs.decode_instances(body["instances"], max_batch)
    elif mimetype.startswith("image/") or mimetype == "application/octet-stream":
        batch = inputs.decode_uploads([inputs.Upload(request.get_data(cache=False), None)], max_batch)
    else:
        raise UnsupportedMediaType(
            "send multipart/form-data files (field 'file'), an image/* body, or JSON {\"instances\": [...]}",
        )
    outcome = state.classifier.classify(batch.pixels, "api", batch.infos, started, rollout_key(request.environ))
    return Answer.json({"model_version": outcome.model.version, "predictions": prediction_results(outcome)}, outcome)


bp.add_url_rule("/predict", "predict", answers.view(run_predict), methods=["POST"])


@bp.post("/feedback")
@require_token
def post_feedback() -> Response:
    body = inputs.parse_json(request)
    if not isinstance(body, dict):
        raise InvalidInput('JSON body must be an object {"prediction_id": ..., "true_label": ...}')
    pid = body.get("prediction_id", body.get("id"))
    label = body.get("true_label", body.get("label"))
    if pid is None or label is None:
        raise InvalidInput("both prediction_id and true_label are required")
    result = feedback.submit(serving_state(), feedback.parse_prediction_id(pid), feedback.parse_label(label))
    return json_response(result)


def _day_arg() -> date:
    raw = request.args.get("day")
    if raw is None or raw == "":
        return datetime.now(UTC).date()
    if not _DAY.match(raw):
        raise InvalidInput("day must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"day {raw!r} is not a valid date") from None


def _limit_arg(default: int = 50) -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIST:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIST}")
    return int(raw)


@bp.get("/predictions")
@require_token
def list_predictions() -> Response:
    day = _day_arg()
    limit = _limit_arg()
    page_state = request.args.get("page_state") or None
    try:
        page = serving_state().predlog.list_day(day, limit=limit, page_state=page_state)
    except InvalidPageState as exc:
        raise InvalidInput(str(exc)) from None
    return json_response(
        {
            "day": day.isoformat(),
            "predictions": [record_json(rec) for rec in page.rows],
            "page_state": page.page_state,
        }
    )


@bp.get("/predictions/counts")
@require_token
def prediction_counts() -> Response:
    day = _day_arg()
    full = dict.fromkeys(CLASS_NAMES, 0)
    full.update(serving_state().predlog.counts(day))
    return json_response({"day": day.isoformat(), "counts": full, "total": sum(full.values())})


@bp.get("/predictions/<prediction_id>")
@require_token
def get_prediction(prediction_id: str) -> Response:
    pid = feedback.parse_prediction_id(prediction_id)
    rec = serving_state().predlog.get(pid)
    if rec is None:
        raise feedback.PredictionNotFound(f"no prediction with id {pid}")
    return json_response(record_json(rec))


@bp.get("/model")
def model_info() -> Response:
    model = serving_state().model
    if model is None:
        raise ModelNotReady("no model loaded yet")
    meta = model.metadata
    keys = (
        "version",
        "architecture",
        "test_accuracy",
        "test_loss",
        "per_class",
        "confusion_matrix",
        "class_names",
        "created_at",
        "parameters",
        "epochs",
        "seed",
        "training_seconds",
        "calibration",
        "robustness",
    )
    return json_response({key: meta.get(key) for key in keys} | {"load_seconds": model.load_seconds})
