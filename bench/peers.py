"""Benchmarks against peers (issue 6): our server, the seed's baseline, MLServer and KServe, one run.

From the repository root, on a quiet machine::

    bench/peers-setup                                              # once: peer venvs in var/bench/venvs/
    flock /tmp/fc-heavy.lock .venv/bin/python bench/peers.py           # full run, about 11 minutes
    flock /tmp/fc-heavy.lock .venv/bin/python bench/peers.py --quick   # smoke run, results in var/bench/
    # only the gRPC comparison (about 2 minutes), results in bench/results/peers-<date>-grpc.*:
    flock /tmp/fc-heavy.lock .venv/bin/python bench/peers.py --only ours-alone,kserve --workloads grpc --tag grpc

Servers, one after another on 127.0.0.1, each serving the store's current version of the default
``mlp`` artifact (``model/``) with 2 worker processes:

* ``ours-cassandra``: ``fashion-classifier serve`` logging every prediction to the local 2-node
  Cassandra cluster (scripts/cassandra-local; started when down, after a logged JVM warm-up);
* ``ours-off``: the same server with the prediction log off (measured while the cluster still runs,
  so that the logging ratio compares like with like);
* ``ours-alone``: ours with the log off once the cluster has stopped: the peers' conditions (no
  prediction log, no JVMs on the cores), so the ours/peer ratios compare like with like. The
  two idle JVMs alone took 0.4-0.5 of the 2 cores from ours-off in the 2026-12-02 run;
* ``baseline``: bench/baseline_app.py (Flask + Keras ``model.predict`` per request), plus a V2
  route (bench/peer_runtimes/baseline_v2.py), gunicorn with 2 sync workers;
* ``mlserver``: MLServer with a custom runtime (bench/peer_runtimes/mlserver_runtime.py) running
  the same ``model.tflite`` with the same LiteRT (ai-edge-litert) as ours, ``parallel_workers: 2``
  (an HTTP front process handing requests to 2 inference processes); and ``mlserver-inline``,
  ``parallel_workers: 0`` (one process does everything, no inter-process hop). The MLServer
  target uses the better of the two: the peer's own best setup;
* ``kserve``: KServe's Python ``ModelServer`` with a custom ``Model``
  (bench/peer_runtimes/kserve_server.py), same LiteRT export, ``--workers 2`` (uvicorn processes
  for REST), its gRPC server on (in its main process: KServe serves gRPC from one process).

Ours serves gRPC too (``FC_GRPC_PORT``), from 2 processes of its own beside the 2 gunicorn workers
(``FC_GRPC_WORKERS=2``, sharing the port): 2 worker processes per protocol, as every server here
gets; every server is given free ports for HTTP and gRPC.

The Cassandra cluster is stopped again (when this run started it) before ``ours-alone``, the
baseline and the peers run. The targets are judged for both ``ours-cassandra`` (the full stack,
on a machine it shares with the cluster) and ``ours-alone`` (like for like with the peers).

Workloads, wrk (bench/wrk/) at 16 connections for ``--duration`` seconds after ``--warmup`` (the
``grpc`` one with bench/grpcload instead, at the same concurrency):

* ``png``: one 28×28 PNG per multipart upload to ``POST /api/v1/predict`` (ours, baseline).
  MLServer and KServe have no upload API: N/A;
* ``v2``: one V2 JSON tensor per request, ``FP32 [1,28,28]``, to ``/v2/models/fashion/infer``
  (every server);
* ``batch256``: 256 images per request as one V2 JSON tensor, ``UINT8 [256,28,28]`` (every
  server; JSON with 200,704 float literals would mostly measure the JSON parser);
* ``batch256-upload``: 256 PNG files in one multipart upload (ours, baseline);
* ``grpc``: single-image ``ModelInfer`` over gRPC (``inference.GRPCInferenceService``, the Open
  Inference Protocol), one input ``UINT8 [1,28,28]`` with its 784 bytes in
  ``raw_input_contents``, no outputs named (each server answers with all its outputs: ours
  probabilities, class, label and prediction_id, KServe's Model probabilities), to model
  ``fashion`` (ours and KServe; the others: N/A). The load generator is bench/grpcload (Go,
  grpc-go; ``ghz`` is not available here), built into var/bench/bin/ by bench/grpcrun.py when its
  sources changed: 16 concurrent callers, each on its own HTTP/2 connection (as wrk's 16
  connections), sending one pre-serialized request (made with tritonclient's ``service_pb2``).

Before loading a server, each workload's request is sent once and the answer checked (the test
image is an ankle boot, class 9): a server that answers wrongly is not benchmarked. For ``grpc``
the response is decoded with tritonclient's ``ModelInferResponse`` (probabilities from
``raw_output_contents`` or ``contents``), and grpcload checks again that its own first response
holds the same 40 probability bytes; it counts an empty response as an error.

Figures per server and workload: requests/s, images/s, p50/p90/p99, errors (socket errors and
non-2xx; for ``grpc``, every non-OK status code and empty responses); per server: process start to
ready (V2 readiness), peak RSS per process (VmHWM) with its role. Also: training results from
bench/results/training-*.json and the logging overhead.

Targets: ours / baseline png ≥ 80×, ours / MLServer and ours / KServe V2 req/s ≥ 1.5×, ours-alone /
KServe ``grpc`` req/s ≥ 1.5× (``grpc_kserve``), logging on/off ≥ 0.9, p99 ≤ 10 ms, start ≤ 3 s.

``--only`` and ``--workloads`` (comma-separated or repeated) run a subset (targets they leave out:
NOT RUN); ``--tag`` names the result files ``peers-<date>-<tag>``. Results: printed, and written to
``bench/results/peers-<date>.json`` and ``.md`` (``--quick``: ``var/bench/``). Exit code 0 when it
ran (targets PASS/FAIL are in the report), 1 when our server, wrk, grpcload or the cluster failed.
A peer that is not installed or fails to start is reported as such, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "tests"))  # the process harness is shared with the tests

import cassandra_cluster  # noqa: E402
import grpcrun  # noqa: E402
import machine  # noqa: E402
import paths  # noqa: E402
import wrkrun  # noqa: E402
from harness.images import encode, load_test_split  # noqa: E402
from harness.ports import free_port, free_ports  # noqa: E402
from harness.server import ServerError, ServerProcess, serve_command, serve_env  # noqa: E402

from fashion_classifier.config import CLASS_NAMES  # noqa: E402

WORKERS = 2
CONNECTIONS = 16
BATCH = 256
IMAGE_INDEX = 0  # first test image: an ankle boot
KEYSPACE = "bench_peers"
VENVS = ROOT / "var" / "bench" / "venvs"
RUNTIMES = BENCH / "peer_runtimes"
MODEL_READY = "/v2/models/fashion/ready"
INFER = "/v2/models/fashion/infer"
PREDICT = "/api/v1/predict"
WITH_CLUSTER = ("ours-cassandra", "ours-off")  # measured while the Cassandra cluster runs
OURS = (*WITH_CLUSTER, "ours-alone")
PEERS = ("mlserver", "kserve")
SERVERS = (*WITH_CLUSTER, "ours-alone", "baseline", "mlserver", "mlserver-inline", "kserve")
WORKLOADS = ("png", "v2", "batch256", "batch256-upload", "grpc")
TARGETS = {
    "baseline": 80.0,
    "mlserver": 1.5,
    "kserve": 1.5,
    "grpc_kserve": 1.5,
    "logging": 0.9,
    "p99_ms": 10.0,
    "ready_s": 3.0,
}
GRPC_READY_S = 60.0  # how long the first gRPC call may wait for a server's gRPC port after HTTP is ready


@dataclass
class Server:
    """How to start one server and which workloads it speaks."""

    name: str
    description: str
    command: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    workloads: tuple[str, ...]
    gunicorn_workers: int | None = None  # wait for this many gunicorn workers after ready
    not_applicable: dict[str, str] = field(default_factory=dict)  # workload -> why not
    unavailable: str | None = None  # why the server cannot run here at all
    versions: dict[str, str | None] = field(default_factory=dict)
    grpc_port: int | None = None  # where it serves gRPC (the ``grpc`` workload)


# ---------------------------------------------------------------------------------------------
# Inputs


Load = wrkrun.Load | grpcrun.Load


def grpc_request(pixels: np.ndarray) -> bytes:
    """A serialized ModelInferRequest: one UINT8 [1,28,28] input in raw_input_contents, model
    ``fashion``, no outputs named. tritonclient's stubs: its message is the Open Inference
    Protocol's ``inference.ModelInferRequest`` (same package, same field numbers as KServe's)."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="fashion")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "pixels", "UINT8"
    tensor.shape.extend([1, 28, 28])
    request.raw_input_contents.append(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return request.SerializeToString()


def prepare_inputs(workdir: Path, data_dir: Path) -> tuple[dict[str, Load], dict[str, bytes]]:
    """The wrk and grpcload loads per workload, and the exact request bodies for the answer check."""
    images, _ = load_test_split(data_dir)
    pixels = np.asarray(images[IMAGE_INDEX], dtype=np.uint8)
    batch = np.asarray(images[:BATCH], dtype=np.uint8)
    png = workdir / "fashion-28x28.png"
    png.write_bytes(encode(pixels, "PNG"))
    single = {
        "inputs": [
            {
                "name": "pixels",
                "shape": [1, 28, 28],
                "datatype": "FP32",
                "data": [round(float(v), 7) for v in (pixels.ravel() / np.float32(255))],
            }
        ]
    }
    many = {
        "inputs": [{"name": "pixels", "shape": [BATCH, 28, 28], "datatype": "UINT8", "data": batch.ravel().tolist()}]
    }
    bodies = {"v2": json.dumps(single).encode(), "batch256": json.dumps(many).encode()}
    for name, body in bodies.items():
        (workdir / f"{name}.json").write_bytes(body)
    bodies["grpc"] = grpc_request(pixels.reshape(1, 28, 28))
    (workdir / "grpc-request.bin").write_bytes(bodies["grpc"])
    file_env = {"WRK_FILE": str(png)}
    loads: dict[str, Load] = {
        "png": wrkrun.Load("png", PREDICT, "multipart.lua", file_env),
        "v2": wrkrun.Load("v2", INFER, "body.lua", {"WRK_BODY": str(workdir / "v2.json")}),
        "batch256": wrkrun.Load("batch256", INFER, "body.lua", {"WRK_BODY": str(workdir / "batch256.json")}, BATCH),
        "batch256-upload": wrkrun.Load(
            "batch256-upload", PREDICT, "multipart.lua", {**file_env, "WRK_COUNT": str(BATCH)}, BATCH
        ),
        "grpc": grpcrun.Load("grpc", grpcrun.METHOD_MODEL_INFER, workdir / "grpc-request.bin"),
    }
    bodies["png"] = png.read_bytes()
    return loads, bodies


def check_answer(base_url: str, workload: str, bodies: dict[str, bytes], expected: int) -> None:
    """Send one request of ``workload`` and check the predicted class of the first image."""
    if workload.endswith("upload") or workload == "png":
        boundary = "fcpeerscheck"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
                f"Content-Type: image/png\r\n\r\n"
            ).encode()
            + bodies["png"]
            + f"\r\n--{boundary}--\r\n".encode()
        )
        req = urllib.request.Request(
            base_url + PREDICT, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
    else:
        req = urllib.request.Request(base_url + INFER, bodies[workload], {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    if "predictions" in answer:  # our upload API and the baseline's
        got = int(answer["predictions"][0]["class"])
    else:  # V2: every server returns probabilities [N, 10]
        out = next(o for o in answer["outputs"] if o["name"] == "probabilities")
        got = int(np.argmax(np.asarray(out["data"], dtype=np.float64).ravel()[:10]))
    if got != expected:
        raise ServerError(f"{workload}: predicted class {got}, expected {expected} ({CLASS_NAMES[expected]})")


def check_grpc(address: str, body: bytes, expected: int, wait_s: float = GRPC_READY_S) -> bytes:
    """Send the ``grpc`` request once to ``address`` (host:port) and check the predicted class; waits
    up to ``wait_s`` for the gRPC port (it may open after HTTP is ready). Returns the probability
    bytes (float32 [1,10]) that grpcload then looks for in its own first response."""
    import grpc
    from tritonclient.grpc import service_pb2

    deadline = time.monotonic() + wait_s
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(grpcrun.METHOD_MODEL_INFER)  # bytes in, bytes out
        while True:
            try:
                raw = call(body, timeout=30, wait_for_ready=True)
                break
            except grpc.RpcError as exc:
                if (
                    exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                    or time.monotonic() > deadline
                ):
                    raise ServerError(f"grpc: {exc.code().name}: {exc.details()}") from None
                time.sleep(0.5)
    answer = service_pb2.ModelInferResponse.FromString(raw)
    names = [o.name for o in answer.outputs]
    if "probabilities" not in names:
        raise ServerError(f"grpc: no probabilities output (outputs: {names})")
    index = names.index("probabilities")
    out = answer.outputs[index]
    if out.datatype != "FP32" or list(out.shape) != [1, 10]:
        raise ServerError(f"grpc: probabilities {out.datatype} {list(out.shape)}, expected FP32 [1, 10]")
    if answer.raw_output_contents:  # raw bytes, one entry per output
        probabilities = np.frombuffer(answer.raw_output_contents[index], dtype="<f4")
    else:
        probabilities = np.asarray(out.contents.fp32_contents, dtype="<f4")
    if probabilities.size != 10:
        raise ServerError(f"grpc: {probabilities.size} probabilities, expected 10")
    got = int(np.argmax(probabilities))
    if got != expected:
        raise ServerError(f"grpc: predicted class {got}, expected {expected} ({CLASS_NAMES[expected]})")
    # Packed FP32 contents and raw contents hold the same 40 little-endian bytes.
    return probabilities.astype("<f4").tobytes()


# ---------------------------------------------------------------------------------------------
# Servers


def _venv_versions(venv: Path, packages: tuple[str, ...]) -> dict[str, str | None]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(p):\n    try: return m.version(p)\n    except m.PackageNotFoundError: return None\n"
        "print(json.dumps({p: v(p) for p in sys.argv[1:]}))"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code, *packages], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _peer_missing(peer: str) -> str | None:
    venv = VENVS / peer
    if (venv / ".stamp").is_file():
        return None
    error = VENVS / f"{peer}.error"
    if error.is_file():
        return f"install failed (bench/peers-setup): {error.read_text(errors='replace').strip()[-1500:]}"
    return f"not installed: run bench/peers-setup (expected a venv in {venv.relative_to(ROOT)})"


def ours(predlog: str, model_dir: Path, workdir: Path, name: str | None = None) -> Server:
    port, grpc_port, metrics_port = free_ports(3)
    extra = {
        "FC_LOG_LEVEL": "warning",
        "FC_GRPC_PORT": str(grpc_port),
        "FC_GRPC_WORKERS": str(WORKERS),
        **(cassandra_cluster.env(KEYSPACE) if predlog == "cassandra" else {}),
    }
    env = serve_env(
        workdir, model_dir, port=port, workers=WORKERS, predlog=predlog, extra=extra, metrics_port=metrics_port
    )
    what = (
        "Cassandra prediction log on the local 2-node cluster (RF 2)"
        if predlog == "cassandra"
        else "prediction log off"
    )
    if name == "ours-alone":
        what += ", no Cassandra JVMs running (the peers' conditions)"
    return Server(
        name or f"ours-{predlog}",
        f"fashion-classifier serve, gunicorn 2 keep-alive workers, LiteRT, "
        f"{WORKERS} gRPC processes (FC_GRPC_WORKERS); {what}",
        serve_command(),
        env,
        port,
        "/v2/health/ready",
        ("png", "v2", "batch256", "batch256-upload", "grpc"),
        # the master's leaf processes: its workers and its gRPC servers
        gunicorn_workers=2 * WORKERS,
        grpc_port=grpc_port,
    )


def baseline(model_dir: Path) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FC_")}
    env.update(
        FC_MODEL_DIR=str(model_dir),
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(BENCH),
    )
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    command = [
        gunicorn,
        "--workers",
        str(WORKERS),
        "--worker-class",
        "sync",
        "--timeout",
        "120",
        "--chdir",
        str(RUNTIMES),
        "--log-level",
        "warning",
        "baseline_v2:create_app()",
    ]
    return Server(
        "baseline",
        "bench/baseline_app.py: Flask + Keras model.predict per request (TensorFlow in "
        "every worker), gunicorn 2 sync workers; V2 route from bench/peer_runtimes/baseline_v2.py",
        command,
        env,
        port,
        "/v2/health/ready",
        ("png", "v2", "batch256", "batch256-upload"),
        gunicorn_workers=WORKERS,
        not_applicable={"grpc": "no gRPC server (Flask app)"},
    )


def mlserver(model_dir: Path, workdir: Path, parallel_workers: int = WORKERS) -> Server:
    venv = VENVS / "mlserver"
    port, grpc_port, metrics_port = free_ports(3)
    # MLServer loads a custom runtime from the model folder: give it a copy of the runtimes with
    # the two settings files beside them.
    folder = workdir / f"mlserver-models-{parallel_workers}"
    shutil.copytree(RUNTIMES, folder, ignore=shutil.ignore_patterns("__pycache__", "baseline_v2.py"))
    settings = {
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        # N inference processes behind MLServer's HTTP front process: its way of using 2 cores
        # (0: inference inline in the front process).
        "parallel_workers": parallel_workers,
        "debug": False,
        "load_models_at_startup": True,
        # Its Prometheus multiprocess files: in the scratch directory, not the current one.
        "metrics_dir": str(folder / ".metrics"),
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "fashion",
                "implementation": "mlserver_runtime.LiteRTFashion",
                "parameters": {"uri": str(model_dir.resolve())},
            }
        )
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FC_")},
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(folder),
        "OMP_NUM_THREADS": "1",
    }
    how = (
        f"HTTP front process + {parallel_workers} inference processes"
        if parallel_workers
        else "one process: HTTP and inference inline"
    )
    server = Server(
        "mlserver" if parallel_workers else "mlserver-inline",
        f"MLServer, custom runtime running model.tflite with ai-edge-litert (1 thread), "
        f"parallel_workers={parallel_workers} ({how})",
        [str(venv / "bin" / "mlserver"), "start", str(folder)],
        env,
        port,
        MODEL_READY,
        ("v2", "batch256"),
        not_applicable={**_no_upload(), "grpc": "not in this comparison: the gRPC target is against KServe"},
    )
    server.unavailable = _peer_missing("mlserver")
    if not server.unavailable:
        server.versions = _venv_versions(venv, ("mlserver", "ai-edge-litert", "numpy", "fastapi", "uvicorn"))
    return server


