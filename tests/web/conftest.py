"""Fixtures for the web tests: an app on a private copy of the model store with a real SQLite log."""

from __future__ import annotations

import dataclasses

import pytest

from fashion_classifier.config import Settings
from fashion_classifier.predlog import open_log
from fashion_classifier.web import create_app
from fashion_classifier.web.state import EXTENSION


@pytest.fixture
def settings(model_store, tmp_path) -> Settings:
    return Settings(
        model_dir=model_store,
        reload_interval=0,  # tests call holder.check() themselves
        predlog="sqlite",
        sqlite_path=tmp_path / "predictions.sqlite3",
        spool_dir=tmp_path / "spool",
        client_salt="test-salt",
    )


@pytest.fixture
def make_app(settings):
    """make_app(**overrides) -> a Flask app; every app made is closed after the test."""
    made = []

    def make(**overrides):
        chosen = dataclasses.replace(settings, **overrides)
        app = create_app(chosen, open_log(chosen))
        app.testing = True
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions[EXTENSION].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def state(app):
    return app.extensions[EXTENSION]
