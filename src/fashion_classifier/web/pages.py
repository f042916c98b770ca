"""The human side: upload form and result, recent predictions, model card. No JavaScript.

Templates are Jinja with autoescaping, so file names and every other client-supplied string
are escaped. Element ids used by the browser test: ``upload-form``, ``predicted-label``,
``model-version``, ``top3``. A low-confidence prediction (below the model's calibrated threshold)
shows ``low-confidence`` ("not sure — top 3: ...") instead of ``predicted-label``.

With an API token configured (``auth``), ``/predictions`` needs it, and the result page's
feedback form carries a signed feedback token instead: a browser user can correct the
prediction they were shown, and nothing else.
"""

from __future__ import annotations

import base64

from flask import Blueprint, Response, abort, render_template, request, send_file
from werkzeug.wrappers import Request

from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.errors import InvalidInput, ServiceError
from fashion_classifier.inference.preprocess import EXTENSIONS, to_png
from fashion_classifier.inference.serving_state import ServingState
from fashion_classifier.predlog.base import PredictionLogUnavailable
from fashion_classifier.web import auth, feedback, inputs
from fashion_classifier.web.answers import Answer, answered, rollout_key
from fashion_classifier.web.auth import require_token
from fashion_classifier.web.errors import http_status, wants_html
from fashion_classifier.web.observability import request_started
from fashion_classifier.web.state import serving_state

bp = Blueprint("pages", __name__)
bp.record_once(auth.install)

# The uploaded image is shown back as a data URL up to this size; larger ones show only the
# 28×28 model input.
_PREVIEW_LIMIT = 2 * 1024 * 1024
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "BMP": "image/bmp"}
# What each robustness variant in metadata.json is, for the model card (issue 23's benchmark).
ROBUSTNESS_VARIANTS = {
    "clean": "the official test set as published",
    "mirrored": "mirrored left–right",
    "shifted": "shifted by up to ±3 px",
    "scaled": "scaled 0.75–1.0 and centred",
    "rotated": "rotated up to ±10°",
    "contrast": "contrast × 0.5–1.0",
    "noise": "Gaussian noise σ = 0.05",
    "photo": "photo round trip: 224×224 on white, blurred, JPEG 75, upload preprocessing",
}
_ACCEPT = ",".join(f".{ext}" for ext in EXTENSIONS) + ",image/png,image/jpeg,image/gif,image/bmp"


def _render(template: str, **context: object) -> str:
    return render_template(template, extensions=EXTENSIONS, accept=_ACCEPT, class_names=CLASS_NAMES, **context)


def _page(template: str, status: int = 200, headers: dict[str, str] | None = None, **context: object) -> Response:
    return Response(_render(template, **context), status=status, headers=headers, mimetype="text/html")


@bp.app_context_processor
def _history_open() -> dict[str, object]:
    """The header links to the history page only when a browser may open it."""
    return {"history_open": auth.guard() is None}


@bp.get("/")
def index() -> Response:
    return _page("index.html")


@bp.post("/")
def upload() -> Response:
    try:
        answer = answered(run_upload, serving_state(), request, request_started())
    except ServiceError as exc:
        if not wants_html():
            raise
        return _page("index.html", status=http_status(exc)[0], error=str(exc))
    return Response(answer.payload, headers=answer.headers)


def run_upload(state: ServingState, request: Request, started: float) -> Answer:
    """The result page of one uploaded image."""
    uploads = inputs.uploaded_files(request, state.settings.max_batch)
    if len(uploads) != 1:
        raise InvalidInput("choose one image")
    batch = inputs.decode_uploads(uploads, state.settings.max_batch)
    outcome = state.classifier.classify(batch.pixels, "upload", batch.infos, started, rollout_key(request.environ))
    image = batch.prepared[0]
    upload_data = uploads[0].data
    original = None
    if len(upload_data) <= _PREVIEW_LIMIT:
        original = f"data:{_MIME[image.format]};base64,{base64.b64encode(upload_data).decode()}"
    model_input = "data:image/png;base64," + base64.b64encode(to_png(image.pixels, scale=1)).decode()
    probs = outcome.probs[0].tolist()
    names = outcome.model.class_names
    top3 = [(names[k], probs[k]) for k in outcome.top3[0].tolist()]
    prediction_id = outcome.ids[0]
    token = auth.guard()
    feedback_token = None
    if token is not None:
        feedback_token = token.sign_feedback(prediction_id, outcome.model.version, int(outcome.classes[0]))
    html = _render(
        "result.html",
        model=outcome.model,
        filename=uploads[0].filename,
        image=image,
        original=original,
        model_input=model_input,
        label=outcome.labels[0],
        confidence=probs[int(outcome.classes[0])],
        low_confidence=outcome.low_confidence[0],
        top3=top3,
        prediction_id=str(prediction_id),
        feedback_token=feedback_token,
    )
    return Answer.of(html.encode(), "text/html; charset=utf-8", outcome)


