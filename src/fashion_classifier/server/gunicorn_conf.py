"""gunicorn settings for the serving app: ``gunicorn -c python:fashion_classifier.server.gunicorn_conf``.

``fashion-classifier serve`` uses this module; values come from ``Settings.from_env()``.

* ``KeepAliveWorker`` workers (``keepalive_worker``: the sync worker's one request at a time,
  plus HTTP keep-alive), one per CPU by default (``FC_WORKERS``): the request cost is CPU, so
  more workers than cores only add memory. ``GUNICORN_CMD_ARGS="--worker-class sync"`` brings
  back gunicorn's own sync worker.
* No ``preload_app``: each worker imports the app after the fork and owns its interpreter,
  reload thread and prediction-log connections (threads and sockets do not survive a fork).
  A worker is ready quickly, since nothing imports TensorFlow.
* ``PROMETHEUS_MULTIPROC_DIR`` is prepared here, in the master, before any worker imports
  prometheus_client; dead workers' live gauges are dropped in ``child_exit``, after the
  prediction-log rows a killed worker still held in memory are counted as lost.
* The master serves the workers' summed metrics at ``/metrics`` on ``FC_METRICS_PORT`` (same host,
  its own port, ``metrics_server``), started in ``when_ready``; the app's port has no
  ``/metrics``. A taken metrics port stops gunicorn at startup, as a taken app port does.
* ``FC_GRPC_PORT``: the master also starts the Open Inference Protocol's gRPC server processes
  (``oip_grpc``, FC_GRPC_WORKERS of them) in ``when_ready``, restarts one that exits or hangs
  (FC_TIMEOUT without a heartbeat), passes its stop signals on to them and waits for them in
  ``on_exit``. A gRPC server that cannot start stops gunicorn at startup; while none serves, the
  workers' readiness fails.
* Requests gunicorn's own HTTP parser refuses (header or URL too long, ...) get a JSON error
  body like every other error (``protocol_errors``).
* Once a worker has loaded the app, its heap so far is frozen out of the cyclic GC
  (``runtime.freeze_heap``): full collections then walk only what requests allocate.
* ``FC_LOG_FORMAT=json`` makes every log line one JSON object (``json_logging``), with gunicorn's
  handlers kept: errors on stderr, the access log where ``FC_ACCESS_LOG`` says.
* Graceful shutdown: SIGTERM lets in-flight requests finish within ``FC_GRACEFUL_TIMEOUT``;
  each worker flushes its prediction-log queue (to the backend or the spool) as it exits.
"""

from __future__ import annotations

import os
import shutil

from fashion_classifier.config import Settings
from fashion_classifier.server import protocol_errors, runtime

runtime.pin_threads()
protocol_errors.install()
_metrics_dir = runtime.prepare_metrics_dir()
_settings = Settings.from_env()

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers or runtime.cpu_count()
worker_class = "fashion_classifier.server.keepalive_worker.KeepAliveWorker"
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
worker_connections = _settings.worker_connections
backlog = 2048
preload_app = False
# The heartbeat file lives in memory: a disk-backed /tmp can stall workers under I/O load.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
# Errors to stderr; no access log by default (it costs a noticeable share of the per-request
# budget); FC_ACCESS_LOG=- turns it on.
errorlog = "-"
accesslog = os.environ.get("FC_ACCESS_LOG") or None
loglevel = os.environ.get("FC_LOG_LEVEL", "info")
# FC_LOG_FORMAT=json: the same lines, each one JSON object (json_logging); text is gunicorn's own.
if _settings.log_format == "json":
    logger_class = "fashion_classifier.server.json_logging.JsonLogger"
proc_name = "fashion-classifier"
# gunicorn >= 27 opens a control socket at a fixed path under $HOME: unused here, and two
# servers on one machine (tests, benchmarks) would fight over it.
control_socket_disable = True


_metrics_server = None  # the master's MetricsServer, once when_ready has started it
_grpc = None  # the master's GrpcSupervisor, once when_ready has started it


def when_ready(server) -> None:  # noqa: ANN001 - gunicorn hook signature
    _start_metrics_server(server)
    _start_grpc(server)


def _start_grpc(server) -> None:  # noqa: ANN001
    global _grpc
    if not _settings.grpc_port:
        return
    from fashion_classifier.oip_grpc.supervisor import GrpcSupervisor, StartError

    try:
        _grpc = GrpcSupervisor(
            _settings.grpc_workers,
            _settings.host,
            _settings.grpc_port,
            server.log,
            forget=lambda pid: _forget_process(server, pid, f"the gRPC server (pid {pid})"),
            timeout=_settings.timeout,
            status_dir=_metrics_dir,
        ).start()
    except StartError as exc:
        on_exit(server)
        where = f"{_settings.host}:{_settings.grpc_port}"
        raise RuntimeError(f"cannot serve gRPC on {where} (FC_GRPC_PORT): {exc}") from None


def _start_metrics_server(server) -> None:  # noqa: ANN001
    global _metrics_server
    if not _settings.metrics_port:
        return
    from fashion_classifier.server.metrics_server import MetricsServer

    try:
        _metrics_server = MetricsServer(_settings.host, _settings.metrics_port, _metrics_dir).start()
    except OSError as exc:
        on_exit(server)
        # gunicorn prints a RuntimeError as one line and exits 1 (before any worker starts).
        raise RuntimeError(
            f"cannot serve metrics on {_settings.host}:{_settings.metrics_port} (FC_METRICS_PORT): {exc}"
        ) from None
    host, port = _metrics_server.address
    server.log.info("Serving metrics at http://%s:%d/metrics", host, port)


def post_fork(server, worker) -> None:  # noqa: ANN001 - gunicorn hook signature
    if _metrics_server is not None:
        _metrics_server.close_after_fork()


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn hook signature
    runtime.freeze_heap()


def child_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn hook signature
    _forget_process(server, worker.pid, f"worker {worker.pid}")


def _forget_process(server, pid: int, what: str) -> None:  # noqa: ANN001
    """A dead serving process (worker or gRPC server): count the prediction-log rows it still held
    in memory as lost, and drop its live gauges."""
    from fashion_classifier.predlog.metrics import count_lost_rows
    from fashion_classifier.server.metrics_server import mark_process_dead

    lost = count_lost_rows(pid, _metrics_dir)
    if lost:
        server.log.error("%s died holding %d prediction-log rows in memory: they are lost", what, lost)
    mark_process_dead(pid, _metrics_dir)


def worker_exit(server, worker) -> None:  # noqa: ANN001
    """Close the worker's serving state (flushing its prediction log) as the worker exits."""
    app = getattr(worker, "wsgi", None)
    if app is None:
        return  # the app never loaded
    from fashion_classifier.web.state import state_of

    state = state_of(app)
    if state is not None:
        try:
            state.close()
        except Exception:  # noqa: BLE001 - a failing flush must not keep the worker from exiting
            server.log.exception("closing the serving state failed")


def on_exit(server) -> None:  # noqa: ANN001
    if _grpc is not None:
        _grpc.stop(_settings.graceful_timeout)
    if _metrics_server is not None:
        _metrics_server.close()
    if os.environ.get(runtime.OWNED_ENV) == "1":
        shutil.rmtree(_metrics_dir, ignore_errors=True)