def kserve(model_dir: Path) -> Server:
    venv = VENVS / "kserve"
    port, grpc_port = free_ports(2)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FC_")},
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(RUNTIMES),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        str(venv / "bin" / "python"),
        str(RUNTIMES / "kserve_server.py"),
        "--model_dir",
        str(model_dir.resolve()),
        "--http_port",
        str(port),
        "--grpc_port",
        str(grpc_port),
        "--workers",
        str(WORKERS),
        "--enable_grpc",
        "true",
        # Its best path: no per-request latency log lines (ours logs no line per request either).
        "--enable_latency_logging",
        "false",
    ]
    server = Server(
        "kserve",
        f"KServe Python ModelServer, custom Model running model.tflite with ai-edge-litert "
        f"(1 thread), --workers {WORKERS} (uvicorn processes for REST), gRPC on (KServe's grpc.aio "
        f"server in its main process; raw outputs for raw inputs), latency logging off",
        command,
        env,
        port,
        MODEL_READY,
        ("v2", "batch256", "grpc"),
        not_applicable=_no_upload(),
        grpc_port=grpc_port,
    )
    server.unavailable = _peer_missing("kserve")
    if not server.unavailable:
        server.versions = _venv_versions(venv, ("kserve", "ai-edge-litert", "numpy", "fastapi", "uvicorn"))
    return server


