"""Build and run bench/grpcload (a Go gRPC load generator) and return its numbers as a dict.

The binary is built into ``var/bench/bin/grpcload`` with the local Go toolchain
(``GOTOOLCHAIN=local``; modules from the Go module proxy, pinned by bench/grpcload/go.sum) and
rebuilt only when a source file of bench/grpcload changes (a sha256 of them is kept beside it).
``python bench/grpcrun.py`` builds it (if stale) and prints its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "bench" / "grpcload"
BINARY = ROOT / "var" / "bench" / "bin" / "grpcload"
STAMP = BINARY.with_name("grpcload.sha256")
METHOD_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


class GrpcLoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Load:
    """One gRPC workload: a full method name and the file holding the serialized request."""

    name: str
    method: str
    request_file: Path
    images_per_request: int = 1


def _go() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None)
    if found is None:
        raise GrpcLoadError("go not found (PATH or /usr/local/go/bin): needed to build bench/grpcload")
    return found


def go_version() -> str | None:
    try:
        out = subprocess.run(
            [_go(), "env", "GOVERSION"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "GOTOOLCHAIN": "local"},
        )
    except (GrpcLoadError, OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def grpc_go_version() -> str | None:
    """The grpc-go version go.mod requires."""
    for line in (SOURCE / "go.mod").read_text().splitlines():
        parts = line.split()
        if "google.golang.org/grpc" in parts:
            return parts[parts.index("google.golang.org/grpc") + 1]
    return None


def sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in SOURCE.rglob("*") if p.is_file() and p.suffix in (".go", ".mod", ".sum")):
        digest.update(str(path.relative_to(SOURCE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def binary() -> tuple[Path, float | None]:
    """The built generator, and the seconds the build took (None: the cached binary was current)."""
    digest = sources_digest()
    if BINARY.is_file() and STAMP.is_file() and STAMP.read_text().strip() == digest:
        return BINARY, None
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    started = time.monotonic()
    proc = subprocess.run(
        [_go(), "build", "-trimpath", "-o", str(BINARY), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise GrpcLoadError(f"building bench/grpcload failed: {proc.stderr.strip()[-3000:]}")
    STAMP.write_text(digest + "\n")
    return BINARY, time.monotonic() - started


def run(
    address: str,
    load: Load,
    concurrency: int,
    seconds: float,
    *,
    connections: int = 0,
    warmup: float = 0.0,
    expect: bytes = b"",
    timeout_s: float = 10.0,
) -> dict:
    """Load ``address`` (host:port) with ``load``; the dict has wrkrun.run's keys (req/s, p50_ms, ...,
    errors_total, and ``wrk_cpu_share``: the generator's cores) plus grpcload's own JSON."""
    exe, _ = binary()
    command = [
        str(exe),
        "-addr",
        address,
        "-method",
        load.method,
        "-data",
        str(load.request_file),
        "-c",
        str(concurrency),
        "-connections",
        str(connections),
        "-warmup",
        str(warmup),
        "-duration",
        str(seconds),
        "-timeout",
        str(timeout_s),
    ]
    if expect:
        command += ["-expect-hex", expect.hex()]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=warmup + seconds + timeout_s + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        raise GrpcLoadError(f"grpcload failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    result = json.loads(line)
    result["images_per_s"] = result["requests_per_s"] * load.images_per_request
    for pct in ("p50", "p90", "p99", "p99.9"):
        value = result["latency_ms"].get(pct)
        result[f"{pct.replace('.', '')}_ms"] = value
    result["errors"] = {k: v for k, v in result["codes"].items() if k != "OK"}
    # The generator shares the two cores with the server: report how much of them it took (the
    # warm-up included, as wrk's share is over its own whole run).
    result["wrk_cpu_share"] = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / (
        warmup + seconds
    )
    result["load_generator"] = "bench/grpcload"
    return result


if __name__ == "__main__":
    path, took = binary()
    print(f"{path} ({'up to date' if took is None else f'built in {took:.1f} s'})")
    sys.exit(0)
