"""The web layer's error mapping: what a client sees of a failure, and what only the log sees."""

from __future__ import annotations

import logging
import uuid

import pytest
from flask import Flask

from fashion_classifier import errors as errors_
from fashion_classifier.predlog.base import PredictionLogUnavailable
from fashion_classifier.web import auth, errors, feedback


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


def _named_errors() -> set[type[errors_.ServiceError]]:
    """Every named error the domain and the web layer define."""
    found, todo = set(), [errors_.ServiceError]
    while todo:
        for kind in todo.pop().__subclasses__():
            todo.append(kind)
            if kind.__module__.startswith(("fashion_classifier.errors", "fashion_classifier.web")):
                found.add(kind)
    return found


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (errors_.InvalidInput, 400),
        (errors_.EmptyImage, 400),
        (auth.Unauthorized, 401),
        (auth.InvalidFeedbackToken, 403),
        (errors_.ModelNotFound, 404),
        (feedback.PredictionNotFound, 404),
        (errors_.TooLarge, 413),
        (errors_.UnsupportedMediaType, 415),
        (errors_.UnsupportedImageType, 415),
        (errors_.UndecodableImage, 422),
        (errors_.ModelNotReady, 503),
    ],
)
def test_each_named_error_is_answered_with_its_status(kind, status):
    assert errors.http_status(kind("message")) == (status, {"WWW-Authenticate": auth.REALM} if status == 401 else None)


def test_a_recent_unknown_id_is_409_with_retry_after():
    assert errors.http_status(feedback.NotWrittenYet(uuid.uuid1())) == (409, {"Retry-After": "1"})


def test_every_named_error_has_a_status():
    for kind in _named_errors() - {errors_.ImageError}:  # a base, never raised itself
        assert errors.http_status(kind.__new__(kind))[0] != 500, kind  # 500: no entry in STATUSES


def test_an_error_without_a_status_is_a_500_not_a_crash(caplog):
    class Unlisted(errors_.ServiceError):
        pass

    assert errors.http_status(Unlisted("x")) == (500, None)
    assert "Unlisted has no HTTP status" in caplog.text


def test_a_named_error_is_answered_with_its_status_and_message():
    app = Flask(__name__)
    errors.install(app)

    @app.get("/refuse")
    def refuse():  # noqa: ANN202
        raise errors_.UndecodableImage("the image: cannot decode the PNG image")

    response = app.test_client().get("/refuse")
    assert response.status_code == 422
    assert response.get_json() == {"error": "the image: cannot decode the PNG image"}
