"""A gunicorn worker that keeps client connections open and never waits on one client.

Each worker is one thread running one epoll loop over its listening socket and its open client
connections. Why not the stock workers (same hour, wrk, 16 connections):

* ``sync`` closes every connection after one response: V2 single-tensor requests ran at
  2,230-2,340 req/s there and at 2,810-2,960 here; 256-image batches answered in p50 96 ms and
  p99 190-220 ms here against 113 and 140 with ``sync``.
* ``gthread`` hands every request from its poller thread to a pool thread and back:
  2,180-2,210 req/s on the same load, and a worse p99.

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

A response is written with the socket in blocking mode, each send bounded by
``REQUEST_READ_TIMEOUT``: a client that stops reading its responses can hold the worker for
that long once, then it is closed. Not supported: TLS (terminate it at the ingress or Service
mesh) and HTTP/2; the worker refuses to start with a certificate configured.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from collections import OrderedDict, deque
from datetime import datetime
from http import HTTPStatus

from gunicorn import http, util
from gunicorn.arbiter import Arbiter
from gunicorn.http import wsgi
from gunicorn.http.unreader import Unreader
from gunicorn.workers import base

from fashion_classifier.config import Settings
from fashion_classifier.web.framing import HAND_OVER, MALFORMED, Framed, RequestFramer
from fashion_classifier.web.protocol_errors import write_json_error

REQUEST_READ_TIMEOUT = 5.0  # s a started request may pause; also bounds each send of a response
MAX_REQUESTS_PER_CONNECTION = 1000
STOP_LINGER = 2.0  # s a stopping worker still answers requests on its open connections
CLOSE_LINGER = 2.0  # s input is discarded after a response that closes the connection
CLOSE_LINGER_BYTES = 1024 * 1024  # ... and at most this much of it
BUFFER_BUDGET = 32 * 1024 * 1024  # bytes all partial requests of a worker may hold together
RECV_SIZE = 256 * 1024  # one read per readiness event
FEED_PIECE = 64 * 1024  # the parser gets a buffered request in pieces of this size (_RequestFeed)
# A worker waits this long per open connection (at most the max) before it accepts a new one,
# so that an emptier worker takes it first (see _loop).
ACCEPT_DEFER = 0.0005
ACCEPT_DEFER_MAX = 0.005
ACCEPT_RETRY = 0.1  # s before accepting again after running out of file descriptors
NOTIFY_INTERVAL = 1.0  # s between heartbeats to the arbiter (each one is a syscall)
_NEVER = float("inf")


class _RequestFeed(Unreader):
    """The parser's source: requests the worker buffered, handed over in pieces, never the socket.

    gunicorn's ``Unreader.read(size)`` keeps what follows the ``size`` bytes it returns by copying
    it into a new buffer: with a whole body there, an app reading 64 KiB at a time made it copy
    the rest of the body at every read (256-image batches lost 12-14 % of their throughput,
    bench/results/worker-2026-12-06-run1.md). In pieces, it holds one at most.

    The pieces of a body framed by Content-Length are views of the connection's buffer, which the
    feed takes over: gunicorn copies whatever it reads there (the head parser and ``LengthReader``
    go through ``bytearray.extend`` and ``BytesIO``). Its chunked-body reader works on the pieces
    themselves (``rest += ...``), so other requests get ``bytes``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pieces: deque[memoryview | bytes] = deque()

    def feed(self, request: bytearray, views: bool) -> None:
        """Hand over ``request``, which the caller no longer changes; ``views``: no copies."""
        view = memoryview(request)
        pieces = (view[i : i + FEED_PIECE] for i in range(0, len(view), FEED_PIECE))
        self._pieces.extend(pieces if views else map(bytes, pieces))

    def chunk(self, size_hint: int | None = None) -> memoryview | bytes:
        return self._pieces.popleft() if self._pieces else b""  # b"": the end of what arrived


