"""The serving application: ``create_app()`` builds the Flask app for one process.

Routes: ``/`` upload page, ``/predictions`` and ``/model`` pages, ``/api/v1/*`` (predict,
feedback, prediction history, model), ``/v1/models/<name>:predict`` (TF-Serving style),
``/v2/*`` (Open Inference Protocol and health), ``/openapi.json`` and ``/docs`` (Swagger UI on
it). Prometheus metrics are not here: the gunicorn master serves them on their own port
(``server.metrics_server``).

Under gunicorn the app is created in each worker after the fork (no preload), so the model,
the prediction log's connections and the reload thread all belong to that worker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

# Nothing heavy at import time: the gunicorn master imports this package (for the config
# module) and must not load NumPy or prometheus_client before PROMETHEUS_MULTIPROC_DIR is set.
if TYPE_CHECKING:
    from flask import Flask

    from fashion_classifier.config import Settings
    from fashion_classifier.predlog.base import PredictionLog

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, predlog: PredictionLog | None = None) -> Flask:
    from importlib import resources

    from flask import Flask, Response

    from fashion_classifier.config import Settings
    from fashion_classifier.inference.serving_state import open_state
    from fashion_classifier.web import api, api_docs, errors, observability, oip, pages, security_headers, tfserving
    from fashion_classifier.web.fast_path import FastPath
    from fashion_classifier.web.state import EXTENSION

    settings = settings or Settings.from_env()
    # No implicit /static route: the only static files are the docs page's, served by name (api_docs).
    app = Flask(__name__, static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        # Werkzeug keeps non-file form fields in memory up to this size; files may use the
        # whole upload limit.
        MAX_FORM_MEMORY_SIZE=min(settings.max_upload_bytes, 1024 * 1024),
    )
    state = open_state(settings, predlog)
    app.extensions[EXTENSION] = state

    @app.context_processor
    def _model() -> dict[str, object]:
        return {"model": state.model}

    openapi = resources.files("fashion_classifier.web").joinpath("openapi.json").read_bytes()

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        return Response(openapi, mimetype="application/json")

    for blueprint in (pages.bp, api_docs.bp, api.bp, tfserving.bp, oip.bp):
        app.register_blueprint(blueprint)
    # Once the routes are registered (its table is read from them), and inside the metrics
    # middleware, so its answers are counted like Flask's.
    app.wsgi_app = FastPath(app, state, settings.max_upload_bytes)
    observability.install(app)
    errors.install(app)
    security_headers.install(app)
    return app
