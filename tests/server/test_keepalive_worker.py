"""The keep-alive worker for real: gunicorn with the serving config, one worker, a tiny WSGI app.

The app (``keepalive_app``) answers with the client's port, so a test sees which TCP connection
carried each request. Responses are read off raw sockets where the framing matters.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import requests
from gunicorn.arbiter import Arbiter
from gunicorn.config import Config
from harness.ports import free_port
from harness.server import ServerProcess

from fashion_classifier.server import connection, keepalive_worker

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def start(tmp_path):
    servers = []

    def _start(**env_extra: str) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FC_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        port = free_port()
        # No metrics port (FC_METRICS_PORT=0): servers started side by side would share its default.
        env.update(
            FC_HOST="127.0.0.1",
            FC_PORT=str(port),
            FC_METRICS_PORT="0",
            FC_WORKERS="1",
            PYTHONUNBUFFERED="1",
            **env_extra,
        )
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:fashion_classifier.server.gunicorn_conf",
            "--pythonpath",
            str(TESTS_DIR),
            "server.keepalive_app:app",
        ]
        server = ServerProcess(command, env, port, tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(server)
        return server.start(timeout=30, workers=1)

    yield _start
    for server in servers:
        server.stop()


def _connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def _read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[int, dict[str, str], bytes, bytes]:
    """One response framed by Content-Length: (status, headers, body, bytes read past it)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a full response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of a body"
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:length], rest[length:]


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _request(path: str, *, method: str = "GET", body: bytes = b"", close: bool = False, version: str = "1.1") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def test_one_connection_carries_many_requests(start):
    server = start()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    ports = set()
    for i in range(20):
        conn.request("POST", f"/r{i}", body=b"x" * (i * 100))
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        assert resp.status == 200 and answer["read"] == i * 100 and answer["path"] == f"/r{i}"
        assert (resp.getheader("Connection") or "").lower() != "close"
        ports.add(answer["port"])
    assert ports == {conn.sock.getsockname()[1]}
    conn.close()


def test_pipelined_requests_are_answered_in_order(start):
    server = start()
    with _connect(server) as sock:
        sock.sendall(b"".join(_request(f"/p{i}", close=i == 3) for i in range(4)))
        paths, rest = [], b""
        for _ in range(4):
            status, _, body, rest = _read_response(sock, rest)
            assert status == 200
            paths.append(json.loads(body)["path"])
        assert paths == ["/p0", "/p1", "/p2", "/p3"]
        assert rest == b"" and _closed_by_server(sock, 5)


@pytest.mark.parametrize(
    ("request_bytes", "why"),
    [
        (_request("/c", close=True), "Connection: close"),
        (_request("/c", version="1.0"), "HTTP/1.0 without keep-alive"),
    ],
)
def test_connection_closes_when_the_client_asks(start, request_bytes, why):
    server = start()
    with _connect(server) as sock:
        sock.sendall(request_bytes)
        status, headers, _, rest = _read_response(sock)
        assert status == 200 and headers.get("connection", "").lower() == "close", why
        assert rest == b"" and _closed_by_server(sock, 5), why


