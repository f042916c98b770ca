"""What a prediction route answers, before it becomes a response.

Each prediction route (``/api/v1/predict``, ``/v1/...:predict``, ``/v2/.../infer``) is a
function from the request to an :class:`Answer`: the body, its headers and the outcome to log.
Its Flask view turns the answer into a response with :func:`respond`, and ``fast_path`` writes
it to the WSGI server directly; both log the outcome once the body is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, request

from fashion_classifier.web.classify import Outcome
from fashion_classifier.web.responses import json_bytes
from fashion_classifier.web.security_headers import NOSNIFF


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


def respond(answer: Answer) -> Response:
    """The answer as the Flask view's response, its outcome logged."""
    response = Response(answer.payload, headers=answer.headers)
    answer.outcome.log(request.remote_addr)
    return response
