"""The gunicorn master keeps the gRPC server process: a failed start stops ``serve``, a dead or hung
server is replaced, the pod is not ready while none serves, and a server whose master is gone stops
itself."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness.server import ServerProcess

from oip_grpc.conftest import grpc_pids, grpc_server, grpc_target

pytestmark = pytest.mark.timeout(120)


def serving(server: ServerProcess) -> bool:
    try:
        with grpc.insecure_channel(grpc_target(server)) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_taken_grpc_port_stops_serve_at_startup(store_copy, tmp_path, processes):
    with socket.socket() as taken:
        # SO_REUSEPORT as a second server of the same user would bind it: one process of ours would
        # share it silently, if the master did not check it first.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = grpc_server(
            tmp_path, store_copy, extra={"FC_GRPC_PORT": str(taken.getsockname()[1]), "FC_GRPC_WORKERS": str(processes)}
        )
        env = server.env
        proc = subprocess.run(server.command, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode != 0
    assert f"cannot serve gRPC on 127.0.0.1:{env['FC_GRPC_PORT']} (FC_GRPC_PORT)" in proc.stderr, proc.stderr[-3000:]


def test_a_killed_grpc_server_is_replaced(store_copy, tmp_path):
    server = grpc_server(tmp_path, store_copy).start(timeout=60, workers=1)
    try:
        (first,) = grpc_pids(server.proc.pid)
        os.kill(first, signal.SIGKILL)
        # The first restart waits 1 s; then the new process loads the model and binds the port.
        wait_for(
            lambda: grpc_pids(server.proc.pid) not in ([], [first]) and serving(server), 30, "a new gRPC server serving"
        )
        # The supervisor marks it serving once it reads its ready byte, maybe after a client saw it serve.
        wait_for(lambda: ready_status(server) == 200, 10, "ready again")
        assert f"the gRPC server (pid {first}) exited" in server.log_path.read_text()
    finally:
        server.stop()


def ready_status(server: ServerProcess) -> int:
    return requests.get(f"{server.base_url}/v2/health/ready", timeout=5).status_code


def test_a_hung_grpc_server_is_killed_and_replaced(store_copy, tmp_path):
    # SIGSTOP: alive but answering nothing, as a process stuck in a call. FC_TIMEOUT=3: killed after
    # 5 s (the supervisor's floor, supervisor.STALE) without a heartbeat.
    server = grpc_server(tmp_path, store_copy, extra={"FC_TIMEOUT": "3"}).start(timeout=60, workers=1)
    try:
        (first,) = grpc_pids(server.proc.pid)
        os.kill(first, signal.SIGSTOP)
        wait_for(
            lambda: grpc_pids(server.proc.pid) not in ([], [first]) and serving(server), 30, "a new gRPC server serving"
        )
        assert not Path(f"/proc/{first}").exists() or _zombie(first)
        log = server.log_path.read_text()
        killed = rf"the gRPC server \(pid {first}\) sent no heartbeat for \d+ s; killing it"
        assert re.search(killed, log), log[-3000:]
        assert f"the gRPC server (pid {first}) exited" in log  # its status: gunicorn's master may reap it first
        wait_for(lambda: ready_status(server) == 200, 10, "ready again")
    finally:
        server.stop()


def test_the_pod_is_not_ready_while_no_grpc_server_serves(store_copy, tmp_path):
    server = grpc_server(tmp_path, store_copy).start(timeout=60, workers=1)  # FC_TIMEOUT 30: not killed
    try:
        assert ready_status(server) == 200
        (first,) = grpc_pids(server.proc.pid)
        os.kill(first, signal.SIGSTOP)
        try:
            wait_for(lambda: ready_status(server) == 400, 15, "not ready once the heartbeats stop")
            body = requests.get(f"{server.base_url}/v2/health/ready", timeout=5).json()
            assert body == {"ready": False, "error": "no gRPC server process is serving"}
            assert requests.get(f"{server.base_url}/v2/health/live", timeout=5).status_code == 200
        finally:
            os.kill(first, signal.SIGCONT)
        wait_for(lambda: ready_status(server) == 200, 10, "ready again once it beats")
        assert grpc_pids(server.proc.pid) == [first] and serving(server)
    finally:
        server.stop()


def test_the_grpc_server_stops_when_its_master_is_killed(store_copy, tmp_path):
    server = grpc_server(tmp_path, store_copy).start(timeout=60, workers=1)
    try:
        (child,) = grpc_pids(server.proc.pid)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        wait_for(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), 15, "the orphaned gRPC server gone")
        assert "the gunicorn master is gone; stopping" in server.log_path.read_text()
    finally:
        server.stop()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_several_processes_share_the_port(store_copy, tmp_path, images):
    server = grpc_server(tmp_path, store_copy, extra={"FC_GRPC_WORKERS": "2"}).start(timeout=60, workers=1)
    try:
        pids = grpc_pids(server.proc.pid)
        assert len(pids) == 2
        before = {pid: _cpu_ticks(pid) for pid in pids}
        request = _infer_request(images[0][:1])
        for _ in range(20):  # 20 connections: the kernel spreads them by their addresses
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(grpc_target(server), options=options) as channel:
                call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
                for _ in range(30):
                    assert call(request, timeout=10)
        used = {pid: _cpu_ticks(pid) - before[pid] for pid in pids}
        assert all(ticks >= 3 for ticks in used.values()), f"CPU ticks per process: {used}"
    finally:
        server.stop()


def _infer_request(pixels) -> bytes:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="fashion")
    request.inputs.add(name="pixels", datatype="UINT8", shape=list(pixels.shape))
    request.raw_input_contents.append(pixels.tobytes())
    return request.SerializeToString()
