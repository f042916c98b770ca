"""Request-smuggling probes against the real server: ambiguous framing is refused, never split.

Each probe hides a second request (``GET /api/v1/model``) behind framing that two HTTP parsers
could read differently. The server must answer the first with a JSON 400 and close the
connection, so the hidden request is never served; a change of worker or parser must not lose
this.
"""

from __future__ import annotations

import json
import socket

import pytest
from harness.ports import free_port
from harness.server import ServerProcess, serve_command, serve_env

SMUGGLED = b"GET /api/v1/model HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture(scope="module")
def server(shipped_store, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smuggling")
    port = free_port()
    env = serve_env(workdir, shipped_store, port=port, workers=1, predlog="off")
    proc = ServerProcess([*serve_command()], env, port, workdir / "serve.log").start(timeout=60, workers=1)
    yield proc
    proc.stop()


def exchange(server: ServerProcess, payload: bytes) -> list[tuple[int, bytes]]:
    """Send ``payload`` on a new connection; every response until the server closes it."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(payload)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    responses = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        responses.append((int(lines[0].split()[1]), rest[:length]))
        raw = rest[length:]
    return responses


def post(headers: bytes, body: bytes) -> bytes:
    return b"POST /api/v1/predict HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n" + body


PROBES = {
    "CL.TE": post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "TE.CL": post(b"Transfer-Encoding: chunked\r\nContent-Length: 44\r\n", b"0\r\n\r\n" + SMUGGLED),
    "duplicate Content-Length": post(b"Content-Length: 0\r\nContent-Length: 39\r\n", SMUGGLED),
    "Content-Length with a sign": post(b"Content-Length: +0\r\n", SMUGGLED),
    "obs-fold Transfer-Encoding": post(b"Transfer-Encoding: identity\r\n chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "chunked not last": post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n" + SMUGGLED),
    "negative chunk size": post(b"Transfer-Encoding: chunked\r\n", b"-1\r\n\r\n" + SMUGGLED),
    "hex prefix chunk size": post(b"Transfer-Encoding: chunked\r\n", b"0x0\r\n\r\n" + SMUGGLED),
    "chunk longer than its size": post(b"Transfer-Encoding: chunked\r\n", b"1\r\nab\r\n0\r\n\r\n" + SMUGGLED),
    "chunked HTTP/1.0": b"POST /api/v1/predict HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
}


@pytest.mark.parametrize("payload", PROBES.values(), ids=PROBES.keys())
def test_ambiguous_framing_gets_a_json_400_and_hides_nothing(server, payload):
    responses = exchange(server, payload)
    assert len(responses) == 1, responses  # the hidden request was not served
    status, body = responses[0]
    assert status == 400 and "error" in json.loads(body)


def test_pipelined_requests_are_each_answered_in_order(server):
    last = SMUGGLED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    payload = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n" + last
    responses = exchange(server, payload)
    assert [status for status, _ in responses] == [200, 200]
    assert "version" in json.loads(responses[1][1])
