"""FC_LOG_FORMAT=json: every line a real ``fashion-classifier serve`` writes is one JSON object.

The server runs on 127.0.0.2, a loopback address outside the token check's local ones, so every
worker logs the app's "no FC_API_TOKEN" warning as it boots.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta

import pytest
import requests
from harness.ports import free_port
from harness.server import ServerProcess, serve_command, serve_env

from fashion_classifier.server import json_logging, stderr_relay

pytestmark = pytest.mark.timeout(120)

HOST = "127.0.0.2"
FIELDS = {"time", "level", "logger", "message"}


def _parse(line: str) -> dict:
    record = json.loads(line)
    assert isinstance(record, dict) and record.keys() >= FIELDS, line
    assert datetime.fromisoformat(record["time"]).utcoffset() == timedelta(0), line
    return record


def test_every_line_of_a_real_server_is_json(shipped_store, tmp_path):
    port = free_port(HOST)
    env = serve_env(
        tmp_path,
        shipped_store,
        port=port,
        workers=2,
        metrics_port=free_port(HOST),
        extra={"FC_HOST": HOST, "FC_LOG_FORMAT": "json", "FC_ACCESS_LOG": "-"},
    )
    # stdout (the access log) and stderr (everything else) both go to this file.
    server = ServerProcess(serve_command(), env, port, tmp_path / "serve.log", host=HOST)
    server.start(timeout=60, workers=2)
    try:
        response = requests.get(
            f"{server.base_url}/v2/health/live?probe=1", headers={"X-Request-Id": 'req-"42"'}, timeout=10
        )
        assert response.status_code == 200
        assert requests.get(f"{server.base_url}/no/such/page", timeout=10).status_code == 404
    finally:
        assert server.stop() == 0  # after the shutdown's own lines, all drained
    lines = (tmp_path / "serve.log").read_text().splitlines()
    records = [_parse(line) for line in lines]  # every line, none skipped

    by_logger = {r["logger"] for r in records}
    assert {"fashion_classifier.cli.serve", "gunicorn.error", "gunicorn.access"} <= by_logger, by_logger
    # LiteRT's native "INFO: Created TensorFlow Lite XNNPACK delegate" at each model load, relayed.
    assert any(r["logger"] == "stderr" and "XNNPACK" in r["message"] for r in records), by_logger
    assert any(r["message"] == "Shutting down: Master" for r in records), lines[-5:]

    warnings = [r for r in records if r["logger"] == "fashion_classifier.web.auth"]
    assert len(warnings) == 2, warnings  # one per worker, from the worker's own process
    assert all(r["level"] == "WARNING" and "no FC_API_TOKEN" in r["message"] for r in warnings)
    assert len({r["pid"] for r in warnings}) == 2

    # gunicorn escapes quotes for its text lines; JSON lines carry the value itself.
    [live] = [r for r in records if r["logger"] == "gunicorn.access" and r.get("request_id") == 'req-"42"']
    assert live["method"] == "GET" and live["path"] == "/v2/health/live" and live["query"] == "probe=1"
    assert live["status"] == 200 and live["level"] == "INFO" and live["remote_addr"].startswith("127.")
    assert isinstance(live["duration_seconds"], float) and 0 <= live["duration_seconds"] < 10
    [missing] = [r for r in records if r["logger"] == "gunicorn.access" and r["path"] == "/no/such/page"]
    assert missing["status"] == 404 and "request_id" not in missing


def _formatted(emit) -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_logging.JsonFormatter())
    log = logging.getLogger("fc.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        emit(log)
    finally:
        log.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    return _parse(line)


def test_an_exception_is_one_string_field():
    def emit(log: logging.Logger) -> None:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.exception("failed on %s", "x")

    record = _formatted(emit)
    assert record["level"] == "ERROR" and record["logger"] == "fc.test.json" and record["message"] == "failed on x"
    assert isinstance(record["exception"], str) and "Traceback" in record["exception"]
    assert record["exception"].rstrip().endswith("ZeroDivisionError: division by zero")


def test_stderr_lines_from_native_code_are_wrapped():
    formatter = json_logging.JsonFormatter()
    native = _parse(stderr_relay.as_json_line(b"INFO: Created TensorFlow Lite XNNPACK delegate", formatter.format))
    assert native["logger"] == "stderr" and native["level"] == "INFO" and native["message"].startswith("INFO: ")
    other = _parse(stderr_relay.as_json_line(b"Exception ignored in: <x>", formatter.format))
    assert other["level"] == "WARNING" and other["message"] == "Exception ignored in: <x>"
    already = json_logging.json_line(logging.ERROR, "as is").encode()
    assert stderr_relay.as_json_line(already, formatter.format) == already + b"\n"