def _no_upload() -> dict[str, str]:
    why = "no upload API: the server speaks only the V2 (Open Inference) protocol, which takes tensors"
    return {"png": why, "batch256-upload": why}


# ---------------------------------------------------------------------------------------------
# Measuring


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by ``pids``."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine used so far (from /proc/stat): with the server's and
    wrk's share subtracted, what is left is someone else's, and says whether the run was quiet."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def processes(root_pid: int) -> list[dict]:
    """Every process of a server with its peak RSS (VmHWM), current RSS and command line."""
    procs = []
    for pid in [root_pid, *_descendants(root_pid)]:
        try:
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
            )
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        procs.append(
            {
                "pid": pid,
                "role": "main" if pid == root_pid else "child",
                "cmdline": cmdline.strip()[:160],
                "peak_rss_mb": round(int(status["VmHWM"].split()[0]) / 1024, 1),
                "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
            }
        )
    return procs


def _worker_peak_mb(procs: list[dict]) -> float:
    """Peak RSS of the processes that serve requests (not helpers such as resource trackers)."""
    helpers = ("resource_tracker", "semaphore_tracker")
    serving = [p for p in procs if not any(h in p["cmdline"] for h in helpers)]
    children = [p for p in serving if p["role"] == "child"]
    # gunicorn and MLServer: the children do the work; a single-process server: the main one.
    return max(p["peak_rss_mb"] for p in (children or serving))


