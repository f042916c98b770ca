"""The gRPC server process: health checking, reflection, the prediction log and the metrics it
shares with the workers, its graceful stop."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness.server import ServerProcess
from prometheus_client.parser import text_string_to_metric_families

from fashion_classifier.config import Settings
from fashion_classifier.predlog import open_log
from oip_grpc.conftest import grpc_pids, grpc_server, grpc_target

SERVICE = "inference.GRPCInferenceService"


def _health(server: ServerProcess, service: str) -> int:
    with grpc.insecure_channel(grpc_target(server)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_checking_for_kubernetes_probes(server):
    for service in ("", SERVICE):
        assert _health(server, service) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        _health(server, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(server):
    with grpc.insecure_channel(grpc_target(server)) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests_ = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
        ]
        listed, described = list(stub.ServerReflectionInfo(iter(requests_), timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.FileDescriptorProto.FromString(described.file_descriptor_response.file_descriptor_proto[0])
    methods = [m.name for m in proto.service[0].method]
    assert proto.package == "inference" and methods == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]


def _scrape(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    text = requests.get(server.metrics_url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _count(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_predictions_are_logged_and_counted_like_rest_ones(server, triton, images):
    pixels, _ = images
    before = _scrape(server)
    tensor = grpcclient.InferInput("pixels", [4, 28, 28], "UINT8")
    tensor.set_data_from_numpy(pixels[:4])
    result = triton.infer("fashion", [tensor])
    ids = [uuid.UUID(s.decode()) for s in result.as_numpy("prediction_id")]
    classes = result.as_numpy("class").tolist()
    with pytest.raises(grpc.RpcError):  # an error is counted with its code
        triton._client_stub.ModelInfer(grpcclient.service_pb2.ModelInferRequest(model_name="fashion"))

    settings = dataclasses.replace(
        Settings(),
        predlog="sqlite",
        sqlite_path=Path(server.env["FC_SQLITE_PATH"]),
        spool_dir=Path(server.env["FC_SPOOL_DIR"]),
    )
    log = open_log(settings)
    try:
        deadline = time.monotonic() + 15
        rows = [log.get(pid) for pid in ids]
        while None in rows and time.monotonic() < deadline:  # the writer's linger, then its write
            time.sleep(0.1)
            rows = [log.get(pid) for pid in ids]
    finally:
        log.close()
    assert None not in rows, "every answered prediction is in the log"
    assert {r.source for r in rows} == {"grpc"} and [r.predicted_class for r in rows] == classes
    assert all(r.client_hash for r in rows), "the client's address is hashed, as for REST"

    after = _scrape(server)
    grew = [
        _count(after, name, **labels) - _count(before, name, **labels)
        for name, labels in (
            ("fc_grpc_requests_total", {"method": "ModelInfer", "code": "OK"}),
            ("fc_grpc_requests_total", {"method": "ModelInfer", "code": "INVALID_ARGUMENT"}),
            ("fc_grpc_request_duration_seconds_count", {"method": "ModelInfer"}),
            ("fc_predictions_total", {"source": "grpc"}),
        )
    ]
    assert grew == [1, 1, 2, 4]


def test_sigterm_to_the_master_stops_the_grpc_server(store_copy, tmp_path, images):
    """As Kubernetes stops a pod: SIGTERM to the master alone, which passes it on."""
    server = grpc_server(tmp_path, store_copy).start(timeout=60, workers=1)
    try:
        client = grpcclient.InferenceServerClient(grpc_target(server))
        tensor = grpcclient.InferInput("pixels", [1, 784], "UINT8")
        tensor.set_data_from_numpy(np.ascontiguousarray(images[0][:1].reshape(1, 784)))
        assert client.infer("fashion", [tensor]).as_numpy("class").shape == (1,)
        client.close()
        (child,) = grpc_pids(server.proc.pid)
        os.kill(server.proc.pid, signal.SIGTERM)
        code = server.proc.wait(timeout=30)
        assert not Path(f"/proc/{child}").exists(), "the master waited for the gRPC server to end"
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert code == 0, log
    assert "Stopping: calls in flight" in log and "restarting" not in log and "Traceback" not in log


def test_the_grpc_server_never_imports_tensorflow(server):
    (pid,) = grpc_pids(server.proc.pid)
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "tensorflow/" not in maps and "libtensorflow_framework" not in maps


def _slow_call(target: str, streams: int = 1) -> socket.socket:
    """An HTTP/2 connection with ``streams`` ModelInfer calls whose 818-byte messages stop after 10 bytes."""
    host, port = target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)

    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

    def literal(name: str, value: str) -> bytes:  # HPACK: literal header field without indexing, new name
        return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()

    headers = b"".join(
        literal(n, v)
        for n, v in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/inference.GRPCInferenceService/ModelInfer"),
            (":authority", target),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )
    calls = b"".join(
        frame(1, 4, stream, headers) + frame(0, 0, stream, b"\x00" + (818).to_bytes(4, "big") + bytes(10))
        for stream in range(1, 2 * streams, 2)
    )  # a client's streams have odd ids
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + calls)
    return sock


def test_calls_past_the_limit_are_refused_at_once_and_served_again_after(server, triton, images):
    """64 calls whose messages never finish hold all the process's places (and at most 64 × 4 MiB):
    the next call is refused at once, not queued; once they are gone, calls are served again."""
    slow = [_slow_call(grpc_target(server), streams=8) for _ in range(8)]
    tensor = grpcclient.InferInput("pixels", [1, 28, 28], "UINT8")
    tensor.set_data_from_numpy(images[0][:1])
    try:
        deadline = time.monotonic() + 10
        while True:  # until the server has taken in the 64 calls (it reads the sockets as they come)
            try:
                triton.infer("fashion", [tensor], client_timeout=5)
            except grpcclient.InferenceServerException as exc:
                assert exc.status() == "StatusCode.RESOURCE_EXHAUSTED", exc
                break
            assert time.monotonic() < deadline, "calls are still served with 64 calls stalled"
            time.sleep(0.05)
    finally:
        for sock in slow:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # the server notices the closed connections on its next read
        try:
            assert triton.infer("fashion", [tensor], client_timeout=5).as_numpy("class").shape == (1,)
            break
        except grpcclient.InferenceServerException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_slow_clients_hold_no_thread(server, triton, images):
    """Calls whose message never finishes arriving wait on the event loop; others are answered."""
    slow = [_slow_call(grpc_target(server)) for _ in range(20)]
    try:
        tensor = grpcclient.InferInput("pixels", [1, 28, 28], "UINT8")
        tensor.set_data_from_numpy(images[0][:1])
        started = time.monotonic()
        for _ in range(20):
            assert triton.infer("fashion", [tensor], client_timeout=5).as_numpy("class").shape == (1,)
        assert time.monotonic() - started < 5
    finally:
        for sock in slow:
            sock.close()


def test_sigterm_keeps_the_rows_of_the_last_calls_when_the_log_is_slow(store_copy, tmp_path, images):
    """The master's SIGTERM comes again from its on_exit while the gRPC process flushes its rows to
    a log that is slow (SQLite locked by another writer): the rows reach the log or the spool."""
    import sqlite3
    import threading

    server = grpc_server(tmp_path, store_copy).start(timeout=60, workers=1)
    blocker = sqlite3.connect(server.env["FC_SQLITE_PATH"], isolation_level=None, check_same_thread=False)
    try:
        client = grpcclient.InferenceServerClient(grpc_target(server))
        blocker.execute("BEGIN EXCLUSIVE")
        ids = []
        for _ in range(5):
            tensor = grpcclient.InferInput("pixels", [8, 28, 28], "UINT8")
            tensor.set_data_from_numpy(images[0])
            ids += [uuid.UUID(s.decode()) for s in client.infer("fashion", [tensor]).as_numpy("prediction_id")]
        client.close()
        threading.Timer(3.0, lambda: blocker.execute("ROLLBACK")).start()
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0
    finally:
        server.stop()
        time.sleep(3.5)
        blocker.close()
    log_text = server.log_path.read_text()
    assert "they are lost" not in log_text, log_text[-3000:]
    settings = dataclasses.replace(
        Settings(),
        predlog="sqlite",
        sqlite_path=Path(server.env["FC_SQLITE_PATH"]),
        spool_dir=Path(server.env["FC_SPOOL_DIR"]),
    )
    log = open_log(settings)
    log.start()  # replays what was spooled
    try:
        deadline = time.monotonic() + 20
        missing = ids
        while missing and time.monotonic() < deadline:
            missing = [pid for pid in missing if log.get(pid) is None]
            time.sleep(0.2)
    finally:
        log.close()
    assert not missing, f"{len(missing)} of {len(ids)} rows lost"
