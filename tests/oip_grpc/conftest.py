"""A real ``fashion-classifier serve`` with its gRPC server on, and stock clients for it.

No test process imports the project's own stubs (``oip_grpc.stubs``): they and tritonclient's
both define the protocol's ``inference.*`` messages, which one protobuf descriptor pool refuses to
hold twice. The tests speak to the server as any client would, with tritonclient's stubs, which
are wire-compatible (the same messages, field names and numbers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient  # the [test] extra
from harness.ports import free_ports
from harness.server import ServerProcess, children, serve_command, serve_env


def grpc_server(workdir: Path, model_dir: Path, extra: dict[str, str] | None = None) -> ServerProcess:
    """``serve`` with one worker, the SQLite log, gRPC on a free port (``server.env["FC_GRPC_PORT"]``) and
    small limits: 200,000-byte messages, 64 images."""
    port, grpc_port, metrics_port = free_ports(3)
    env = serve_env(
        workdir,
        model_dir,
        port=port,
        workers=1,
        metrics_port=metrics_port,
        extra={"FC_GRPC_PORT": str(grpc_port), "FC_MAX_UPLOAD_BYTES": "200000", "FC_MAX_BATCH": "64", **(extra or {})},
    )
    return ServerProcess(serve_command(), env, port, workdir / "serve.log")


def grpc_target(server: ServerProcess) -> str:
    return f"{server.host}:{server.env['FC_GRPC_PORT']}"


def grpc_pids(master: int) -> list[int]:
    """The master's children running the gRPC server (a restarted one is a child of a watch thread)."""
    pids = []
    for pid in children(master):
        with contextlib.suppress(FileNotFoundError):
            if b"fashion_classifier.oip_grpc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return pids


@pytest.fixture(scope="module")
def server(store_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # gunicorn is ready (the HTTP readiness) only after the master started the gRPC server.
    srv = grpc_server(tmp_path_factory.mktemp("serve"), store_copy).start(timeout=60, workers=1)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def triton(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(grpc_target(server))
    yield client
    client.close()


@pytest.fixture(scope="session")
def images(test_split) -> tuple[np.ndarray, np.ndarray]:
    """The first 8 official test images (uint8 [8, 28, 28]) and their labels."""
    pixels, labels = test_split
    return pixels[:8], labels[:8]
