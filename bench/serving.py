"""Serving benchmark for issue 3 ("Speed"): our server against the seed's Flask + model.predict.

Run it on a quiet machine (nothing else using the two cores), from the repository root::

    flock /tmp/fc-heavy.lock .venv/bin/python bench/serving.py           # full run, about 4 minutes
    flock /tmp/fc-heavy.lock .venv/bin/python bench/serving.py --quick   # smoke run, about 1 minute

One server at a time listens on 127.0.0.1 with 2 sync gunicorn workers, and wrk (Debian
package ``wrk``, Lua scripts in ``bench/wrk/``) drives it from the same machine, after a
warm-up, for a fixed duration:

* ``ours-predlog-off`` and ``ours-predlog-sqlite``: ``fashion-classifier serve`` with the
  prediction log off and on (SQLite in a temporary directory);
* ``baseline-keras-predict``: ``bench/baseline_app.py``, Flask calling Keras ``model.predict``
  per request, under the same gunicorn settings;
* ``reference-flask-litert``: ``bench/reference_app.py``, the minimal Flask + LiteRT app the
  issue's absolute targets were set from (shared/notes, 2026-11-24). Its throughput today against
  that day's gives the machine's speed factor: the host changes between sessions, and the report
  shows each absolute target both as set and scaled by that factor.

Workloads (multipart uploads to ``POST /api/v1/predict``, field ``file``): one 28×28 PNG of a
Fashion-MNIST test image at 16 connections (``png-c16``) and at 1 connection (``png-c1``), a
600×800 JPEG photo of it (``jpeg-c16``), and 256 images in one request (``batch256-c16``, 256
PNG files; for our server also a KServe V2 ``UINT8 [256,28,28]`` tensor to
``/v2/models/fashion/infer``, in JSON, ``batch256-v2json-c16``, and with the binary tensor
extension, ``batch256-v2binary-c16``; the images/s target takes the best batch run). Uploads
rotate through 1,024 multipart boundaries, as real clients send a new one each time;
``png-c16-fixed`` repeats one boundary, as the notes' measurement did (the reference is
calibrated on that run). For
each server it also records per-worker RSS/PSS (``/proc``), the time from process start to
ready, and the time a fresh worker takes from respawn to ready (a 1-worker server whose worker is
killed three times).

Results: printed, and written to ``bench/results/serving-<date>.json`` and ``.md`` (``--quick``
writes to ``var/bench/`` instead, so smoke runs never overwrite real results), with the machine
description, ours/baseline ratios and the issue's targets marked PASS/FAIL. The exit code is 0
even when a target fails (the report says so); it is 1 when a server or wrk fails.

Options: ``--quick``, ``--duration S``, ``--warmup S``, ``--only NAME`` (repeatable),
``--model-dir DIR`` (default FC_MODEL_DIR or ./model), ``--data-dir DIR`` (Fashion-MNIST files;
default FC_DATA_DIR or ../shared/data/fashion-mnist), ``--out DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the process harness is shared with the tests

import machine  # noqa: E402
import paths  # noqa: E402
import serving_report  # noqa: E402
import serving_targets  # noqa: E402
import wrkrun  # noqa: E402
from harness.images import encode, load_test_split, photo_like  # noqa: E402
from harness.ports import free_port  # noqa: E402
from harness.server import (  # noqa: E402
    ServerError,
    ServerProcess,
    http_status,
    pss_bytes,
    rss_bytes,
    serve_command,
    serve_env,
)  # noqa: E402

WORKERS = 2
BATCH = 256
IMAGE_INDEX = 0  # first test image (an ankle boot)


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: Callable[[int], list[str]]  # workers -> argv
    env: Callable[[Path, int, int], dict[str, str]]  # workdir, port, workers -> environment
    workloads: str = "uploads"  # "uploads", "all" (ours: also V2 tensors) or "calibration"


def ours(predlog: str, model_dir: Path) -> ServerSpec:
    return ServerSpec(
        name=f"ours-predlog-{predlog}",
        command=lambda workers: serve_command(),
        env=lambda workdir, port, workers: serve_env(workdir, model_dir, port=port, workers=workers, predlog=predlog),
        workloads="all",
    )


def baseline(model_dir: Path) -> ServerSpec:
    return bench_app("baseline-keras-predict", "baseline_app", model_dir)


def reference(model_dir: Path) -> ServerSpec:
    return bench_app("reference-flask-litert", "reference_app", model_dir, workloads="calibration")


def bench_app(name: str, module: str, model_dir: Path, workloads: str = "uploads") -> ServerSpec:
    """A Flask app from bench/ under gunicorn with our server's settings: sync workers, no access
    log, the heartbeat file in /dev/shm (on this disk-backed /tmp the default costs a third of an
    empty Flask route's throughput)."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    tmp_dir = ["--worker-tmp-dir", "/dev/shm"] if os.access("/dev/shm", os.W_OK) else []

    def command(workers: int) -> list[str]:
        return [
            gunicorn,
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--timeout",
            "120",
            "--chdir",
            str(ROOT / "bench"),
            "--log-level",
            "warning",
            *tmp_dir,
            f"{module}:create_app()",
        ]

    def env(workdir: Path, port: int, workers: int) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("FC_")}
        environ.update(
            FC_MODEL_DIR=str(model_dir),
            GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}",
            TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONUNBUFFERED="1",
        )
        return environ

    return ServerSpec(name, command, env, workloads)