def bench_server(
    server: Server,
    loads: dict[str, Load],
    bodies: dict[str, bytes],
    workdir: Path,
    args: argparse.Namespace,
    check: Callable[[str, str, dict[str, bytes], int], None] = check_answer,
) -> dict:
    """Start ``server``, check and load each of its workloads, stop it; ``check`` raises on a wrong answer.
    Only the workloads in ``loads`` run (and are reported N/A)."""
    entry: dict = {"description": server.description, "workers": WORKERS, "versions": server.versions, "runs": {}}
    if server.grpc_port:
        entry["grpc_port"] = server.grpc_port
    for name, why in server.not_applicable.items():
        if name in loads:
            entry["runs"][name] = {"not_applicable": why}
    if server.unavailable:
        entry["unavailable"] = server.unavailable
        print(f"  {server.name}: UNAVAILABLE: {server.unavailable.splitlines()[0]}", flush=True)
        return entry
    entry["loadavg_before"] = os.getloadavg()
    proc = ServerProcess(
        server.command, server.env, server.port, workdir / f"{server.name}.log", ready_path=server.ready_path
    )
    try:
        proc.start(timeout=180, workers=server.gunicorn_workers)
    except ServerError as exc:
        entry["unavailable"] = f"failed to start: {exc}"[-3000:]
        print(f"  {server.name}: FAILED TO START\n{exc}", flush=True)
        return entry
    try:
        entry["ready_s"] = round(proc.ready_seconds, 3)
        print(f"  {server.name}: ready in {proc.ready_seconds:.2f} s", flush=True)
        time.sleep(1.0)  # peers that fork workers after their first ready answer finish booting them
        for name in (w for w in server.workloads if w in loads):
            load = loads[name]
            expect = b""
            try:
                if isinstance(load, grpcrun.Load):
                    checked = time.monotonic()
                    expect = check_grpc(f"127.0.0.1:{server.grpc_port}", bodies[name], args.expected_class)
                    entry["grpc_first_answer_s"] = round(time.monotonic() - checked, 3)
                else:
                    check(proc.base_url, name, bodies, args.expected_class)
            except Exception as exc:  # a wrong or failed answer: no point in loading it
                entry["runs"][name] = {"invalid": f"answer check failed: {exc}"}
                print(f"    {name}: answer check FAILED: {exc}", flush=True)
                continue

            def drive(seconds: float, load: Load = load, expect: bytes = expect) -> dict:
                if isinstance(load, grpcrun.Load):
                    return grpcrun.run(
                        f"127.0.0.1:{server.grpc_port}",
                        load,
                        CONNECTIONS,
                        seconds,
                        connections=CONNECTIONS,
                        expect=expect,
                    )
                return wrkrun.run(proc.base_url, load, CONNECTIONS, seconds)

            warm = drive(args.warmup)
            pids = [proc.proc.pid, *_descendants(proc.proc.pid)]
            server_cpu, busy, started = cpu_seconds(pids), machine_busy_seconds(), time.monotonic()
            run = drive(args.duration)
            wall = time.monotonic() - started
            server_cores = (cpu_seconds(pids) - server_cpu) / wall
            run["server_cpu_cores"] = round(server_cores, 3)
            run["server_cpu_us_per_request"] = round(server_cores * wall / max(run["requests"], 1) * 1e6)
            # Whatever else ran on the two cores meanwhile (other jobs, Cassandra for ours-cassandra).
            run["other_cpu_cores"] = round(
                (machine_busy_seconds() - busy) / wall - server_cores - run["wrk_cpu_share"], 3
            )
            run["warmup_errors"] = warm["errors_total"]
            run["requests_incl_warmup"] = warm["requests"] + run["requests"]
            run["processes_after"] = processes(proc.proc.pid)  # memory as this workload left it
            entry["runs"][name] = run
            print(
                f"    {name:>15}: {run['requests_per_s']:>9,.0f} req/s {run['images_per_s']:>10,.0f} img/s  "
                f"p50 {run['p50_ms']:7.2f}  p90 {run['p90_ms']:7.2f}  p99 {run['p99_ms']:7.2f} ms  "
                f"errors {run['errors_total']}  (server {run['server_cpu_us_per_request']} µs CPU/req; cores: server "
                f"{server_cores:.2f}, wrk {run['wrk_cpu_share']:.2f}, other {run['other_cpu_cores']:.2f})",
                flush=True,
            )
        entry["processes"] = processes(proc.proc.pid)
        entry["peak_rss_per_worker_mb"] = _worker_peak_mb(entry["processes"])
        entry["peak_rss_total_mb"] = round(sum(p["peak_rss_mb"] for p in entry["processes"]), 1)
    finally:
        proc.stop(timeout=30)
    return entry


