"""The gRPC server process: ``python -m fashion_classifier.oip_grpc`` (``supervisor`` starts it).

One process, one ``grpc.aio`` server on FC_HOST:FC_GRPC_PORT serving ``InferenceService``, gRPC
health checking and reflection, with its own serving state (model, reload thread, prediction log)
opened like a gunicorn worker's. Its bounds, so that calls whose messages arrive slowly hold at
most ``MAX_CONCURRENT_RPCS`` × the message limit of memory: messages up to FC_MAX_UPLOAD_BYTES and
no more than ``MAX_MESSAGE_BYTES`` (larger ones get ``RESOURCE_EXHAUSTED`` from gRPC itself), at
most ``MAX_CONCURRENT_RPCS`` calls at once (more get ``RESOURCE_EXHAUSTED`` at once instead of
queueing), ``MAX_STREAMS`` per connection, and every connection closed after
``MAX_CONNECTION_AGE_MS`` (its calls get ``CONNECTION_AGE_GRACE_MS`` more).

FC_GRPC_WORKERS processes share the port (SO_REUSEPORT); a single one binds it without, so a
taken port fails its start. Once serving, the process writes one byte to the file descriptor named
by FC_GRPC_READY_FD (its supervisor's pipe), and then a heartbeat byte every HEARTBEAT_INTERVAL from
its event loop for as long as the loop runs (a process whose loop is stuck is killed). SIGTERM,
SIGINT or SIGQUIT: health turns NOT_SERVING, calls in flight get FC_GRACEFUL_TIMEOUT to finish,
then the prediction log is flushed (to the backend or the spool), with further stop signals
ignored, and the process exits. SIGHUP (a terminal's hangup reaches the
whole process group; gunicorn's master takes it as "reload") is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fashion_classifier.config import Settings
from fashion_classifier.inference.serving_state import ServingState, open_state
from fashion_classifier.oip_grpc.service import SERVICE_NAME, InferenceService, add_to_server
from fashion_classifier.oip_grpc.supervisor import HEARTBEAT_INTERVAL, READY_FD_ENV, STOP_SIGNALS
from fashion_classifier.server import runtime

log = logging.getLogger("fashion_classifier.oip_grpc")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # 1,024 FP32 images take 3.2 MB
MAX_CONCURRENT_RPCS = 64  # × MAX_MESSAGE_BYTES: 256 MiB held by calls whose messages have not all arrived
MAX_STREAMS = 8  # concurrent calls on one connection
IDLE_CONNECTION_MS = 300_000
MAX_CONNECTION_AGE_MS = 60_000
CONNECTION_AGE_GRACE_MS = 10_000
HEALTH_INTERVAL = 1.0  # s between updates of the health status from the model's state
Health = health_pb2.HealthCheckResponse


def options(settings: Settings) -> list[tuple[str, int]]:
    return [
        # One process: a taken port fails the bind. Several share it (the supervisor checked it was free).
        ("grpc.so_reuseport", int(settings.grpc_workers > 1)),
        ("grpc.max_receive_message_length", min(settings.max_upload_bytes, MAX_MESSAGE_BYTES)),
        ("grpc.max_concurrent_streams", MAX_STREAMS),
        # A connection without calls for this long is closed (GOAWAY; clients reconnect when they
        # need to), so idle clients do not hold the server's connections forever.
        ("grpc.max_connection_idle_ms", IDLE_CONNECTION_MS),
        # Every connection is closed after this long (its calls get the grace to finish): clients
        # reconnect, which spreads them again over replicas behind a Service, and a call whose
        # message never finishes arriving does not hold its place for ever.
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", CONNECTION_AGE_GRACE_MS),
    ]


async def serve(settings: Settings, state: ServingState) -> None:
    server = grpc.aio.server(options=options(settings), maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS)
    add_to_server(InferenceService(state), server)
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    server.add_insecure_port(f"{host}:{settings.grpc_port}")  # a taken port raises RuntimeError
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping.set)
    status = await _update_health(health_service, state, None)
    await server.start()
    log.info("Serving the Open Inference Protocol over gRPC at %s:%d", host, settings.grpc_port)
    pipe = _signal_ready()
    # It beats on while calls finish below; a stopping process is not killed as hung.
    beating = asyncio.create_task(_beat(pipe)) if pipe is not None else None
    parent = os.getppid()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), HEALTH_INTERVAL)
        if os.getppid() != parent:  # the master is gone (killed): nobody would stop this process
            log.error("the gunicorn master is gone; stopping")
            break
        status = await _update_health(health_service, state, status)
    log.info("Stopping: calls in flight have %d s to finish", settings.graceful_timeout)
    await health_service.enter_graceful_shutdown()
    await server.stop(settings.graceful_timeout)
    if beating is not None:
        beating.cancel()


async def _update_health(service: health.aio.HealthServicer, state: ServingState, status: int | None) -> int:
    """SERVING once a model is loaded; set only on a change (each set() updates every Watch stream)."""
    now = Health.SERVING if state.model is not None else Health.NOT_SERVING
    if now != status:
        for name in ("", SERVICE_NAME):
            await service.set(name, now)
    return now


def _signal_ready() -> int | None:
    """Tell the supervisor this process serves; its pipe (None without a supervisor), for the
    heartbeats."""
    raw = os.environ.pop(READY_FD_ENV, None)
    if raw is None:
        return None
    fd = int(raw)
    os.write(fd, b"1")
    os.set_blocking(fd, False)  # a supervisor that reads no more must not stop the loop
    return fd


async def _beat(pipe: int) -> None:
    while True:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):  # full: it knows we live; gone: so are we
            os.write(pipe, b".")
        await asyncio.sleep(HEARTBEAT_INTERVAL)


def _setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        from fashion_classifier.server.json_logging import JsonFormatter, install_root_handler

        formatter: logging.Formatter = JsonFormatter()
        install_root_handler(formatter)
    else:  # as gunicorn's lines
        formatter = logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S %z")
    handler.setFormatter(formatter)
    log.addHandler(handler)
    log.setLevel(os.environ.get("FC_LOG_LEVEL", "info").upper())
    log.propagate = False


def main() -> int:
    runtime.pin_threads()
    settings = Settings.from_env()
    _setup_logging(settings)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    state = open_state(settings)
    runtime.freeze_heap()
    try:
        asyncio.run(serve(settings, state))
    finally:
        # asyncio.run put the default actions back: a second SIGTERM (the master's on_exit) would
        # kill the process while it flushes the rows of its last calls.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        state.close()  # stops the reload thread, flushes the prediction log
    return 0
