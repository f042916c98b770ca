"""Open Inference Protocol (KServe V2) REST endpoints under ``/v2``, health checks included.

Health follows the protocol: 200 means true and a 4xx (400) means false. Liveness depends on
nothing but the process answering (never on the model or the prediction log); readiness is
true once a model is loaded and, with a gRPC port, while a gRPC server process serves. Errors
are ``{"error": "..."}`` with 400 (bad request) or 404 (unknown model or version). The request
and tensor formats are in ``oip_codec``.
"""

from __future__ import annotations

from flask import Blueprint, Response
from werkzeug.wrappers import Request

from fashion_classifier import __version__
from fashion_classifier.inference import oip_tensors
from fashion_classifier.inference.arms import check_model_name, choose_version, not_loaded
from fashion_classifier.inference.serving_state import ServingState
from fashion_classifier.server import grpc_status
from fashion_classifier.web import answers, oip_codec
from fashion_classifier.web.answers import Answer, rollout_key
from fashion_classifier.web.responses import json_response
from fashion_classifier.web.state import serving_state

bp = Blueprint("oip", __name__, url_prefix="/v2")

EXTENSIONS = ["binary_tensor_data"]


@bp.get("/health/live")
def live() -> Response:
    return json_response({"live": True})


@bp.get("/health/ready")
def ready() -> Response:
    if serving_state().model is None:
        return json_response({"ready": False, "error": "no model loaded yet"}, 400)
    if grpc_status.serving() == 0:  # the pod's gRPC port would refuse calls (None: no gRPC server)
        return json_response({"ready": False, "error": "no gRPC server process is serving"}, 400)
    return json_response({"ready": True})


@bp.get("")
def server_metadata() -> Response:
    return json_response({"name": oip_tensors.SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})


@bp.get("/models/<model_name>")
@bp.get("/models/<model_name>/versions/<model_version>")
def model_metadata(model_name: str, model_version: str | None = None) -> Response:
    state = serving_state()
    check_model_name(model_name, state.settings.model_name)
    versions = state.versions
    if model_version is not None and model_version not in versions:
        raise not_loaded(model_name, model_version)
    return json_response(oip_tensors.model_metadata(model_name, versions))


@bp.get("/models/<model_name>/ready")
@bp.get("/models/<model_name>/versions/<model_version>/ready")
def model_ready(model_name: str, model_version: str | None = None) -> Response:
    state = serving_state()
    check_model_name(model_name, state.settings.model_name)
    versions = state.versions
    is_ready = bool(versions) and (model_version is None or model_version in versions)
    body = {"name": model_name, "ready": is_ready}
    if model_version is not None:
        body["version"] = model_version
    return json_response(body, 200 if is_ready else 400)


def run_inference(
    state: ServingState, request: Request, started: float, model_name: str, model_version: str | None = None
) -> Answer:
    check_model_name(model_name, state.settings.model_name)
    serving = state.classifier.serving()  # read once: this request uses this rollout throughout
    # A named version is answered by that exact version, whichever arm serves it.
    choice = choose_version(serving, model_name, model_version, rollout_key(request.environ))
    body = request.get_data(cache=False)
    # From the environ: request.headers would build a header view first, for one header.
    header_length = request.environ.get(oip_codec.HEADER_LENGTH_ENVIRON)
    req = oip_codec.parse(body, header_length, state.settings.max_batch)
    outcome = state.classifier.classify(req.pixels, "v2", req.infos, started, choice=choice)
    payload, content_type, header_length = oip_codec.encode(outcome, req, model_name)
    extra = [] if header_length is None else [(oip_codec.HEADER_LENGTH, header_length)]
    return Answer.of(payload, content_type, outcome, *extra)


infer = answers.view(run_inference)
bp.add_url_rule("/models/<model_name>/infer", "infer", infer, methods=["POST"])
bp.add_url_rule("/models/<model_name>/versions/<model_version>/infer", "infer", infer, methods=["POST"])
