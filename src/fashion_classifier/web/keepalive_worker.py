"""A gunicorn worker that keeps client connections open: gunicorn's sync worker plus keep-alive.

Each worker is one thread running one epoll loop over its listening socket and its open client
connections. A connection that becomes readable gets its request parsed, run and answered to
completion, as the sync worker does, and then goes back to the loop (HTTP/1.1 keep-alive).
Why not the stock workers:

* ``sync`` closes every connection after one response: each request pays for a TCP connect,
  an accept and a close, and gunicorn 27 then waits for the client's FIN before it takes the
  next connection. On 2 cores, V2 single-tensor requests ran at 2,230-2,340 req/s there and at
  2,810-2,960 here (wrk, 16 connections, same hour). Clients that send ``Connection: close``
  get the sync worker's throughput (2,470-2,760 against 2,580-2,690 req/s), with a p99 about
  2 ms higher. Large requests trade tail for median: 256-image batches over kept-alive
  connections answered in p50 96 ms and p99 190-220 ms, against 113 and 140 with ``sync``.
* ``gthread`` keeps connections but hands every request from its poller thread to a pool
  thread and back: 2,180-2,210 req/s on the same load, and a worse p99.

What the loop guarantees:

* An idle connection costs nothing: it waits in epoll, not in a blocked ``recv`` (a sync
  worker holds one idle connection until its timeout, and serves nothing else meanwhile).
* A request that has started must keep arriving: each read waits at most
  ``REQUEST_READ_TIMEOUT`` seconds, then the connection is closed. A client that trickles a
  request still holds the worker for its duration, as with the sync worker; untrusted clients
  belong behind a buffering proxy (gunicorn's own advice).
* Connections stay with the worker that accepted them. A worker with open connections waits a
  moment before accepting another, so new ones go to the emptier worker (``_loop``), and each
  connection is closed (``Connection: close``) after ``MAX_REQUESTS_PER_CONNECTION`` requests,
  so clients' pools spread over the workers again, and over new pods after a scale-up.
* Idle connections are closed after gunicorn's ``keepalive`` seconds (``FC_KEEPALIVE``,
  checked once a second; 0 closes every connection after its response, like the sync worker,
  and then gives a new connection ``REQUEST_READ_TIMEOUT`` to send its request), and the least
  recently used one goes when ``worker_connections`` are open.
* On SIGTERM the worker closes its listening socket and, for up to ``STOP_LINGER`` seconds,
  answers requests that arrive on its open connections with ``Connection: close`` (a client may
  have sent one already), then closes the rest.

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
from collections import OrderedDict
from datetime import datetime

from gunicorn import http, util
from gunicorn.arbiter import Arbiter
from gunicorn.http import wsgi
from gunicorn.workers import base

REQUEST_READ_TIMEOUT = 5.0  # s a started request (or an unread body) may pause between reads
MAX_REQUESTS_PER_CONNECTION = 1000
STOP_LINGER = 2.0  # s a stopping worker still answers requests on its open connections
# Before closing after a response: how long, and how much, to read of a request body the app
# left unread (more goes to gunicorn's close_graceful, which drains 64 KiB for at most 2 s).
CLOSE_DRAIN_WAIT = 0.5
CLOSE_DRAIN_BYTES = 64 * 1024
# A worker waits this long per open connection (at most the max) before it accepts a new one,
# so that an emptier worker takes it first (see _loop).
ACCEPT_DEFER = 0.0005
ACCEPT_DEFER_MAX = 0.005
ACCEPT_RETRY = 0.1  # s before accepting again after running out of file descriptors
NOTIFY_INTERVAL = 1.0  # s between heartbeats to the arbiter (each one is a syscall)


class _Connection:
    __slots__ = ("sock", "fd", "addr", "server", "parser", "deadline", "polled")

    def __init__(self, sock: socket.socket, addr: object, server: object, cfg: object, deadline: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # the key in the worker's table, still known once closed
        self.addr = addr
        self.server = server  # the listener's address, for the WSGI environ
        self.parser = http.get_parser(cfg, sock, addr)
        self.deadline = deadline  # closed when still idle then
        self.polled = False  # registered with the worker's selector


class KeepAliveWorker(base.Worker):
    def init_process(self) -> None:
        if self.cfg.is_ssl:
            self.log.error("KeepAliveWorker does not do TLS: terminate TLS in front of gunicorn")
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR)
        super().init_process()

    def run(self) -> None:
        self._selector = selectors.DefaultSelector()
        # fd -> connection, least recently used first
        self._connections: OrderedDict[int, _Connection] = OrderedDict()
        self._accept_at: float | None = None  # listening sockets paused until then
        self._selector.register(self.PIPE[0], selectors.EVENT_READ, None)
        for listener in self.sockets:
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, listener)
        try:
            self._loop()
            self._linger()
        finally:
            for connection in list(self._connections.values()):
                self._close(connection)
            self._selector.close()

    def _loop(self) -> None:
        """Serve ready connections; accept new ones between them.

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
        last_notify = 0.0
        while self.alive:
            now = time.monotonic()
            if now - last_notify >= NOTIFY_INTERVAL:
                self.notify()
                last_notify = now
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    return
                self._close_expired(now)
            self._resume_accepting()
            timeout = NOTIFY_INTERVAL
            if self._accept_at is not None:
                timeout = min(timeout, max(0.0, self._accept_at - time.monotonic()))
            for key, _ in self._selector.select(timeout):
                data = key.data
                if isinstance(data, _Connection):
                    self._serve(data)
                    self._resume_accepting()
                elif data is None:
                    self._drain_wakeup_pipe()
                elif self.alive and self._accept_at is None:
                    self._connection_waiting()

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
            for key, _ in self._selector.select(min(remaining, NOTIFY_INTERVAL)):
                if isinstance(key.data, _Connection):
                    self._serve(key.data)
                else:
                    self._drain_wakeup_pipe()

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
            self._close(next(iter(self._connections.values())))
        # The first request may take up to the keep-alive time to come (5 s with keep-alive off).
        first_wait = self.cfg.keepalive or REQUEST_READ_TIMEOUT
        connection = _Connection(client, addr, listener.getsockname(), self.cfg, time.monotonic() + first_wait)
        self._connections[connection.fd] = connection
        # Clients send their request right after connecting, so it is usually here already:
        # serving it now saves a loop turn (and, for a client that closes after one response,
        # the selector registration).
        client.setblocking(False)
        try:
            arrived = client.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            arrived = b""
        except OSError:
            self._close(connection)
            return
        client.settimeout(REQUEST_READ_TIMEOUT)
        if arrived:
            self._serve(connection)
        else:
            self._poll(connection)

    def _poll(self, connection: _Connection) -> None:
        if not connection.polled:
            self._selector.register(connection.sock, selectors.EVENT_READ, connection)
            connection.polled = True

    def _close_expired(self, now: float) -> None:
        for connection in [c for c in self._connections.values() if c.deadline < now]:
            self._close(connection)

    def _serve(self, connection: _Connection) -> None:
        """Answer every request buffered on ``connection``; keep it open if HTTP allows."""
        req = None
        try:
            while True:
                req = next(connection.parser)
                if not self._handle_request(connection, req):
                    self._close(connection, after_response=True)
                    return
                if not connection.parser.finish_body(deadline=time.monotonic() + REQUEST_READ_TIMEOUT):
                    self._close(connection, after_response=True)
                    return
                # A pipelined request already read into the parser's buffer makes the socket
                # look idle to epoll: answer it now.
                if not connection.parser.unreader.buf.getvalue():
                    break
            connection.deadline = time.monotonic() + self.cfg.keepalive
            self._connections.move_to_end(connection.fd)
            self._poll(connection)
        except (http.errors.NoMoreData, StopIteration):
            self._close(connection)  # the client closed, or sent nothing more in time
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.log.exception("Socket error processing request.")
            self._close(connection)
        except Exception as exc:  # noqa: BLE001 - gunicorn answers it (400 for a bad request)
            self.handle_error(req, connection.sock, connection.addr, exc)
            self._close(connection, after_response=True)

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

    def _close(self, connection: _Connection, after_response: bool = False) -> None:
        sock = connection.sock
        self._connections.pop(connection.fd, None)
        if connection.polled:
            self._selector.unregister(sock)
            connection.polled = False
        if not after_response:
            sock.close()
            return
        try:
            body_read = connection.parser.finish_body(
                deadline=time.monotonic() + CLOSE_DRAIN_WAIT, max_bytes=CLOSE_DRAIN_BYTES
            )
        except Exception:  # noqa: BLE001 - a reset or a malformed body: the linger decides
            body_read = False
        close_after_response(sock, body_read)


def close_after_response(sock: socket.socket, body_read: bool) -> None:
    """Close a connection whose response was just sent, without truncating that response.

    Closing a socket with unread data in its receive buffer makes the kernel send a RST, and a
    client that gets the RST before reading may lose the response (RFC 9112 section 9.6).
    gunicorn's ``close_graceful`` avoids that by always waiting for the client's FIN, which
    holds a one-thread worker for a round trip per connection. Here it waits only when data is
    still coming: the request body was not read to its end, or more bytes are already queued.
    """
    pending = b""
    if body_read:
        try:
            sock.setblocking(False)
            pending = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            pass
        except OSError:
            sock.close()
            return
    if body_read and not pending:
        sock.close()
    else:
        util.close_graceful(sock)  # it sets its own timeouts
