"""``fashion-classifier serve``: run the serving app under gunicorn (see ``server.gunicorn_conf``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fashion_classifier.cli import EXIT_UNAVAILABLE, CliError
from fashion_classifier.cli.argtypes import whole_number
from fashion_classifier.config import Settings

APP = "fashion_classifier.web:create_app()"
CONFIG = "python:fashion_classifier.server.gunicorn_conf"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the web page and the APIs with gunicorn",
        description="Serve the upload page, /api/v1, /v1 (TF-Serving style), /v2 (Open Inference "
        "Protocol) and /openapi.json with gunicorn (one keep-alive worker per CPU), and the Open Inference "
        "Protocol over gRPC on --grpc-port (FC_GRPC_PORT; off by default) in a process of its own; Prometheus "
        "metrics at /metrics on their own port (FC_METRICS_PORT, 9464; 0 = off). The current model of "
        "the store (FC_MODEL_DIR) is loaded and new versions are picked up without a restart.",
    )
    p.add_argument("--host", help="address to bind (default: FC_HOST, 127.0.0.1)")
    p.add_argument("--port", type=whole_number(0, 65535), help="port (default: FC_PORT, 8000)")
    p.add_argument(
        "--grpc-port",
        type=whole_number(0, 65535),
        help="port of the gRPC Open Inference Protocol (default: FC_GRPC_PORT, 0 = off; 8081 as KServe)",
    )
    p.add_argument("--workers", type=whole_number(1), help="worker processes (default: FC_WORKERS, else one per CPU)")
    p.add_argument("--model-dir", help="model store (default: FC_MODEL_DIR, else ./model)")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import store
    from fashion_classifier.server import runtime

    # Flags become the environment that gunicorn's config module and every worker read (this
    # process is replaced by gunicorn below, so changing its environment is the hand-over).
    for name, value in (
        ("FC_HOST", args.host),
        ("FC_PORT", args.port),
        ("FC_GRPC_PORT", args.grpc_port),
        ("FC_WORKERS", args.workers),
        ("FC_MODEL_DIR", args.model_dir),
    ):
        if value is not None:
            os.environ[name] = str(value)
    settings = Settings.from_env()  # fail here, with one line, on a bad FC_* value
    try:
        version = store.current_version(settings.model_dir)
    except store.ArtifactError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    if version is None:
        _say(
            settings,
            f"no model in {settings.model_dir} yet; not ready until `fashion-classifier train` publishes one",
            warning=True,
        )
    runtime.pin_threads()
    runtime.prepare_metrics_dir()
    workers = settings.workers or runtime.cpu_count()
    metrics = f"http://{settings.host}:{settings.metrics_port}/metrics" if settings.metrics_port else "off"
    grpc = f"{settings.host}:{settings.grpc_port}" if settings.grpc_port else "off"
    _say(
        settings,
        f"http://{settings.host}:{settings.port} ({workers} workers, model {version or 'none yet'}, "
        f"prediction log {settings.predlog}, metrics {metrics}, gRPC {grpc})",
    )
    argv = [sys.executable, "-m", "gunicorn", "--config", CONFIG, APP]
    # exec: gunicorn's master takes this process's place, so signals (Ctrl-C, SIGTERM from
    # Kubernetes) reach it directly and shut down gracefully.
    os.execv(sys.executable, argv)
    return 0  # not reached


def _say(settings: Settings, text: str, warning: bool = False) -> None:
    """One line on stderr before gunicorn starts: a JSON log line with FC_LOG_FORMAT=json."""
    if settings.log_format == "json":
        from fashion_classifier.server.json_logging import json_line

        line = json_line(logging.WARNING if warning else logging.INFO, text, "fashion_classifier.cli.serve")
    else:
        line = f"fashion-classifier serve: {'warning: ' if warning else ''}{text}"
    print(line, file=sys.stderr, flush=True)
