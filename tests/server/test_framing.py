"""The request framer: where a buffered request ends, found incrementally, and when to let the parser decide."""

from __future__ import annotations

import pytest

from fashion_classifier.server.framing import HAND_OVER, MALFORMED, RequestFramer

HEAD = b"POST /x HTTP/1.1\r\nHost: t\r\n"


def scan_all(data: bytes, max_head: int = 65536, max_body: int = 1000, step: int | None = None):
    """Feed ``data`` in pieces of ``step`` bytes; the first result that is not None, and the bytes fed."""
    framer = RequestFramer(max_head, max_body)
    buf = bytearray()
    step = step or len(data)
    for i in range(0, len(data), step):
        buf += data[i : i + step]
        framed = framer.scan(buf)
        if framed is not None:
            return framed, len(buf)
    return None, len(buf)


@pytest.mark.parametrize("step", [1, 7, None])
def test_a_content_length_request_ends_after_its_body_whatever_the_pieces(step):
    request = HEAD + b"Content-Length: 5\r\n\r\nhello"
    framed, fed = scan_all(request + b"GET /next HTTP/1.1\r\n", step=step)
    assert framed.end == len(request) and not framed.body_too_large
    assert fed <= len(request) + (step or 10_000)


def test_a_request_without_a_body_ends_at_its_head():
    framed, _ = scan_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\n")
    assert framed.end == len(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")


def test_an_incomplete_request_waits():
    assert scan_all(HEAD + b"Content-Length: 10\r\n\r\n12345")[0] is None
    assert scan_all(HEAD + b"Content-Len")[0] is None


@pytest.mark.parametrize("step", [1, 3, None])
def test_a_chunked_request_ends_after_its_last_chunk_and_trailers(step):
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3 ;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
    framed, _ = scan_all(request + b"NEXT", step=step)
    assert framed.end == len(request)


def test_a_declared_body_over_the_limit_is_refused_from_the_head():
    framed, _ = scan_all(HEAD + b"Content-Length: 1001\r\n\r\n", max_body=1000)
    assert framed.body_too_large and framed.end == len(HEAD) + len(b"Content-Length: 1001\r\n\r\n")


def test_a_chunked_body_over_the_limit_is_refused_when_it_passes_it():
    framed, _ = scan_all(
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"200\r\n" + b"a" * 512 + b"\r\n" + b"400\r\n", max_body=1000
    )
    assert framed.body_too_large


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",  # CL + TE
        b"Content-Length: 5\r\nContent-Length: 6\r\n",  # duplicate CL
        b"Content-Length: +5\r\n",
        b"Transfer-Encoding: chunked, gzip\r\n",  # chunked not last
        b"X-A: 1\r\n folded\r\n",  # obs-fold
    ],
)
def test_unusual_framing_is_handed_to_the_parser(headers):
    framed, _ = scan_all(HEAD + headers + b"\r\n" + b"hello")
    assert framed.end == HAND_OVER


def test_bare_lf_line_ends_are_handed_to_the_parser():
    assert scan_all(b"GET / HTTP/1.1\nHost: t\n\n")[0].end == HAND_OVER


def test_a_head_longer_than_the_parser_accepts_is_handed_over():
    assert scan_all(HEAD + b"X: " + b"a" * 200, max_head=100)[0].end == HAND_OVER


@pytest.mark.parametrize("chunks", [b"-1\r\n", b"0x5\r\nhello\r\n", b"5\r\nhelloXX", b"\r\n", b"5" * 5000])
def test_malformed_chunks_are_malformed(chunks):
    assert scan_all(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)[0].end == MALFORMED


def test_expect_100_continue_is_seen_once_the_head_is_complete():
    framer = RequestFramer(65536, 1000)
    buf = bytearray(HEAD + b"Expect: 100-continue\r\nContent-Length: 3\r\n")
    assert framer.scan(buf) is None and not framer.expects_continue
    buf += b"\r\n"
    assert framer.scan(buf) is None and framer.expects_continue
    buf += b"abc"
    assert framer.scan(buf).end == len(buf)


def test_reset_starts_over_for_the_next_request():
    framer = RequestFramer(65536, 1000)
    first = HEAD + b"Content-Length: 2\r\n\r\nok"
    buf = bytearray(first + b"GET / HTTP/1.1\r\n\r\n")
    assert framer.scan(buf).end == len(first)
    del buf[: len(first)]
    framer.reset()
    assert framer.scan(buf).end == len(buf)


def test_a_byte_at_a_time_body_is_scanned_once():
    # Resuming where the last scan stopped: 5,000 one-byte chunks fed one byte at a time stay linear.
    body = b"1\r\na\r\n" * 5000 + b"0\r\n\r\n"
    framer = RequestFramer(65536, 10_000)
    buf = bytearray(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    assert framer.scan(buf) is None
    for i in range(len(body)):
        buf.append(body[i])
        framed = framer.scan(buf)
    assert framed.end == len(buf) and framer._pos > len(buf) - 10
