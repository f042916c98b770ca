"""Where an HTTP/1.1 request ends in a byte buffer, found before it is parsed.

The keep-alive worker reads each connection without blocking and hands a request to gunicorn's
parser only once all of it has arrived, so a client that trickles its bytes never holds the
worker. This module answers one question incrementally: "is a whole request buffered yet, and
how long is it?". It is not a parser: gunicorn's parser still reads and validates every request.
Whenever the framing is unusual (several Content-Length fields, Content-Length with
Transfer-Encoding, a coding other than chunked last, obs-fold lines, a malformed chunk size),
the framer says :data:`HAND_OVER`: give the parser what is buffered now, and it answers 400 (or
finds the end of input), as it does for every framing it refuses. A chunked body whose sizes or
delimiters are malformed is :data:`MALFORMED`: the parser accepts nothing the framer refuses
there, and the app must not start on a body that cannot be read.

The scan resumes where it stopped, so a body that arrives a byte at a time is scanned once.
"""

from __future__ import annotations

from dataclasses import dataclass

HAND_OVER = -1  # the parser decides now, on what is buffered
MALFORMED = -2  # a chunked body gunicorn's parser would refuse too: answer 400 without the app
_MAX_CHUNK_LINE = 4096  # a chunk-size line (with extensions) longer than this is malformed
_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Framed:
    """A whole request: ``end`` bytes of the buffer, or the head only when the body is too large."""

    end: int
    body_too_large: bool = False  # declared or chunked body over the limit: answer 413


class RequestFramer:
    """Finds the end of the first request in a connection's buffer, across calls as bytes arrive."""

    __slots__ = (
        "max_head",
        "max_body",
        "_head_end",
        "_searched",
        "_chunked",
        "_pos",
        "_body",
        "_length",
        "_trailers",
        "_continue",
    )

    def __init__(self, max_head: int, max_body: int) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self.reset()

    def reset(self) -> None:
        """Start over for the next request (the buffer now starts with it)."""
        self._head_end = -1
        self._searched = 0
        self._chunked = False
        self._pos = 0  # chunked: where the next chunk-size line starts
        self._body = 0  # chunked: body bytes so far
        self._length = 0  # Content-Length
        self._trailers = False
        self._continue = False

    @property
    def chunked(self) -> bool:
        """The request's body is chunked (``Transfer-Encoding: chunked``)."""
        return self._chunked

    @property
    def expects_continue(self) -> bool:
        """The head is complete and asks for ``100 Continue`` before the client sends the body."""
        return self._head_end >= 0 and self._continue

    def scan(self, buf: bytearray) -> Framed | None:
        """A :class:`Framed` once a whole request is in ``buf``; ``None`` while more must come.

        ``Framed(HAND_OVER)`` means: hand everything buffered to the parser now.
        """
        if self._head_end < 0:
            framed = self._scan_head(buf)
            if framed is not None or self._head_end < 0:
                return framed
        if self._chunked:
            return self._scan_chunks(buf)
        end = self._head_end + self._length
        return Framed(end) if len(buf) >= end else None

    def _scan_head(self, buf: bytearray) -> Framed | None:
        start = max(0, self._searched - 3)
        crlf = buf.find(b"\r\n\r\n", start)
        # Bare LF line ends (the parser refuses them), searched only up to the head's end: the
        # body that follows may be megabytes.
        if buf.find(b"\n\n", start, crlf + 2 if crlf >= 0 else len(buf)) >= 0:
            return Framed(HAND_OVER)
        if crlf < 0:
            self._searched = len(buf)
            return Framed(HAND_OVER) if len(buf) > self.max_head else None
        self._head_end = crlf + 4
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for line in bytes(buf[:crlf]).split(b"\r\n")[1:]:
            if line[:1] in (b" ", b"\t"):
                return Framed(HAND_OVER)  # obs-fold
            name, _, value = line.partition(b":")
            name = name.lower()
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                codings.extend(part.strip().lower() for part in value.split(b","))
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                self._continue = True
        if codings:
            if lengths or codings[-1] != b"chunked":
                return Framed(HAND_OVER)
            self._chunked = True
            self._pos = self._head_end
            return None
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            return Framed(HAND_OVER)
        self._length = int(lengths[0]) if lengths else 0
        if self._length > self.max_body:
            return Framed(self._head_end, body_too_large=True)
        return None

    def _scan_chunks(self, buf: bytearray) -> Framed | None:
        pos = self._pos
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return Framed(MALFORMED) if len(buf) - pos > _MAX_CHUNK_LINE else None
            if eol - pos > _MAX_CHUNK_LINE:
                return Framed(MALFORMED)
            if self._trailers:
                if eol == pos:  # the empty line after the trailers: the request ends here
                    return Framed(eol + 2)
                pos = self._pos = eol + 2
                continue
            size_field, *extension = bytes(buf[pos:eol]).split(b";", 1)
            if extension:
                size_field = size_field.rstrip(b" \t")  # whitespace only before an extension
            if not size_field or not _HEX.issuperset(size_field):
                return Framed(MALFORMED)
            size = int(size_field, 16)
            if size == 0:
                self._trailers = True
                pos = self._pos = eol + 2
                continue
            self._body += size
            if self._body > self.max_body:
                return Framed(self._head_end, body_too_large=True)
            data_end = eol + 2 + size
            if len(buf) < data_end + 2:
                self._body -= size  # counted again when the rest of the chunk is here
                return None
            if buf[data_end : data_end + 2] != b"\r\n":
                return Framed(MALFORMED)
            pos = self._pos = data_end + 2