def test_idle_connections_do_not_hold_the_worker(start):
    # A sync worker accepts an idle connection and blocks reading it until its timeout (30 s).
    server = start()
    idle = [_connect(server) for _ in range(5)]
    try:
        started = time.monotonic()
        assert requests.get(f"{server.base_url}/after-idle", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
    finally:
        for sock in idle:
            sock.close()


def test_idle_connection_is_closed_after_the_keepalive_time(start):
    server = start(FC_KEEPALIVE="1")
    with _connect(server) as sock:
        sock.sendall(_request("/k"))
        assert _read_response(sock)[0] == 200
        assert not _closed_by_server(sock, 0.5)  # still open well inside the keep-alive time
        assert _closed_by_server(sock, 3.0)


def test_keepalive_zero_closes_every_connection(start):
    server = start(FC_KEEPALIVE="0")
    with _connect(server) as sock:
        sock.sendall(_request("/z"))
        status, headers, _, _ = _read_response(sock)
        assert status == 200 and headers["connection"].lower() == "close"
        assert _closed_by_server(sock, 5)


def test_a_malformed_request_gets_a_json_400_and_a_close(start):
    server = start()
    with _connect(server) as sock:
        sock.sendall(b"NOT AN HTTP REQUEST\r\n\r\n")
        status, headers, body, _ = _read_response(sock)
        assert status == 400 and headers["content-type"] == "application/json"
        assert "error" in json.loads(body)
        assert _closed_by_server(sock, 5)
    assert requests.get(f"{server.base_url}/still-serving", timeout=5).status_code == 200


def test_a_body_the_app_did_not_read_is_skipped_and_the_connection_kept(start):
    server = start()
    with _connect(server) as sock:
        port = sock.getsockname()[1]
        sock.sendall(_request("/ignore-body", method="POST", body=b"b" * 20_000) + _request("/next"))
        status, _, body, rest = _read_response(sock)
        assert status == 200 and json.loads(body)["read"] == 0
        status, _, body, _ = _read_response(sock, rest)
        assert status == 200 and json.loads(body) | {"pid": 0} == {"path": "/next", "port": port, "pid": 0, "read": 0}


def test_a_body_over_the_limit_is_refused_from_its_head(start):
    # 413 as soon as the head declares too much; the rest is discarded from the loop, then closed.
    server = start(FC_MAX_UPLOAD_BYTES="1000000")
    with _connect(server) as sock:
        body = b"u" * (4 * 1024 * 1024)
        sock.sendall(_request("/upload", method="POST", body=body)[: -len(body)] + body[:100_000])
        status, headers, answer, _ = _read_response(sock)
        assert status == 413 and headers["connection"].lower() == "close"
        assert "1,000,000 bytes" in json.loads(answer)["error"]
        assert requests.get(f"{server.base_url}/meanwhile", timeout=5).status_code == 200
        assert _closed_by_server(sock, connection.CLOSE_LINGER + 3)


def test_a_whole_unread_body_is_skipped_and_the_connection_kept(start):
    server = start()
    with _connect(server) as sock:
        body = b"u" * (4 * 1024 * 1024)
        sock.sendall(_request("/ignore-body", method="POST", body=body) + _request("/next"))
        status, _, answer, rest = _read_response(sock)
        assert status == 200 and json.loads(answer)["read"] == 0
        status, _, answer, _ = _read_response(sock, rest)
        assert status == 200 and json.loads(answer)["path"] == "/next"


def test_a_connection_is_closed_after_its_request_quota(start):
    server = start()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    for i in range(1, connection.MAX_REQUESTS_PER_CONNECTION + 1):
        conn.request("GET", "/q")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        closing = (resp.getheader("Connection") or "").lower() == "close"
        assert closing == (i == connection.MAX_REQUESTS_PER_CONNECTION), i
    conn.close()


def test_a_stalled_request_gets_a_408_and_never_holds_the_worker(start):
    server = start()
    with _connect(server) as sock:
        sock.sendall(_request("/stall", method="POST", body=b"0123456789")[:-7])  # 3 of 10 bytes
        started = time.monotonic()
        # The worker serves others while the request waits for its body.
        assert requests.get(f"{server.base_url}/during-stall", timeout=2).status_code == 200
        status, headers, body, _ = _read_response(sock)
        waited = time.monotonic() - started
        assert status == 408 and headers["connection"].lower() == "close"
        assert "stopped arriving" in json.loads(body)["error"]
        assert connection.REQUEST_READ_TIMEOUT - 0.5 <= waited <= connection.REQUEST_READ_TIMEOUT + 2.5
        assert _closed_by_server(sock, 5)


def test_a_trickled_request_gets_one_deadline_and_others_are_served_meanwhile(start):
    # A byte every 0.5 s never pauses long enough for the read timeout: the whole-request
    # deadline ends it. A kept-alive client on the same (only) worker is served throughout.
    server = start(FC_REQUEST_TIMEOUT="3")
    head = _request("/trickle", method="POST", body=b"x" * 100)
    with _connect(server) as sock, _connect(server) as healthy:
        started = time.monotonic()
        sent = 0
        latencies = []
        while time.monotonic() - started < 2.5:
            sock.sendall(head[sent : sent + 1])
            sent += 1
            begun = time.monotonic()
            healthy.sendall(_request("/healthy"))
            assert _read_response(healthy)[0] == 200
            latencies.append(time.monotonic() - begun)
            time.sleep(0.5)
        status, _, body, _ = _read_response(sock)
        assert status == 408 and "3 s" in json.loads(body)["error"]
        assert 2.5 <= time.monotonic() - started <= 3 + 2.5
        assert max(latencies) < 0.5, latencies


def test_a_stopping_worker_answers_open_connections_with_close(start):
    server = start()
    with _connect(server) as sock:
        sock.sendall(_request("/before"))
        assert _read_response(sock)[0] == 200
        os.kill(server.proc.pid, signal.SIGTERM)
        time.sleep(0.5)  # the worker is stopping: no new connections, open ones still answered
        with pytest.raises(OSError):
            _connect(server).close()
        sock.sendall(_request("/during-stop"))
        status, headers, body, _ = _read_response(sock)
        assert status == 200 and json.loads(body)["path"] == "/during-stop"
        assert headers["connection"].lower() == "close"
    server.proc.wait(timeout=keepalive_worker.STOP_LINGER + 10)


def test_the_worker_refuses_tls_at_boot(tmp_path):
    cfg = Config()
    cfg.set("certfile", str(tmp_path / "cert.pem"))
    worker = keepalive_worker.KeepAliveWorker(0, os.getpid(), [], None, 30, cfg, logging.getLogger("test"))
    with pytest.raises(SystemExit) as stopped:
        worker.init_process()
    assert stopped.value.code == Arbiter.WORKER_BOOT_ERROR  # the arbiter halts instead of respawning


def test_running_out_of_file_descriptors_pauses_accepting_instead_of_spinning(start):
    server = start()
    (worker,) = server.worker_pids()
    limits = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    open_fds = _settled_fds(worker)
    lowest_free = min(set(range(len(open_fds) + 1)) - open_fds)  # the number a new fd would get
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (lowest_free, limits[1]))  # no room for one more
    try:
        waiting = _connect(server)  # completed by the kernel, waiting in the backlog
        waiting.sendall(_request("/after-emfile"))
        cpu_before = _cpu_seconds(worker)
        time.sleep(1.0)
        assert _cpu_seconds(worker) - cpu_before < 0.3  # retrying every 0.1 s, not in a busy loop
    finally:
        resource.prlimit(worker, resource.RLIMIT_NOFILE, limits)
    with waiting:
        status, _, body, _ = _read_response(waiting)
        assert status == 200 and json.loads(body)["path"] == "/after-emfile"
    assert "accept failed" in server.log_tail()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settled_fds(pid: int) -> set[int]:
    """The process's open fds once the harness's readiness connections are closed."""
    previous = None
    while True:
        current = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
        if current == previous:
            return current
        previous = current
        time.sleep(0.3)


