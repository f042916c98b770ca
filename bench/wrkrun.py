"""Run wrk with one of the Lua scripts in bench/wrk/ and return its numbers as a dict."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"


class WrkError(RuntimeError):
    pass


@dataclass(frozen=True)
class Load:
    """One workload: a URL path, a wrk script and its environment."""

    name: str
    path: str
    script: str  # file name in bench/wrk/
    env: dict[str, str] = field(default_factory=dict)
    images_per_request: int = 1


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk not found on PATH (Debian package 'wrk', see scripts/apt-packages.txt)")
    return path


def run(base_url: str, load: Load, connections: int, seconds: float, timeout_s: int = 10) -> dict:
    """Drive ``base_url + load.path`` for ``seconds``; raises if wrk fails or prints no report."""
    command = [
        wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"--timeout={timeout_s}s",
        "-s",
        str(WRK_DIR / load.script),
        base_url + load.path,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        command,
        env={**os.environ, **load.env},
        capture_output=True,
        text=True,
        timeout=seconds + timeout_s + 30,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise WrkError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    result = json.loads(line.removeprefix("WRK_JSON "))
    duration = result["duration_us"] / 1e6
    result["connections"] = connections
    result["requests_per_s"] = result["requests"] / duration
    result["images_per_s"] = result["requests_per_s"] * load.images_per_request
    result["errors_total"] = sum(result["errors"].values())
    for pct in ("p50", "p90", "p99", "p999"):
        result[f"{pct}_ms"] = result["latency_us"][pct] / 1000
    # wrk shares the two cores with the server: report how much of them it took.
    result["wrk_cpu_share"] = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / duration
    return result
