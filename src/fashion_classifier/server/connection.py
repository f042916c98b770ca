"""One client connection of the keep-alive worker: its limits, socket, buffer, parser, deadlines.

The worker reads each connection into its buffer without blocking; gunicorn's parser reads only
what the worker hands it (``RequestFeed``), never the socket.
"""

from __future__ import annotations

import socket
from collections import deque

from gunicorn import http
from gunicorn.http.unreader import Unreader

from fashion_classifier.server.framing import Framed, RequestFramer

REQUEST_READ_TIMEOUT = 5.0  # s a started request may pause; also bounds each send of a response
MAX_REQUESTS_PER_CONNECTION = 1000  # then Connection: close, so clients' pools spread again
CLOSE_LINGER = 2.0  # s input is discarded after a response that closes the connection
CLOSE_LINGER_BYTES = 1024 * 1024  # ... and at most this much of it
FEED_PIECE = 64 * 1024  # the parser gets a buffered request in pieces of this size (RequestFeed)
NEVER = float("inf")


class RequestFeed(Unreader):
    """The parser's source: requests the worker buffered, handed over in pieces, never the socket.

    gunicorn's ``Unreader.read(size)`` keeps what follows the ``size`` bytes it returns by copying
    it into a new buffer: with a whole body there, an app reading 64 KiB at a time made it copy
    the rest of the body at every read (large batches lost a good part of their throughput,
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


class Connection:
    __slots__ = (
        "sock",
        "fd",
        "addr",
        "server",
        "parser",
        "source",
        "framer",
        "buf",
        "framed",
        "request_deadline",
        "deadline",
        "polled",
        "queued",
        "continued",
        "closing",
        "discarded",
    )

    def __init__(
        self, sock: socket.socket, addr: object, server: object, cfg: object, framer: RequestFramer, deadline: float
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # the key in the worker's table, still known once closed
        self.addr = addr
        self.server = server  # the listener's address, for the WSGI environ
        # The parser reads only what the worker hands it, never the socket.
        self.parser = http.get_parser(cfg, (), addr)
        self.source = self.parser.unreader = RequestFeed()
        self.framer = framer
        self.buf = bytearray()  # received, not yet handed to the parser
        self.framed: Framed | None = None  # a whole request is in buf, waiting for its turn
        self.request_deadline = NEVER  # the request being received must be whole by then
        self.deadline = deadline  # closed (or answered 408) when still waiting then
        self.polled = False  # registered with the worker's selector
        self.queued = False  # in the worker's ready queue
        self.continued = False  # "100 Continue" sent for the request being received
        self.closing = False  # response sent, input being discarded until the close
        self.discarded = 0