class _Connection:
    __slots__ = ("sock", "fd", "addr", "server", "parser", "source", "framer", "buf", "framed", "request_deadline",
                 "deadline", "polled", "queued", "continued", "closing", "discarded")

    def __init__(self, sock: socket.socket, addr: object, server: object, cfg: object, framer: RequestFramer,
                 deadline: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # the key in the worker's table, still known once closed
        self.addr = addr
        self.server = server  # the listener's address, for the WSGI environ
        # The parser reads only what the worker hands it, never the socket.
        self.parser = http.get_parser(cfg, (), addr)
        self.source = self.parser.unreader = _RequestFeed()
        self.framer = framer
        self.buf = bytearray()  # received, not yet handed to the parser
        self.framed: Framed | None = None  # a whole request is in buf, waiting for its turn
        self.request_deadline = _NEVER  # the request being received must be whole by then
        self.deadline = deadline  # closed (or answered 408) when still waiting then
        self.polled = False  # registered with the worker's selector
        self.queued = False  # in the worker's ready queue
        self.continued = False  # "100 Continue" sent for the request being received
        self.closing = False  # response sent, input being discarded until the close
        self.discarded = 0


class KeepAliveWorker(base.Worker):
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
        self._connections: OrderedDict[int, _Connection] = OrderedDict()
        self._ready: deque[_Connection] = deque()  # connections with a whole request buffered
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
        new ones on the shared listening socket: wrk's 16 connections landed 12 to 4 in 1 run of
        10, 10 to 6 in another, and the busier worker's requests waited longer. So a worker
        pauses its listening socket for ``ACCEPT_DEFER`` per open connection before accepting,
        which lets an emptier worker win the race (8 to 8 or 7 to 9 in 10 runs of 10). With a
        connection per request it also evens out the accepts: 2,500 req/s without the pause,
        2,640-2,760 with it. The pause is checked after every request served, not once per
        turn of the loop: a turn over 8 connections sending 256-image batches takes ~100 ms,
        and new connections waited up to a second in the backlog.
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
            if isinstance(data, _Connection):
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
        connection = _Connection(client, addr, listener.getsockname(), self.cfg, framer,
                                 time.monotonic() + first_wait)
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

    def _poll(self, connection: _Connection) -> None:
        if not connection.polled:
            self._selector.register(connection.sock, selectors.EVENT_READ, connection)
            connection.polled = True

    def _unpoll(self, connection: _Connection) -> None:
        if connection.polled:
            self._selector.unregister(connection.sock)
            connection.polled = False

    def _close_expired(self, now: float) -> None:
        for connection in [c for c in self._connections.values() if c.deadline < now]:
            if connection.buf and not connection.closing:
                if now >= connection.request_deadline:
                    why = f"the request did not arrive in time (limit {self.request_timeout:g} s)"
                else:
                    why = f"the request stopped arriving (nothing for {REQUEST_READ_TIMEOUT:g} s)"
                self._refuse(connection, 408, why)
            else:
                self._drop(connection)

    def _read(self, connection: _Connection) -> None:
        if connection.framed is not None:
            return  # a whole request waits for its turn; the rest stays in the kernel
        try:
            received = connection.sock.recv_into(self._scratch)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            self._drop(connection)
            return
        if connection.closing:
            connection.discarded += received
            if not received or connection.discarded > CLOSE_LINGER_BYTES:
                self._drop(connection)
            return
        self._received(connection, received)

    def _received(self, connection: _Connection, received: int) -> None:
        """Buffer the ``received`` bytes; queue the connection once a whole request is there."""
        if not received:
            self._drop(connection)  # the client closed
            return
        now = time.monotonic()
        if not connection.buf:
            connection.request_deadline = now + self.request_timeout
        connection.buf += self._scratch[:received]
        self._buffered += received
        if self._buffered > BUFFER_BUDGET:
            self._refuse(connection, 503, "too many requests are being received at once; retry shortly")
            return
        connection.deadline = min(connection.request_deadline, now + REQUEST_READ_TIMEOUT)
        self._frame(connection)

    def _frame(self, connection: _Connection) -> None:
        framed = connection.framer.scan(connection.buf)
        if framed is None:
            if connection.framer.expects_continue and not connection.continued:
                connection.continued = True
                with contextlib.suppress(OSError):
                    connection.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        connection.framed = framed
        connection.deadline = _NEVER  # waiting for the worker now, not for the client
        if not connection.queued:
            connection.queued = True
            self._ready.append(connection)

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

    def _serve(self, connection: _Connection) -> None:
        """Answer the buffered request; keep the connection if HTTP allows."""
        framed = connection.framed
        connection.framed = None
        if framed.body_too_large:
            self._refuse(connection, 413, f"the request body exceeds the limit of {self.max_body:,} bytes")
            return
        if framed.end == MALFORMED:
            self._refuse(connection, 400, "malformed chunked body (chunk size or delimiter)")
            return
        handed_over = framed.end == HAND_OVER
        end = len(connection.buf) if handed_over else framed.end
        if end == len(connection.buf):
            request, connection.buf = connection.buf, bytearray()
        else:  # pipelined: the next request stays
            request = connection.buf[:end]
            del connection.buf[:end]
        connection.source.feed(request, views=not handed_over and not connection.framer.chunked)
        self._buffered -= end
        connection.framer.reset()
        req = None
        try:
            req = next(connection.parser)
            if connection.continued:
                req._expected_100_continue = False  # already sent while the body arrived
            kept = self._handle_request(connection, req) and connection.parser.finish_body()
            if not kept or handed_over:  # after HAND_OVER, where the next request starts is unknown
                self._close(connection)
                return
            self._next_request(connection)
        except (http.errors.NoMoreData, StopIteration):
            self._drop(connection)  # the request was cut short (only with HAND_OVER framing)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.log.exception("Socket error processing request.")
            self._drop(connection)
        except Exception as exc:  # noqa: BLE001 - gunicorn answers it (400 for a bad request)
            self.handle_error(req, connection.sock, connection.addr, exc)
            self._close(connection)

    def _next_request(self, connection: _Connection) -> None:
        """After a response on a kept connection: wait for the next request, or queue it."""
        now = time.monotonic()
        connection.continued = False
        self._connections.move_to_end(connection.fd)
        if not connection.buf:
            connection.request_deadline = _NEVER
            connection.deadline = now + self.cfg.keepalive
            self._poll(connection)
            return
        connection.request_deadline = now + self.request_timeout
        connection.deadline = min(connection.request_deadline, now + REQUEST_READ_TIMEOUT)
        self._frame(connection)
        if connection.framed is not None:
            self._unpoll(connection)  # pipelined: served next turn, read after that
        else:
            self._poll(connection)

    def _handle_request(self, connection: _Connection, req: http.Request) -> bool:
        """Run the app for one request; whether the connection may serve another."""
        environ: dict = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, connection.sock, connection.addr, connection.server, self.cfg)
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if (
                not self.alive
                or self.cfg.keepalive <= 0
                or connection.parser.req_count >= MAX_REQUESTS_PER_CONNECTION
            ):
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise  # the client went away: _serve closes the connection
        except (Exception, SystemExit):
            if resp is not None and resp.headers_sent:
                # Too late for an error response: the client sees the connection end.
                self.log.exception("Error handling request")
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:  # noqa: BLE001 - a hook must not break the connection handling
                self.log.exception("Exception in post_request hook")

    def _refuse(self, connection: _Connection, status: int, message: str) -> None:
        """Answer a request the app never sees (JSON, ``Connection: close``), then close."""
        with contextlib.suppress(OSError):
            write_json_error(connection.sock, status, HTTPStatus(status).phrase, message)
        self._close(connection)

    def _close(self, connection: _Connection) -> None:
        """Close after a response without truncating it: discard late input first, if any.

        Closing a socket with unread data in its receive buffer makes the kernel send a RST,
        and a client that gets the RST before reading may lose the response (RFC 9112 section
        9.6). So when input is still buffered or queued, the worker shuts down its sending side
        and keeps reading and discarding from the loop until the client closes, for at most
        ``CLOSE_LINGER`` seconds and ``CLOSE_LINGER_BYTES``.
        """
        pending = bool(connection.buf)
        if not pending:
            try:
                connection.sock.setblocking(False)
                pending = bool(connection.sock.recv(1, socket.MSG_PEEK))
            except BlockingIOError:
                pass
            except OSError:
                self._drop(connection)
                return
        if not pending:
            self._drop(connection)
            return
        self._forget_buffer(connection)
        try:
            connection.sock.setblocking(False)  # the loop reads what still comes
            connection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(connection)
            return
        connection.closing = True
        connection.deadline = time.monotonic() + CLOSE_LINGER
        self._poll(connection)

    def _forget_buffer(self, connection: _Connection) -> None:
        self._buffered -= len(connection.buf)
        connection.buf = bytearray()
        connection.framed = None

    def _drop(self, connection: _Connection) -> None:
        """Close the connection now."""
        self._forget_buffer(connection)
        self._connections.pop(connection.fd, None)
        self._unpoll(connection)
        connection.sock.close()
