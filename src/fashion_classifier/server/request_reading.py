"""How the keep-alive worker reads requests: without blocking, whole before the app sees them.

Each readable connection is read into its buffer; once ``framing`` finds a whole request there,
the connection joins the worker's ready queue. A request must arrive within the worker's
``request_timeout`` of its first byte with no pause over ``REQUEST_READ_TIMEOUT`` (else 408), and
the partial requests of all connections together hold at most ``BUFFER_BUDGET`` bytes (else 503).
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict, deque

from fashion_classifier.server.connection import CLOSE_LINGER_BYTES, NEVER, REQUEST_READ_TIMEOUT, Connection

BUFFER_BUDGET = 32 * 1024 * 1024  # bytes all partial requests of a worker may hold together
RECV_SIZE = 256 * 1024  # one read per readiness event


class RequestReading:
    """Mixed into ``KeepAliveWorker``: reading and framing its connections' requests.

    Uses the worker's state (set in ``KeepAliveWorker.run``) and its ``_refuse`` and ``_drop``
    (``response_writing``).
    """

    request_timeout: float
    _connections: OrderedDict[int, Connection]
    _scratch: memoryview  # every read lands here first, then in its connection's buffer
    _buffered: int  # bytes in all connections' buffers
    _ready: deque[Connection]  # connections with a whole request buffered

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

    def _read(self, connection: Connection) -> None:
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

    def _received(self, connection: Connection, received: int) -> None:
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

    def _frame(self, connection: Connection) -> None:
        framed = connection.framer.scan(connection.buf)
        if framed is None:
            if connection.framer.expects_continue and not connection.continued:
                connection.continued = True
                with contextlib.suppress(OSError):
                    connection.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        connection.framed = framed
        connection.deadline = NEVER  # waiting for the worker now, not for the client
        if not connection.queued:
            connection.queued = True
            self._ready.append(connection)