# ---------------------------------------------------------------------------------------------
# Ratios, targets, report


def _rps(servers: dict, server: str, workload: str) -> float | None:
    run = servers.get(server, {}).get("runs", {}).get(workload, {})
    return run.get("requests_per_s") if "requests_per_s" in run and not run.get("errors_total") else None


def ratios(servers: dict) -> dict:
    """ours/other requests-per-second ratios for every workload both ran (errors make a run void)."""
    out: dict = {}
    for ours_name in OURS:
        for other in (s for s in SERVERS if s != ours_name):
            for workload in WORKLOADS:
                a, b = _rps(servers, ours_name, workload), _rps(servers, other, workload)
                if a and b:
                    out[f"{ours_name}/{other} {workload}"] = round(a / b, 2)
    return out


def targets(servers: dict, workloads: tuple[str, ...] = WORKLOADS) -> list[dict]:
    """The issue's targets; ``ours`` is the full stack (Cassandra logging on), the conservative side.
    In a subset run (``--only``/``--workloads``) a target whose servers or workload did not run is
    ``NOT RUN``, not FAIL."""
    out = []

    def add(
        name: str,
        value: float | None,
        target: float,
        higher: bool,
        why_missing: str = "",
        needs: tuple[tuple[str, str | None], ...] = (),
    ) -> None:
        if value is None:
            # A peer family (mlserver) ran when any of its setups did.
            skipped = [
                f"{s} {w or ''}".strip()
                for s, w in needs
                if not any(n == s or n.startswith(s + "-") for n in servers) or (w is not None and w not in workloads)
            ]
            if skipped:
                out.append(
                    {
                        "target": name,
                        "value": None,
                        "goal": target,
                        "result": "NOT RUN",
                        "note": "not in this run: " + ", ".join(skipped),
                    }
                )
            else:
                out.append(
                    {
                        "target": name,
                        "value": None,
                        "goal": target,
                        "result": "FAIL",
                        "note": why_missing or "not measured",
                    }
                )
            return
        ok = value >= target if higher else value <= target
        out.append({"target": name, "value": round(value, 3), "goal": target, "result": "PASS" if ok else "FAIL"})

    for name in ("ours-cassandra", "ours-alone"):
        ours_png, ours_v2 = _rps(servers, name, "png"), _rps(servers, name, "v2")
        base = _rps(servers, "baseline", "png")
        add(
            f"{name} / baseline, png upload req/s ≥ 80×",
            ours_png / base if ours_png and base else None,
            TARGETS["baseline"],
            True,
            needs=((name, "png"), ("baseline", "png")),
        )
        for peer in PEERS:
            # A peer with several setups (mlserver, mlserver-inline) is judged on its best one.
            other = max((_rps(servers, n, "v2") or 0.0 for n in servers if n.startswith(peer)), default=0.0)
            other = other or None
            missing = servers.get(peer, {}).get("unavailable", "")
            add(
                f"{name} / {peer}, V2 single tensor req/s ≥ 1.5×",
                ours_v2 / other if ours_v2 and other else None,
                TARGETS[peer],
                True,
                f"{peer} not measured: {missing.splitlines()[0]}" if missing else "",
                needs=((name, "v2"), (peer, "v2")),
            )
    ours_grpc, kserve_grpc = _rps(servers, "ours-alone", "grpc"), _rps(servers, "kserve", "grpc")
    missing = servers.get("kserve", {}).get("unavailable", "")
    add(
        "ours-alone / kserve, gRPC single-image ModelInfer req/s ≥ 1.5× (grpc_kserve)",
        ours_grpc / kserve_grpc if ours_grpc and kserve_grpc else None,
        TARGETS["grpc_kserve"],
        True,
        f"kserve not measured: {missing.splitlines()[0]}" if missing else "",
        needs=(("ours-alone", "grpc"), ("kserve", "grpc")),
    )
    ours_png = _rps(servers, "ours-cassandra", "png")
    off = _rps(servers, "ours-off", "png")
    add(
        "logging on / off, png upload req/s ≥ 0.9",
        ours_png / off if ours_png and off else None,
        TARGETS["logging"],
        True,
        needs=(("ours-cassandra", "png"), ("ours-off", "png")),
    )
    for name in OURS:
        for workload in ("png", "v2"):
            run = servers.get(name, {}).get("runs", {}).get(workload, {})
            add(
                f"{name} {workload} p99 at {CONNECTIONS} connections ≤ 10 ms",
                run.get("p99_ms"),
                TARGETS["p99_ms"],
                False,
                needs=((name, workload),),
            )
        add(
            f"{name} process start → ready ≤ 3 s",
            servers.get(name, {}).get("ready_s"),
            TARGETS["ready_s"],
            False,
            needs=((name, None),),
        )
    return out