@bp.post("/feedback")
def feedback_form() -> Response:
    state = serving_state()
    try:
        pid = feedback.parse_prediction_id(request.form.get("prediction_id", ""))
        label = feedback.parse_label(request.form.get("true_label", ""))
        token = auth.guard()
        signed = request.form.get("feedback_token")
        if token is None:
            result = feedback.submit(state, pid, label)
        elif signed:  # the result page's form: the token vouches for version and class
            result = feedback.record(state, pid, label, *token.verify_feedback(signed, pid))
        else:  # a client with the API token may use the form as it uses the API
            token.check(request.headers.get("Authorization"))
            result = feedback.submit(state, pid, label)
    except ServiceError as exc:
        if not wants_html():
            raise
        status, headers = http_status(exc)
        return _page("feedback.html", status=status, headers=headers, error=str(exc))
    return _page("feedback.html", result=result)


@bp.get("/predictions")
@require_token
def recent() -> Response:
    error = None
    try:
        rows = serving_state().predlog.recent(limit=50)
    except PredictionLogUnavailable as exc:
        rows, error = [], f"prediction log unavailable: {exc}"
    return _page(
        "predictions.html",
        status=200 if error is None else 503,
        rows=rows,
        error=error,
        predlog=serving_state().settings.predlog,
    )


@bp.get("/model")
def model_card() -> Response:
    state = serving_state()
    serving = state.holder.serving
    if serving is None:
        return _page("model.html", status=503, meta=None)
    model = serving.current
    return _page(
        "model.html",
        meta=model.metadata,
        robustness=_robustness_rows(model.metadata),
        reliability_diagram=(model.path / "reliability_diagram.png").is_file(),
        serving=serving,
        **_arms(state) if serving.candidate is not None else {},
    )


def _arms(state) -> dict[str, object]:
    """The last hour's arms report for the page, or why there is none. It is read from the
    prediction log, so it needs the API token when one is configured, as the log's pages do."""
    if state.arms_report is None:
        return {"arms_error": "the prediction log is off (FC_PREDLOG=off)"}
    try:
        auth.check_request()
    except auth.Unauthorized:
        return {
            "arms_error": "the live comparison reads the prediction log: send the API token, or run "
            "fashion-classifier model report"
        }
    try:
        return {"arms": state.arms_report.get()}
    except PredictionLogUnavailable as exc:
        return {"arms_error": f"prediction log unavailable: {exc}"}


def _robustness_rows(meta: dict) -> list[tuple[str, str, object]]:
    """(variant, what it is, accuracy) in the benchmark's order; metadata.json sorts its keys."""
    robustness = meta.get("robustness")
    accuracy = robustness.get("accuracy") if isinstance(robustness, dict) else None
    if not isinstance(accuracy, dict):
        return []
    names = [name for name in ROBUSTNESS_VARIANTS if name in accuracy]
    names += sorted(name for name in accuracy if name not in ROBUSTNESS_VARIANTS)
    return [(name, ROBUSTNESS_VARIANTS.get(name, ""), accuracy[name]) for name in names]


@bp.get("/model/<any('confusion_matrix', 'training_curves', 'reliability_diagram'):name>.png")
def model_image(name: str) -> Response:
    model = serving_state().model
    if model is None:
        abort(404)
    # The path is the served version's directory plus a fixed name: nothing from the client.
    path = model.path / f"{name}.png"
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="image/png", max_age=300)
