"""The web layer's error mapping: what a client sees of a failure, and what only the log sees."""

from __future__ import annotations

import logging

from flask import Flask

from fashion_classifier.predlog.base import PredictionLogUnavailable
from fashion_classifier.web import errors


def test_a_503_says_what_is_unavailable_and_keeps_the_driver_error_in_the_log(caplog):
    app = Flask(__name__)
    errors.install(app)

    @app.get("/read")
    def read():  # noqa: ANN202
        try:
            raise OSError("Unable to connect to any servers: {'10.244.0.17:9042': ConnectionRefusedError(111)}")
        except OSError as exc:
            raise PredictionLogUnavailable("reading from Cassandra failed; retry shortly") from exc

    with caplog.at_level(logging.WARNING):
        response = app.test_client().get("/read")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.get_json() == {"error": "prediction log unavailable: reading from Cassandra failed; retry shortly"}
    assert "10.244.0.17" not in response.get_data(as_text=True)
    assert "10.244.0.17:9042" in caplog.text  # the operator still sees why