def prepare_inputs(workdir: Path, data_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The upload files and request bodies, and the binary V2 body's header length."""
    images, _ = load_test_split(data_dir)
    pixels = images[IMAGE_INDEX]
    batch = np.asarray(images[:BATCH], dtype=np.uint8)
    names = ("fashion-28x28.png", "fashion-600x800.jpg", "v2.json", "v2.bin")
    files = {name: workdir / name for name in names}
    files["fashion-28x28.png"].write_bytes(encode(pixels, "PNG"))
    files["fashion-600x800.jpg"].write_bytes(photo_like(pixels, (600, 800)))
    tensor = {"name": "pixels", "shape": list(batch.shape), "datatype": "UINT8"}
    files["v2.json"].write_text(json.dumps({"inputs": [{**tensor, "data": batch.ravel().tolist()}]}))
    # KServe V2 / Triton binary tensor extension: JSON header, then the raw tensor bytes.
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": batch.nbytes}}],
            "outputs": [{"name": "class", "parameters": {"binary_data": True}}],
        }
    ).encode()
    files["v2.bin"].write_bytes(header + batch.tobytes())
    return files, {"WRK_HEADER_NAME": "Inference-Header-Content-Length", "WRK_HEADER_VALUE": str(len(header))}


def loads(files: dict[str, Path], v2_binary: dict[str, str], spec: ServerSpec) -> list[tuple[str, wrkrun.Load, int]]:
    png = {"WRK_FILE": str(files["fashion-28x28.png"])}
    jpeg = {"WRK_FILE": str(files["fashion-600x800.jpg"])}
    batch = {**png, "WRK_COUNT": str(BATCH)}
    predict = "/api/v1/predict"
    out = [("png-c16", wrkrun.Load("png", predict, "multipart.lua", png), 16)]
    if spec.workloads != "uploads":
        fixed = {**png, "WRK_BOUNDARIES": "1"}
        out.append(("png-c16-fixed", wrkrun.Load("png", predict, "multipart.lua", fixed), 16))
    out += [
        ("png-c1", wrkrun.Load("png", predict, "multipart.lua", png), 1),
        ("jpeg-c16", wrkrun.Load("jpeg", predict, "multipart.lua", jpeg), 16),
    ]
    if spec.workloads == "calibration":
        return out
    out.append(("batch256-c16", wrkrun.Load("batch", predict, "multipart.lua", batch, BATCH), 16))
    if spec.workloads == "all":
        infer = "/v2/models/fashion/infer"
        json_body = {"WRK_BODY": str(files["v2.json"])}
        binary_body = {"WRK_BODY": str(files["v2.bin"]), "WRK_CONTENT_TYPE": "application/octet-stream", **v2_binary}
        out += [
            ("batch256-v2json-c16", wrkrun.Load("v2json", infer, "body.lua", json_body, BATCH), 16),
            ("batch256-v2binary-c16", wrkrun.Load("v2binary", infer, "body.lua", binary_body, BATCH), 16),
        ]
    return out


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def start(spec: ServerSpec, workdir: Path, workers: int) -> ServerProcess:
    port = free_port()
    server = ServerProcess(spec.command(workers), spec.env(workdir, port, workers), port, workdir / "server.log")
    return server.start(timeout=120, workers=workers)


