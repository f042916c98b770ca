"""A real 2-worker ``fashion-classifier serve`` and a real Prometheus server scraping its metrics port."""

from __future__ import annotations

import pytest
from harness.prometheus import Prometheus


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), target=f"127.0.0.1:{server.env['FC_METRICS_PORT']}")
    prom.start()
    yield prom
    prom.stop()
