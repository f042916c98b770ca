"""The metrics port: the gunicorn master serves every worker's metrics, summed, on ``FC_METRICS_PORT``.

Why a port of its own: neither the Ingress nor the public Service reaches it, and the
NetworkPolicy admits only Prometheus's namespace to it, so the traffic figures, model versions
and feedback counts are not public. Why the master: a scrape never takes a serving worker from
clients (nor waits behind a slow request), and the master outlives any worker, so a scrape
always sees all of them (``MultiProcessCollector`` reads each worker's files in
``PROMETHEUS_MULTIPROC_DIR``; ``mark_process_dead`` drops a dead worker's live gauges).

prometheus_client does the exposition (content negotiation, gzip, ``name[]`` filtering); the
server around it is the standard library's threading WSGI server, bounded because it lives in
the master: at most ``MAX_CONNECTIONS`` connections at once (more are closed at once, unanswered:
an answer would cost a read of the request in the accepting thread) and ``IO_TIMEOUT`` seconds
per socket read or write.

Imports only prometheus_client and the standard library: the master must stay light (no NumPy)
since it forks every worker.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector

PATH = "/metrics"
MAX_CONNECTIONS = 8
IO_TIMEOUT = 10.0


def metrics_app(metrics_dir: Path) -> Callable[[dict, Callable], Iterable[bytes]]:
    """WSGI app: ``GET /metrics`` is the sum over the workers' files in ``metrics_dir``; other paths 404."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    exposition = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH:
            return exposition(environ, start_response)
        body = json.dumps({"error": f"not found: this port serves only GET {PATH}"}).encode()
        start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


class _Handler(WSGIRequestHandler):
    timeout = IO_TIMEOUT  # per socket operation (StreamRequestHandler sets it on the connection)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Scrapes are not logged (one line every scrape interval would drown the error log)."""


class _BoundedServer(ThreadingMixIn, WSGIServer):
    """One thread per connection, at most ``MAX_CONNECTIONS`` at once."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple, family: socket.AddressFamily) -> None:
        self.address_family = family
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that times out or hangs up: nothing to report (the app's own errors are
        answered 500 by wsgiref and printed there)."""


class MetricsServer:
    """The metrics HTTP server: bound by the constructor (``OSError`` if the port is taken),
    serving from ``start()`` in a daemon thread until ``close()``."""

    def __init__(self, host: str, port: int, metrics_dir: Path) -> None:
        host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - gunicorn's "" means every interface too
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        self._httpd = _BoundedServer(address[:2] if family == socket.AF_INET else address, family)
        self._httpd.set_app(metrics_app(metrics_dir))
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return host, port

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()

    def close_after_fork(self) -> None:
        """In a forked worker: close the inherited listening socket (the thread was not forked)."""
        self._httpd.socket.close()


def mark_process_dead(pid: int, metrics_dir: Path) -> None:
    """Drop a dead worker's live gauges (in-flight, ready, model info) from the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(metrics_dir))