def bench_server(
    spec: ServerSpec,
    files: dict[str, Path],
    v2_binary: dict[str, str],
    workdir: Path,
    args: argparse.Namespace,
) -> dict:
    result: dict = {"runs": {}}
    server = start(spec, workdir / "w2", WORKERS)
    try:
        result["ready_s"] = server.ready_seconds
        for name, load, conns in loads(files, v2_binary, spec):
            print(f"  {spec.name} {name}: warm-up {args.warmup} s, run {args.duration} s", flush=True)
            warm = wrkrun.run(server.base_url, load, conns, args.warmup)
            if warm["errors_total"]:
                result["runs"][name] = {"invalid": f"{warm['errors']} during warm-up"}
                print(f"    invalid: {warm['errors']}", flush=True)
                continue
            pids = [server.proc.pid, *server.worker_pids()]
            cpu_before = cpu_seconds(pids)
            run = wrkrun.run(server.base_url, load, conns, args.duration)
            run["server_cpu_us_per_request"] = (cpu_seconds(pids) - cpu_before) / max(run["requests"], 1) * 1e6
            if run["errors_total"]:
                run["invalid"] = f"errors {run['errors']}"
            result["runs"][name] = run
            print(
                f"    {run['requests_per_s']:,.0f} req/s  {run['images_per_s']:,.0f} img/s  "
                f"p50 {run['p50_ms']:.2f} p99 {run['p99_ms']:.2f} ms  errors {run['errors_total']}",
                flush=True,
            )
        result["workers"] = [
            {"pid": pid, "rss_mb": rss_bytes(pid) / 2**20, "pss_mb": pss_bytes(pid) / 2**20}
            for pid in server.worker_pids()
        ]
    finally:
        server.stop()
    return result


def worker_start(spec: ServerSpec, workdir: Path, respawns: int = 3) -> dict:
    """Cold start of a 1-worker server, then the worker killed and respawned ``respawns`` times."""
    server = start(spec, workdir / "w1", 1)
    try:
        times = []
        for _ in range(respawns):
            (pid,) = server.worker_pids()
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            url = server.base_url + server.ready_path
            while time.monotonic() - killed < 60:
                pids = server.worker_pids()
                if pids and pids != [pid] and http_status(url, timeout=1) == 200:
                    times.append(time.monotonic() - killed)
                    break
                time.sleep(0.005)
            else:
                raise ServerError(f"{spec.name}: no worker back within 60 s:\n{server.log_tail()}")
        return {
            "cold_ready_s_1_worker": server.ready_seconds,
            "respawn_ready_s": times,
            "respawn_ready_s_median": statistics.median(times),
        }
    finally:
        server.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Serving benchmark (see the module docstring).")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s warm-up, 2 s per run, results in var/bench/")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 10, quick 2)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (default 3, quick 1)")
    p.add_argument("--only", action="append", help="run only these servers (repeatable)")
    paths.add_path_args(p)
    args = p.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.warmup = args.warmup or (1.0 if args.quick else 3.0)
    paths.resolve_paths(args, paths.SCRATCH if args.quick else paths.RESULTS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    specs = [
        ours("off", args.model_dir),
        ours("sqlite", args.model_dir),
        baseline(args.model_dir),
        reference(args.model_dir),
    ]
    unknown = set(args.only or []) - {s.name for s in specs}
    if unknown:
        print(
            f"serving.py: unknown server(s) {sorted(unknown)}; choose from {[s.name for s in specs]}",
            file=sys.stderr,
        )
        return 2
    specs = [s for s in specs if not args.only or s.name in args.only]
    now = datetime.now(UTC)
    results: dict = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["bench/serving.py", *(argv if argv is not None else sys.argv[1:])]),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "workers": WORKERS,
        "machine": machine.describe(ROOT),
        "servers": {},
        "notes": [],
    }
    if max(results["machine"]["loadavg_at_start"][:1]) > 0.5:
        results["notes"].append("load average above 0.5 at start: the machine may not have been quiet")
    try:
        with tempfile.TemporaryDirectory(prefix="fc-bench-") as tmp:
            files, v2_binary = prepare_inputs(Path(tmp), args.data_dir)
            for spec in specs:
                print(f"{spec.name}:", flush=True)
                workdir = Path(tmp) / spec.name
                entry = bench_server(spec, files, v2_binary, workdir, args)
                entry["worker_start"] = worker_start(spec, workdir)
                results["servers"][spec.name] = entry
    except (ServerError, wrkrun.WrkError) as exc:
        print(f"serving.py: {exc}", file=sys.stderr)
        return 1
    results["ratios"] = serving_targets.ratios(results["servers"])
    results["calibration"] = serving_targets.calibration(results["servers"])
    results["targets"] = serving_targets.check(results["servers"], results["calibration"].get("factor"))
    text = serving_report.markdown(results)
    print(text)
    paths.write_results(args.out, f"serving-{now:%Y-%m-%d}", results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
