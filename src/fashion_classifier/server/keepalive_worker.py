"""A gunicorn worker that keeps client connections open and never waits on one client.

Each worker is one thread running one epoll loop over its listening socket and its open client
connections (this module: accepting, turns, heartbeats, stopping); requests are read by
``request_reading`` and answered by ``response_writing``, on the state of each ``connection``.
Why not the stock workers: ``sync`` closes every connection after one response, and
``gthread`` hands every request from its poller thread to a pool thread and back; both served
fewer requests per second, with a worse p99 (bench/results/worker-*.md, peers-*.md).

What the loop guarantees:

* **No client can hold the worker.** Connections are read without blocking, into a buffer per
  connection; a request reaches gunicorn's parser and the app only once all of it (head and
  body) has arrived (``framing``), and the parser reads from that buffer, never from the socket.
  A client that trickles its request costs a few ``recv`` calls, not the worker's time.
* **One deadline per request.** A request must arrive whole within ``FC_REQUEST_TIMEOUT``
  seconds of its first byte, with no pause longer than ``REQUEST_READ_TIMEOUT``; otherwise it
  is answered 408 and the connection closed. Bodies over ``FC_MAX_UPLOAD_BYTES`` are answered 413
  from their head, without reading them; partial requests of all connections together may hold
  at most ``BUFFER_BUDGET`` bytes, past which the connection that would exceed it gets a 503.
* **Turns.** A connection that pipelines requests gets one request served per turn of the loop,
  and is not read while a whole request of it waits: it cannot starve the others, and TCP flow
  control holds back the rest. The worker heartbeats to the arbiter between requests, so a
  busy worker is never mistaken for a stuck one.
* **Closing never blocks.** After a response that ends a connection, input the client still
  sends is read and discarded for at most ``CLOSE_LINGER`` seconds from the loop (closing with
  unread input would send a RST that can destroy the response, RFC 9112 section 9.6), instead of
  gunicorn's blocking ``close_graceful``.
* Connections are capped per worker (``FC_WORKER_CONNECTIONS``; the least recently used goes).
  They stay with the worker that accepted them; a worker with open connections waits a moment
  before accepting another, so new ones go to the emptier worker (``_loop``), and each connection
  is closed (``Connection: close``) after ``MAX_REQUESTS_PER_CONNECTION`` requests, so clients'
  pools spread over the workers again, and over new pods after a scale-up.
* Idle connections are closed after gunicorn's ``keepalive`` seconds (``FC_KEEPALIVE``, checked
  once a second; 0 closes every connection after its response, and then gives a new connection
  ``REQUEST_READ_TIMEOUT`` to send its request).
* On SIGTERM the worker closes its listening socket and, for up to ``STOP_LINGER`` seconds,
  answers requests that arrive on its open connections with ``Connection: close``.

Not supported: TLS (terminate it at the ingress or Service mesh) and HTTP/2; the worker refuses
to start with a certificate configured.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from collections import OrderedDict, deque

from gunicorn import util
from gunicorn.arbiter import Arbiter
from gunicorn.workers import base

from fashion_classifier.config import Settings
from fashion_classifier.server.connection import REQUEST_READ_TIMEOUT, Connection
from fashion_classifier.server.framing import RequestFramer
from fashion_classifier.server.request_reading import RECV_SIZE, RequestReading
from fashion_classifier.server.response_writing import ResponseWriting

STOP_LINGER = 2.0  # s a stopping worker still answers requests on its open connections
# A worker waits this long per open connection (at most the max) before it accepts a new one,
# so that an emptier worker takes it first (see _loop).
ACCEPT_DEFER = 0.0005
ACCEPT_DEFER_MAX = 0.005
ACCEPT_RETRY = 0.1  # s before accepting again after running out of file descriptors
NOTIFY_INTERVAL = 1.0  # s between heartbeats to the arbiter (each one is a syscall)


class KeepAliveWorker(RequestReading, ResponseWriting, base.Worker):
    """The worker class gunicorn runs (``worker_class`` in ``gunicorn_conf``)."""

    def init_process(self) -> None:
        if self.cfg.is_ssl:
            self.log.error("KeepAliveWorker does not do TLS: terminate TLS in front of gunicorn")
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR)
        settings = Settings.from_env()
        self.request_timeout = settings.request_timeout
        self.max_body = settings.max_upload_bytes
        # The longest head gunicorn's parser accepts; a longer one is handed to it to refuse.
        self.max_head = (
            (self.cfg.limit_request_line or 8190)
            + (self.cfg.limit_request_fields or 100) * ((self.cfg.limit_request_field_size or 8190) + 2)
            + 4
        )
        super().init_process()

    def run(self) -> None:
        self._selector = selectors.DefaultSelector()
        # fd -> connection, least recently used first
        self._connections: OrderedDict[int, Connection] = OrderedDict()
        self._ready: deque[Connection] = deque()  # connections with a whole request buffered
        self._buffered = 0  # bytes in all connections' buffers
        self._accept_at: float | None = None  # listening sockets paused until then
        self._last_notify = 0.0
        # Every read lands here first, then in its connection's buffer: no allocation per recv.
        self._scratch = memoryview(bytearray(RECV_SIZE))
        self._selector.register(self.PIPE[0], selectors.EVENT_READ, None)
        for listener in self.sockets:
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, listener)
        try:
            self._loop()
            self._linger()
        finally:
            for connection in list(self._connections.values()):
                self._drop(connection)
            self._selector.close()

    def _loop(self) -> None:
        """Read what arrived, serve one request per ready connection, accept between requests.

        Kept-alive connections stay on the worker that accepted them, and the workers race for
        new ones on the shared listening socket: without help, one worker often won most of a
        client's connections, and its requests waited longer. So a worker pauses its listening
        socket for ``ACCEPT_DEFER`` per open connection before accepting, which lets an emptier
        worker win the race; with a connection per request it also evens out the accepts. The
        pause is checked after every request served, not once per turn of the loop: a turn over
        connections sending large batches is long, and new connections waited in the backlog.
        """
        while self.alive:
            self._heartbeat()
            if not self.alive:
                return
            self._resume_accepting()
            timeout = 0.0 if self._ready else NOTIFY_INTERVAL
            if self._accept_at is not None:
                timeout = min(timeout, max(0.0, self._accept_at - time.monotonic()))
            self._dispatch(self._selector.select(timeout))
            self._serve_ready()

    def _dispatch(self, events: list) -> None:
        for key, _ in events:
            data = key.data
            if isinstance(data, Connection):
                self._read(data)
            elif data is None:
                self._drain_wakeup_pipe()
            elif self.alive and self._accept_at is None:
                self._connection_waiting()

    def _heartbeat(self) -> None:
        """Tell the arbiter the worker is alive (at most once per ``NOTIFY_INTERVAL``); expire."""
        now = time.monotonic()
        if now - self._last_notify < NOTIFY_INTERVAL:
            return
        self.notify()
        self._last_notify = now
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False
            return
        self._close_expired(now)

    def _connection_waiting(self) -> None:
        """A listening socket has a connection: accept it, or first give other workers a moment."""
        delay = min(len(self._connections) * ACCEPT_DEFER, ACCEPT_DEFER_MAX)
        if delay > 0:
            self._pause_accepting(delay)
        else:
            for listener in self.sockets:
                self._accept(listener)

    def _pause_accepting(self, delay: float) -> None:
        if self._accept_at is None:
            for listener in self.sockets:
                self._selector.unregister(listener)
        self._accept_at = time.monotonic() + delay

    def _resume_accepting(self) -> None:
        """After a pause: accept what is still waiting (another worker may have taken it)."""
        if self._accept_at is None or time.monotonic() < self._accept_at or not self.alive:
            return
        self._accept_at = None
        for listener in self.sockets:
            self._selector.register(listener, selectors.EVENT_READ, listener)
        for listener in self.sockets:
            self._accept(listener)

    def _linger(self) -> None:
        """Stopping: no new connections; answer what arrives on open ones, with Connection: close."""
        for listener in self.sockets:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(listener)
            # Refused from now on (once every process has closed it), instead of waiting in
            # the backlog for a worker that will never accept them.
            listener.close()
        deadline = time.monotonic() + min(STOP_LINGER, self.cfg.graceful_timeout)
        while self._connections and (remaining := deadline - time.monotonic()) > 0:
            self.notify()
            timeout = 0.0 if self._ready else min(remaining, NOTIFY_INTERVAL)
            self._dispatch(self._selector.select(timeout))  # listeners are unregistered
            self._serve_ready()

    def _drain_wakeup_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.PIPE[0], 64)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, addr = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # The connection stays in the backlog: retry in a moment, not in a busy loop.
                self.log.error("accept failed: %s", exc)
                self._pause_accepting(ACCEPT_RETRY)
                return
            raise
        util.close_on_exec(client)
        if len(self._connections) >= self.cfg.worker_connections:
            self._drop(next(iter(self._connections.values())))
        # The first request may take up to the keep-alive time to come (5 s with keep-alive off).
        first_wait = self.cfg.keepalive or REQUEST_READ_TIMEOUT
        framer = RequestFramer(self.max_head, self.max_body)
        connection = Connection(client, addr, listener.getsockname(), self.cfg, framer, time.monotonic() + first_wait)
        self._connections[connection.fd] = connection
        self._poll(connection)
        # Clients send their request right after connecting, so it is usually here already.
        client.setblocking(False)
        try:
            received = client.recv_into(self._scratch)
        except BlockingIOError:
            received = None
        except OSError:
            self._drop(connection)
            return
        client.settimeout(REQUEST_READ_TIMEOUT)  # bounds each send of a response
        if received is not None:
            self._received(connection, received)

    def _poll(self, connection: Connection) -> None:
        if not connection.polled:
            self._selector.register(connection.sock, selectors.EVENT_READ, connection)
            connection.polled = True

    def _unpoll(self, connection: Connection) -> None:
        if connection.polled:
            self._selector.unregister(connection.sock)
            connection.polled = False

    def _serve_ready(self) -> None:
        """One request for each connection that has a whole one, in arrival order."""
        for _ in range(len(self._ready)):
            connection = self._ready.popleft()
            connection.queued = False
            if connection.framed is None or self._connections.get(connection.fd) is not connection:
                continue  # closed since
            self._serve(connection)
            self._heartbeat()
            self._resume_accepting()
