"""A real Prometheus server (Debian's ``prometheus``) scraping one target, queried over its HTTP API."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

from harness.ports import free_port
from harness.server import ServerError, ServerProcess

PROMETHEUS = "prometheus"
SCRAPE_INTERVAL = "1s"

CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: {job}
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
"""


def prometheus_binary() -> str:
    path = shutil.which(PROMETHEUS)
    if path is None:
        raise ServerError("prometheus not found on PATH (Debian package 'prometheus', see scripts/apt-packages.txt)")
    return path


class Prometheus:
    """``prometheus`` with its own config, TSDB dir and port; ``query`` answers instant vectors."""

    def __init__(
        self,
        workdir: Path,
        target: str = "",
        job: str = "fashion-classifier",
        scrape_configs: str | None = None,
        binary: str | None = None,
    ) -> None:
        """One static ``target``, or a whole configuration (``scrape_configs``: service discovery,
        with a ``binary`` that has it: Debian's is built without Kubernetes discovery)."""
        self.workdir = workdir
        self.job = job
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(scrape_configs or CONFIG.format(interval=SCRAPE_INTERVAL, job=job, target=target))
        self.port = free_port()
        command = [
            binary or prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process = ServerProcess(
            command,
            env={"PATH": "/usr/bin:/bin"},
            port=self.port,
            log_path=workdir / "prometheus.log",
            ready_path="/-/ready",
        )

    @property
    def url(self) -> str:
        return self.process.base_url

    def start(self, timeout: float = 30.0) -> Prometheus:
        self.process.start(timeout=timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query(self, promql: str) -> list[dict]:
        """The result vector of an instant query; raises on a query error."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {body}")
        return body["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        """The single value of a one-element vector, or None when the vector is empty."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"{promql!r} returned {len(result)} series: {result}")
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, expected: float, timeout: float = 20.0) -> float:
        """Poll until ``promql`` equals ``expected`` (the scrape interval delays every change)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.scalar(promql)
            if value == expected:
                return value
            time.sleep(0.25)
        raise AssertionError(f"{promql!r} = {value}, expected {expected} within {timeout:.0f} s")

    def wait_scraped_after(self, moment: float, timeout: float = 20.0) -> None:
        """Wait until a successful scrape of the target started after unix time ``moment``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as resp:
                targets = json.load(resp)["data"]["activeTargets"]
            for target in targets:
                if target["health"] == "up" and _rfc3339_to_unix(target["lastScrape"]) > moment:
                    return
            time.sleep(0.25)
        raise AssertionError(f"no successful scrape after {moment} within {timeout:.0f} s: {targets}")


def _rfc3339_to_unix(stamp: str) -> float:
    from datetime import datetime

    # Prometheus prints nanoseconds; fromisoformat accepts at most microseconds.
    head, _, frac = stamp.partition(".")
    if frac:
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits) :]
        stamp = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
