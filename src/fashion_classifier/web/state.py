"""The serving state of one app instance, kept in ``app.extensions`` (no module-level state)."""

from __future__ import annotations

from flask import current_app

from fashion_classifier.inference.serving_state import ServingState

EXTENSION = "fashion_classifier"


def serving_state() -> ServingState:
    return current_app.extensions[EXTENSION]


def state_of(app: object) -> ServingState | None:
    """The state ``app`` serves with; None for a WSGI app ``create_app`` did not make (a test's)."""
    return getattr(app, "extensions", {}).get(EXTENSION)