def test_chunked_bodies_are_read_across_the_pieces_the_parser_is_fed(start):
    # The parser gets a buffered request in FEED_PIECE pieces: chunks that end exactly at a
    # piece's end (their CRLF in the next piece), one of them read from later pieces.
    server = start()
    piece = connection.FEED_PIECE
    head = b"POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = piece - len(head) - len(b"ffff\r\n")
    second = 3 * piece - (piece + len(b"\r\n30000\r\n"))
    bodies = (b"a" * first, b"b" * second, b"c" * 7)
    request = head + b"".join(b"%x\r\n%s\r\n" % (len(b), b) for b in bodies) + b"0\r\n\r\n"
    assert request[piece : piece + 3] == b"\r\n1" and request[3 * piece : 3 * piece + 3] == b"\r\n7"
    with _connect(server) as sock:
        sock.sendall(request)
        status, _, body, _ = _read_response(sock)
    assert status == 200 and json.loads(body)["read"] == sum(map(len, bodies))


def test_the_gunicorn_internals_the_worker_relies_on_keep_their_shape(tmp_path):
    """gunicorn is pinned to one release series (tests/test_dependencies.py); this fails first
    when an upgrade moves what the worker subclasses, calls or reads."""
    import inspect

    from gunicorn import http as ghttp
    from gunicorn import util
    from gunicorn.http import unreader, wsgi
    from gunicorn.workers import base

    # Leading parameters only: a new trailing parameter with a default breaks no caller.
    expected = {
        ghttp.get_parser: ["cfg", "source", "source_addr"],
        wsgi.create: ["req", "sock", "client", "server", "cfg"],
        unreader.Unreader.chunk: ["size_hint"],
        util.write_error: ["sock", "status_int", "reason", "mesg"],
        util.write_nonblock: ["sock", "data"],
        util.close_on_exec: ["fd"],
        base.Worker.__init__: ["age", "ppid", "sockets", "app", "timeout", "cfg", "log"],
        base.Worker.handle_error: ["req", "client", "addr", "exc"],
    }
    leading = {
        fn.__qualname__: [p for p in inspect.signature(fn).parameters if p != "self"][: len(names)]
        for fn, names in expected.items()
    }
    assert leading == {fn.__qualname__: names for fn, names in expected.items()}
    # The parser reads from the `unreader` the connection replaces with its own feed.
    parser = ghttp.get_parser(Config(), (), ("127.0.0.1", 1))
    assert isinstance(parser.unreader, unreader.Unreader)
    assert issubclass(ghttp.errors.NoMoreData, Exception) and isinstance(Arbiter.WORKER_BOOT_ERROR, int)
    # What the worker reads of the base class's state, and the settings it reads.
    cfg = Config()
    cfg.set("worker_tmp_dir", str(tmp_path))
    worker = base.Worker(1, os.getpid(), [], None, 30, cfg, logging.getLogger("test"))
    try:
        for attribute in ("alive", "nr", "max_requests", "ppid", "sockets", "cfg", "log"):
            assert hasattr(worker, attribute), attribute
        assert callable(worker.notify) and callable(worker.init_process) and callable(worker.load_wsgi)
    finally:
        worker.tmp.close()
    for setting in (
        "graceful_timeout",
        "is_ssl",
        "keepalive",
        "limit_request_field_size",
        "limit_request_fields",
        "limit_request_line",
        "post_request",
        "pre_request",
        "worker_connections",
    ):
        assert hasattr(cfg, setting), setting
