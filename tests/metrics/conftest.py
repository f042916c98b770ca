"""A real 2-worker ``fashion-classifier serve`` and a real Prometheus server scraping its metrics port."""

from __future__ import annotations

import shutil

import pytest
from harness.prometheus import Prometheus
from harness.server import start_serve

from fashion_classifier.config import DEFAULT_MODEL_DIR


@pytest.fixture(scope="module")
def store_copy(tmp_path_factory):
    target = tmp_path_factory.mktemp("metrics") / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


@pytest.fixture(scope="module")
def server(store_copy, tmp_path_factory):
    srv = start_serve(tmp_path_factory.mktemp("metrics-serve"), store_copy, workers=2, predlog="sqlite")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), target=f"127.0.0.1:{server.env['FC_METRICS_PORT']}")
    prom.start()
    yield prom
    prom.stop()
