"""Hostile clients all at once must not slow a normal client down or get a worker killed.

Against the real server (2 workers, ``FC_TIMEOUT=8``): one client trickles a request a byte
every 3 s for longer than the worker timeout, 200 kept-alive connections sit idle, and one
client pipelines 256-image binary batches. Meanwhile a normal client sends single images (PNG
uploads and V2 tensors) over one kept-alive connection: every answer is a 200, p99 ≤ 50 ms,
and both workers are the ones that started (gunicorn killed none).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest
from harness.ports import free_port
from harness.server import ServerProcess, serve_command, serve_env

NORMAL_SECONDS = 10.0
WORKER_TIMEOUT = 8


@pytest.fixture
def server(shipped_store, tmp_path):
    port = free_port()
    env = serve_env(
        tmp_path,
        shipped_store,
        port=port,
        workers=2,
        predlog="off",
        extra={"FC_TIMEOUT": str(WORKER_TIMEOUT), "FC_KEEPALIVE": "60"},
    )
    proc = ServerProcess([*serve_command()], env, port, tmp_path / "serve.log").start(timeout=60, workers=2)
    yield proc
    proc.stop()


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bool]:
    """Read one Content-Length-framed response off ``sock`` (leftovers stay in ``buf``).

    Its status, and whether the server closes the connection after it.
    """
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    length = next(int(line.split(":")[1]) for line in head if line.lower().startswith("content-length:"))
    while len(buf) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    del buf[: end + length]
    return int(head[0].split()[1]), any(line.lower() == "connection: close" for line in head)


def batch_request(images: np.ndarray) -> bytes:
    raw = images.astype(np.uint8).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "shape": list(images.shape),
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return (
        (
            f"POST /v2/models/fashion/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(header) + len(raw)}\r\n\r\n"
        ).encode()
        + header
        + raw
    )


class Adversaries:
    """The hostile load, in threads, until ``stop``."""

    def __init__(self, server: ServerProcess, batch: np.ndarray) -> None:
        self.server = server
        self.stop = threading.Event()
        self.batch = batch_request(batch)
        self.batches_answered = 0
        self.errors: list[str] = []
        self.idle: list[socket.socket] = []
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._trickle, self._pipeline)]

    def connect(self) -> socket.socket:
        return socket.create_connection((self.server.host, self.server.port), timeout=10)

    def start(self) -> None:
        for _ in range(200):  # kept-alive, then idle
            sock = self.connect()
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock, bytearray()) == (200, False)
            self.idle.append(sock)
        for thread in self.threads:
            thread.start()

    def _trickle(self) -> None:
        request = batch_request(np.zeros((1, 28, 28), dtype=np.uint8))
        with self.connect() as sock:
            for i in range(len(request)):
                if self.stop.wait(3.0 if i else 0.0):
                    return
                try:
                    sock.sendall(request[i : i + 1])
                except OSError:
                    return  # the server gave up on it: fine, as long as nobody else waited

    def _pipeline(self) -> None:
        """Four requests per write; a new connection when the server ends one (its request quota)."""
        while not self.stop.is_set():
            with self.connect() as sock:
                buf = bytearray()
                closed = False
                while not closed and not self.stop.is_set():
                    try:
                        sock.sendall(self.batch * 4)
                        answers = []
                        while len(answers) < 4 and not closed:
                            answers.append(read_response(sock, buf))
                            closed = answers[-1][1]
                    except OSError as exc:
                        self.errors.append(f"pipelining client after {self.batches_answered} batches: {exc!r}")
                        return
                    self.errors.extend(f"batch answered {status}" for status, _ in answers if status != 200)
                    self.batches_answered += len(answers)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)
        for sock in self.idle:
            sock.close()


@pytest.mark.slow
def test_trickling_idle_and_pipelining_clients_do_not_slow_a_normal_client(server, sample_images, png):
    workers = sorted(server.worker_pids())
    adversaries = Adversaries(server, np.resize(sample_images[0], (256, 28, 28)))
    adversaries.start()
    tensor = json.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "shape": [1, 28, 28],
                    "datatype": "FP32",
                    "data": (sample_images[0][1] / 255.0).round(4).tolist(),
                }
            ]
        }
    )
    boundary = "b0undary"
    upload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png(1)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    latencies, statuses = [], []
    try:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        started = time.monotonic()
        while time.monotonic() - started < NORMAL_SECONDS:
            for path, body, ctype in (
                ("/v2/models/fashion/infer", tensor.encode(), "application/json"),
                ("/api/v1/predict", upload, f"multipart/form-data; boundary={boundary}"),
            ):
                begun = time.perf_counter()
                conn.request("POST", path, body=body, headers={"Content-Type": ctype})
                response = conn.getresponse()
                response.read()
                latencies.append(time.perf_counter() - begun)
                statuses.append(response.status)
            time.sleep(0.005)
        conn.close()
    finally:
        adversaries.finish()
    log = server.log_tail()
    assert "WORKER TIMEOUT" not in log and sorted(server.worker_pids()) == workers, log
    assert set(statuses) == {200} and not adversaries.errors, (set(statuses), adversaries.errors[:3])
    assert adversaries.batches_answered >= 20  # the pipelining client was served throughout
    p99 = float(np.percentile(latencies, 99)) * 1e3
    assert p99 <= 50.0, f"p99 {p99:.1f} ms over {len(latencies)} requests"
