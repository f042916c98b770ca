"""How long installing the dev lock takes with pip and with uv, side by side in one run.

    flock /tmp/fc-heavy.lock .venv/bin/python bench/lock_installs.py [--rounds 2] [--python python3.12]

Each round installs ``requirements/dev.txt`` (hashes checked, wheels only) into a new venv twice,
once with pip and once with uv, each with an empty cache of its own, as on a fresh CI machine
(downloads included), both compiling the bytecode. scripts/setup chose uv on these numbers. Writes
bench/results/lock-installs-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import paths  # noqa: E402
from machine import describe  # noqa: E402

LOCK = ROOT / "requirements" / "dev.txt"
LOCKED = ["--require-hashes", "--only-binary", ":all:", "-r", str(LOCK)]
UV = ROOT / ".venv" / "bin" / "uv"


def install_seconds(tool: str, python: str) -> float:
    """Wall seconds for one install of the dev lock into a new venv, with an empty cache."""
    with tempfile.TemporaryDirectory() as tmp:
        venv, cache = Path(tmp) / "venv", Path(tmp) / "cache"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        if tool == "pip":
            command = [str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir", *LOCKED]
        else:
            command = [
                str(UV),
                "pip",
                "install",
                "-q",
                "--compile-bytecode",  # as pip does by default
                "--cache-dir",
                str(cache),
                "--python",
                str(venv / "bin" / "python"),
                *LOCKED,
            ]
        start = time.monotonic()
        subprocess.run(command, check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        return time.monotonic() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--python", default="python3.12", help="the venvs' interpreter (default: python3.12)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    rounds = []
    for n in range(1, args.rounds + 1):
        row = {tool: install_seconds(tool, args.python) for tool in ("pip", "uv")}
        print(f"round {n}: pip {row['pip']:.1f} s, uv {row['uv']:.1f} s", flush=True)
        rounds.append(row)
    pip_s = statistics.median(r["pip"] for r in rounds)
    uv_s = statistics.median(r["uv"] for r in rounds)
    now = datetime.now(UTC)
    results = {
        "date": now.isoformat(),
        "machine": describe(ROOT),
        "python": args.python,
        "lock": "requirements/dev.txt",
        "rounds": rounds,
        "median_pip_s": pip_s,
        "median_uv_s": uv_s,
    }
    lines = [
        f"# Installing the dev lock, pip against uv, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Each round: a new `{args.python}` venv per tool, `requirements/dev.txt` with"
        " `--require-hashes --only-binary :all:`, an empty cache (pip `--no-cache-dir`, uv a new"
        " `--cache-dir`), bytecode compiled (pip's default, uv's `--compile-bytecode`)."
        " Command: `bench/lock_installs.py`.",
        "",
        "| round | pip s | uv s |",
        "|---:|---:|---:|",
        *(f"| {n} | {r['pip']:.1f} | {r['uv']:.1f} |" for n, r in enumerate(rounds, 1)),
        f"| median | {pip_s:.1f} | {uv_s:.1f} |",
        "",
        f"uv / pip wall time: {uv_s / pip_s:.3f}.",
        "",
    ]
    paths.write_results(args.out, f"lock-installs-{now:%Y-%m-%d}", results, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
