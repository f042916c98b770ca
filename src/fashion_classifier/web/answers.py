"""What a prediction route answers, before it becomes a response.

Each prediction route (``/api/v1/predict``, ``/v1/...:predict``, ``/v2/.../infer``, the upload
page) is a function from the request to an :class:`Answer`: the body, its headers and the
outcome to log. :func:`answered` runs it and logs the outcome once the body is built, for the
Flask view (:func:`view`) and for ``fast_path``, which writes the answer to the WSGI server directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, request
from werkzeug.wrappers import Request

from fashion_classifier.inference.classifier import Outcome
from fashion_classifier.inference.serving_state import ServingState
from fashion_classifier.web.observability import request_started
from fashion_classifier.web.responses import json_bytes
from fashion_classifier.web.security_headers import NOSNIFF
from fashion_classifier.web.state import serving_state

# The headers that assign a request to a rollout's arm, in order: a client's session id keeps all
# its requests with one version; a request id keeps a retried request with its version.
ROLLOUT_KEY_HEADERS = ("HTTP_X_SESSION_ID", "HTTP_X_REQUEST_ID")


def rollout_key(environ: dict) -> str | None:
    """What assigns a request to a canary's arm (``inference.arms``); None: a random draw."""
    for name in ROLLOUT_KEY_HEADERS:
        value = environ.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Answer:
    payload: bytes
    headers: list[tuple[str, str]]  # Content-Type, Content-Length, nosniff and any of the protocol's own
    outcome: Outcome

    @classmethod
    def json(cls, obj: Any, outcome: Outcome) -> Answer:
        return cls.of(json_bytes(obj), "application/json", outcome)

    @classmethod
    def of(cls, payload: bytes, content_type: str, outcome: Outcome, *extra: tuple[str, str]) -> Answer:
        # nosniff here too: the fast path answers without Flask's after_request hooks.
        headers = [("Content-Type", content_type), ("Content-Length", str(len(payload))), NOSNIFF, *extra]
        return cls(payload, headers, outcome)


# A prediction route: (state, request, started, **path parameters) -> its answer.
Run = Callable[..., Answer]


def answered(run: Run, state: ServingState, request: Request, started: float, **params: str) -> Answer:
    """``run``'s answer to the request, its outcome logged: the one place a REST outcome is logged."""
    answer = run(state, request, started, **params)
    state.classifier.log(answer.outcome, request.remote_addr)
    return answer


def view(run: Run) -> Callable[..., Response]:
    """The Flask view of a prediction route that ``run`` answers; ``fast_path`` finds ``run`` on it."""

    def predict(**params: str) -> Response:
        answer = answered(run, serving_state(), request, request_started(), **params)
        return Response(answer.payload, headers=answer.headers)

    predict.run = run  # type: ignore[attr-defined]
    return predict