def training_results() -> dict | None:
    files = sorted((ROOT / "bench" / "results").glob("training-*.json"))
    if not files:
        return None
    data = json.loads(files[-1].read_text())
    return {
        "file": str(files[-1].relative_to(ROOT)),
        "date": data.get("date"),
        "runs": [
            {k: r[k] for k in ("architecture", "test_accuracy", "fit_seconds", "wall_seconds", "pass")}
            for r in data.get("runs", [])
        ],
    }


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"# Benchmarks against peers, {results['date']} ({results['mode']})",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, {m['os']}, kernel {m['kernel']}, "
        f"Python {m['python']}; {m['wrk']}; commit {m['commit']}.",
        f"Load average at start: {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}; "
        f"before each server: "
        + ", ".join(f"{n} {s['loadavg_before'][0]:.2f}" for n, s in results["servers"].items() if "loadavg_before" in s)
        + ".",
        f"Each server: {results['workers']} worker processes, 127.0.0.1, wrk -t1 -c{CONNECTIONS} on the same "
        f"2 cores, {results['warmup_s']:.0f} s warm-up then {results['duration_s']:.0f} s measured per workload. "
        f"Command: `{results['command']}`.",
        "",
    ]
    if results.get("grpcload"):
        g = results["grpcload"]
        lines += [
            f"grpc workload: single-image ModelInfer, UINT8 [1,28,28] in raw_input_contents "
            f"({g['request_bytes']} bytes serialized), loaded by bench/grpcload (Go {g['go']}, grpc-go "
            f"{g['grpc_go']}) with {CONNECTIONS} concurrent callers on {CONNECTIONS} HTTP/2 connections; "
            f"errors are non-OK status codes and empty responses.",
            "",
        ]
    if results.get("subset"):
        lines += [
            f"Subset run: servers {', '.join(results['subset']['servers'])}; workloads "
            f"{', '.join(results['subset']['workloads'])}.",
            "",
        ]
    lines += [
        "CPU columns: the server's CPU per request, and the cores used by the server, by the load generator "
        "(wrk; grpcload for grpc) and by anything else (other jobs; the Cassandra JVMs for ours-cassandra) during "
        "the measured run.",
        "",
        "| server | workload | req/s | images/s | p50 ms | p90 ms | p99 ms | errors | server µs CPU/req "
        "| cores server / load gen / other |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in results["servers"].items():
        if s.get("unavailable"):
            lines.append(f"| {name} | all | unavailable: {s['unavailable'].splitlines()[0][:150]} |||||||||")
            continue
        for workload, r in s["runs"].items():
            if "not_applicable" in r:
                lines.append(f"| {name} | {workload} | N/A ({r['not_applicable']}) |||||||||")
            elif "invalid" in r:
                lines.append(f"| {name} | {workload} | invalid: {r['invalid'][:150]} |||||||||")
            else:
                lines.append(
                    f"| {name} | {workload} | {r['requests_per_s']:,.0f} | {r['images_per_s']:,.0f} | "
                    f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors_total']} | "
                    f"{r['server_cpu_us_per_request']:,} | {r['server_cpu_cores']:.2f} / {r['wrk_cpu_share']:.2f} / "
                    f"{r['other_cpu_cores']:.2f} |"
                )
    lines += [
        "",
        "| server | start → ready s | peak RSS per worker MB | all processes MB | processes (peak RSS MB) | setup |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, s in results["servers"].items():
        procs = ", ".join(f"{p['role']} {p['peak_rss_mb']:.0f}" for p in s.get("processes", []))
        versions = ", ".join(f"{k} {v}" for k, v in s.get("versions", {}).items() if v)
        lines.append(
            f"| {name} | {_fmt(s.get('ready_s'), '.2f')} | {_fmt(s.get('peak_rss_per_worker_mb'), '.0f')} "
            f"| {_fmt(s.get('peak_rss_total_mb'), '.0f')} | {procs or '—'} | {s['description']}"
            f"{'; ' + versions if versions else ''} |"
        )
    lines += ["", "Ratios ours / other (requests/s, same workload, same run):", "", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:,.2f}× |" for k, v in results["ratios"].items()]
    lines += [
        "",
        "Targets (ours-cassandra: the full stack, sharing the cores with the cluster; ours-alone: log off "
        "and no cluster, the peers' conditions):",
        "",
        "| target | value | result |",
        "|---|---:|---|",
    ]
    for t in results["targets"]:
        lines.append(
            f"| {t['target']} | {_fmt(t['value'], ',.3g')} | {t['result']}"
            f"{' (' + t['note'][:200] + ')' if t.get('note') else ''} |"
        )
    log = results.get("logging", {})
    if log:
        lines += [
            "",
            f"Prediction log: ratio on/off {_fmt(log.get('ratio'), '.3f')} (png upload req/s); rows stored "
            f"{log.get('rows_stored')} for {log.get('images_answered')} images in the requests wrk counted (it "
            f"counts only the answers it read before it stopped, and the answer checks add 514: rows ≥ "
            f"images is expected); cluster start "
            f"{_fmt(log.get('cluster_start_s'), '.0f')} s. Dedicated benchmark: bench/predlog_overhead.py.",
        ]
    train = results.get("training")
    if train:
        lines += [
            "",
            f"Training ({train['file']}, {train['date']}):",
            "",
            "| arch | test accuracy | fit s | wall s | pass |",
            "|---|---:|---:|---:|---|",
        ]
        lines += [
            f"| {r['architecture']} | {r['test_accuracy']:.4f} | {r['fit_seconds']:.0f} | "
            f"{r['wall_seconds']:.0f} | {r['pass']} |"
            for r in train["runs"]
        ]
    if results["notes"]:
        lines += ["", "Notes:", "", *(f"- {n}" for n in results["notes"])]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or 'empty list'} (known: {', '.join(allowed)})"
            )
        return names

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmarks against peers (see the module docstring).")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s warm-up, 3 s per run, results in var/bench/")
    p.add_argument("--duration", type=float, help="measured seconds per workload (default 10, quick 3)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per workload (default 3, quick 1)")
    p.add_argument("--jvm-warmup", type=float, help="logged load before measuring ours-cassandra (default 90, quick 5)")
    p.add_argument(
        "--only",
        "--servers",
        dest="only",
        action="extend",
        type=_names(SERVERS),
        metavar="SERVERS",
        help="run only these servers, comma-separated or repeated (e.g. ours-alone,kserve)",
    )
    p.add_argument(
        "--workloads",
        action="extend",
        type=_names(WORKLOADS),
        metavar="WORKLOADS",
        help=f"run only these workloads, comma-separated or repeated ({','.join(WORKLOADS)})",
    )
    p.add_argument("--tag", help="result files peers-<date>-<tag>.json/.md (default peers-<date>)")
    paths.add_path_args(p)
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup or (1.0 if args.quick else 3.0)
    # 90 s: on 2 shared cores a fresh cluster was still compiling its write path after 20 s
    # (see bench/predlog_overhead.py).
    args.jvm_warmup = args.jvm_warmup or (5.0 if args.quick else 90.0)
    paths.resolve_paths(args, paths.SCRATCH if args.quick else paths.RESULTS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = [s for s in SERVERS if s in (args.only or SERVERS)]  # the full run's order
    workloads = tuple(w for w in WORKLOADS if w in (args.workloads or WORKLOADS))
    now = datetime.now(UTC)
    results: dict = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["bench/peers.py", *(argv if argv is not None else sys.argv[1:])]),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "jvm_warmup_s": args.jvm_warmup,
        "workers": WORKERS,
        "connections": CONNECTIONS,
        "model": str(args.model_dir),
        "machine": machine.describe(ROOT),
        "servers": {},
        "notes": [],
    }
    if args.only or args.workloads:
        results["subset"] = {"servers": wanted, "workloads": list(workloads)}
    if results["machine"]["loadavg_at_start"][0] > 0.5:
        results["notes"].append(
            f"load average {results['machine']['loadavg_at_start'][0]:.2f} at start: "
            "the machine may not have been quiet"
        )
    _, labels = load_test_split(args.data_dir)
    args.expected_class = int(labels[IMAGE_INDEX])
    started_cluster = False
    try:
        if "grpc" in workloads:
            # Built (when its sources changed) before any server starts: never during a measurement.
            exe, build_s = grpcrun.binary()
            results["grpcload"] = {
                "binary": str(exe.relative_to(ROOT)),
                "built_now_s": build_s,
                "go": grpcrun.go_version(),
                "grpc_go": grpcrun.grpc_go_version(),
            }
            print(
                f"grpcload: {exe.relative_to(ROOT)} "
                f"({'up to date' if build_s is None else f'built in {build_s:.1f} s'})",
                flush=True,
            )
        with tempfile.TemporaryDirectory(prefix="fc-peers-") as tmp:
            work = Path(tmp)
            all_loads, bodies = prepare_inputs(work, args.data_dir)
            loads = {w: all_loads[w] for w in workloads}
            if "grpcload" in results:
                results["grpcload"]["request_bytes"] = len(bodies["grpc"])
            if "ours-cassandra" in wanted:
                cluster_start = cassandra_cluster.ensure_up()
                started_cluster = cluster_start is not None
                cassandra_cluster.migrate(KEYSPACE)
                admin = cassandra_cluster.Admin()
                admin.truncate(KEYSPACE)
                results["logging"] = {"cluster_start_s": cluster_start, "keyspace": KEYSPACE}
                # A fresh cluster runs its write path interpreted until the JIT compiles it: load
                # it once, unmeasured, so that the logging ratio measures logging, not warm-up.
                print(f"Cassandra JVM warm-up: {args.jvm_warmup:.0f} s of logged load", flush=True)
                warm = ours("cassandra", args.model_dir, work / "jvm-warmup")
                warm.workloads = ("png",)
                warm_entry = bench_server(
                    warm,
                    all_loads,
                    bodies,
                    work,
                    argparse.Namespace(**{**vars(args), "duration": args.jvm_warmup, "warmup": 1.0}),
                )
                if warm_entry.get("unavailable"):
                    raise ServerError(warm_entry["unavailable"])
                admin.truncate(KEYSPACE)
            for name in wanted:
                print(f"{name}:", flush=True)
                workdir = work / name
                if name in OURS:
                    predlog = "cassandra" if name == "ours-cassandra" else "off"
                    server = ours(predlog, args.model_dir, workdir, name)
                elif name == "baseline":
                    server = baseline(args.model_dir)
                elif name.startswith("mlserver"):
                    server = mlserver(args.model_dir, workdir.parent, WORKERS if name == "mlserver" else 0)
                else:
                    server = kserve(args.model_dir)
                if name not in WITH_CLUSTER and started_cluster:
                    # The logged runs are done: the rest get a machine without the two JVMs.
                    cassandra_cluster.script("stop")
                    started_cluster = False
                    results["notes"].append(
                        "the Cassandra cluster ran during ours-cassandra and ours-off only "
                        "(stopped before ours-alone, the baseline and the peers)"
                    )
                entry = bench_server(server, loads, bodies, workdir, args)
                results["servers"][name] = entry
                if name in OURS and entry.get("unavailable"):
                    raise ServerError(f"{name}: {entry['unavailable']}")
                if name == "ours-cassandra":
                    answered = sum(
                        r.get("requests_incl_warmup", 0)
                        for r in entry["runs"].values()
                        if r.get("requests_incl_warmup")
                    )
                    # Every answered request logged one row per image: count the rows once the
                    # server stopped (its workers flush their queues on the way out).
                    images = sum(
                        r.get("requests_incl_warmup", 0) * loads[w].images_per_request
                        for w, r in entry["runs"].items()
                        if r.get("requests_incl_warmup")
                    )
                    day = datetime.now(UTC).date()
                    time.sleep(2)
                    results["logging"].update(
                        requests_answered=answered, images_answered=images, rows_stored=admin.count_day(KEYSPACE, day)
                    )
                    admin.close()  # before the cluster stops: no reconnection noise from the driver
    except (ServerError, wrkrun.WrkError, grpcrun.GrpcLoadError, cassandra_cluster.ClusterError) as exc:
        print(f"peers.py: {exc}", file=sys.stderr)
        return 1
    finally:
        if started_cluster:
            cassandra_cluster.script("stop")
    servers = results["servers"]
    results["ratios"] = ratios(servers)
    results["targets"] = targets(servers, workloads)
    if "logging" in results:
        on, off = _rps(servers, "ours-cassandra", "png"), _rps(servers, "ours-off", "png")
        results["logging"]["ratio"] = round(on / off, 3) if on and off else None
    results["training"] = training_results()
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    text = markdown(results)
    print(text)
    print("ours / peer ratios:")
    for key, value in results["ratios"].items():
        print(f"  {key}: {value:,.2f}×")
    paths.write_results(args.out, f"peers-{now:%Y-%m-%d}" + (f"-{args.tag}" if args.tag else ""), results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
