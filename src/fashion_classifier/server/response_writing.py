"""How the keep-alive worker answers: run the app on a buffered request, write its response, close.

A response is written with the socket in blocking mode, each send bounded by
``REQUEST_READ_TIMEOUT``: a client that stops reading its responses can hold the worker for that
long once, then it is closed. Requests the app never sees (408, 413, 503, a malformed chunked
body) are answered here in JSON. Closing never blocks: input that still arrives after a response
that ends the connection is discarded from the loop (``_close``), not by gunicorn's blocking
``close_graceful``.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections import OrderedDict
from datetime import datetime
from http import HTTPStatus

from gunicorn import http
from gunicorn.http import wsgi

from fashion_classifier.server.connection import (
    CLOSE_LINGER,
    MAX_REQUESTS_PER_CONNECTION,
    NEVER,
    REQUEST_READ_TIMEOUT,
    Connection,
)
from fashion_classifier.server.framing import HAND_OVER, MALFORMED
from fashion_classifier.server.protocol_errors import write_json_error


class ResponseWriting:
    """Mixed into ``KeepAliveWorker``: serving its ready connections' requests and closing them.

    Uses the worker's state (set in ``KeepAliveWorker.run``), its gunicorn ``Worker`` attributes
    and its ``_poll``/``_unpoll`` (``keepalive_worker``) and ``_frame`` (``request_reading``).
    """

    max_body: int
    request_timeout: float
    _connections: OrderedDict[int, Connection]  # fd -> connection, least recently used first
    _buffered: int

    def _serve(self, connection: Connection) -> None:
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

    def _next_request(self, connection: Connection) -> None:
        """After a response on a kept connection: wait for the next request, or queue it."""
        now = time.monotonic()
        connection.continued = False
        self._connections.move_to_end(connection.fd)
        if not connection.buf:
            connection.request_deadline = NEVER
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

    def _handle_request(self, connection: Connection, req: http.Request) -> bool:
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
            if not self.alive or self.cfg.keepalive <= 0 or connection.parser.req_count >= MAX_REQUESTS_PER_CONNECTION:
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

    def _refuse(self, connection: Connection, status: int, message: str) -> None:
        """Answer a request the app never sees (JSON, ``Connection: close``), then close."""
        with contextlib.suppress(OSError):
            write_json_error(connection.sock, status, HTTPStatus(status).phrase, message)
        self._close(connection)

    def _close(self, connection: Connection) -> None:
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

    def _forget_buffer(self, connection: Connection) -> None:
        self._buffered -= len(connection.buf)
        connection.buf = bytearray()
        connection.framed = None

    def _drop(self, connection: Connection) -> None:
        """Close the connection now."""
        self._forget_buffer(connection)
        self._connections.pop(connection.fd, None)
        self._unpoll(connection)
        connection.sock.close()
