"""Cost of the Cassandra prediction log on the single-image predict endpoint (issue 4, "Speed").

Run it on a quiet machine, from the repository root::

    flock /tmp/fc-heavy.lock .venv/bin/python bench/predlog_overhead.py           # ~4 minutes
    flock /tmp/fc-heavy.lock .venv/bin/python bench/predlog_overhead.py --quick   # smoke run

The local 2-node cluster (scripts/cassandra-local) runs during the whole benchmark, so both
sides share the cores with the same idle JVMs and only the logging differs. The same
``fashion-classifier serve`` (2 workers) is measured with ``FC_PREDLOG=off`` and with
``FC_PREDLOG=cassandra``, alternating, ``--rounds`` times each; wrk (bench/wrk/multipart.lua,
one 28×28 PNG, 16 connections) drives ``POST /api/v1/predict``. The ratio of the median
throughputs must be >= 0.9. After the Cassandra runs, the rows in the cluster are counted: a
run that lost rows is reported as such.

Before the rounds, the cluster takes ``--jvm-warmup`` seconds (default 90) of logged load that
is not measured: the question is what logging costs a long-running cluster, not a JVM that is
still compiling its write path. On 2 shared cores 20 s was not enough: on 2026-12-04 the
Cassandra rounds went 964 -> 1,054 -> 1,332 req/s while the JVMs' CPU per request kept falling
(ratio 0.789); after 90 s the same machine gave 0.969.

Results: printed and written to ``bench/results/predlog-overhead-<date>.json`` (``--quick``:
``var/bench/``). Exit code 0 when it ran (the JSON says PASS/FAIL), 1 when a server, wrk or the
cluster failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the process harness is shared with the tests

import machine  # noqa: E402
import paths  # noqa: E402
import wrkrun  # noqa: E402
from harness.images import encode, load_test_split  # noqa: E402
from harness.server import ServerError, start_serve  # noqa: E402

SCRIPT = ROOT / "scripts" / "cassandra-local"
HOSTS = "127.0.0.1,127.0.0.2"
KEYSPACE = "bench_predlog"
TARGET = 0.9


class BenchError(RuntimeError):
    pass


def cluster_up() -> bool:
    return subprocess.run([str(SCRIPT), "status"], capture_output=True, check=False).returncode == 0


def run_script(*args: str) -> None:
    proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"cassandra-local {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def cassandra_env() -> dict[str, str]:
    return {"FC_CASSANDRA_HOSTS": HOSTS, "FC_CASSANDRA_KEYSPACE": KEYSPACE, "FC_LOG_LEVEL": "warning"}


def migrate() -> None:
    env = {**os.environ, **cassandra_env(), "FC_PREDLOG": "cassandra"}
    proc = subprocess.run(
        [sys.executable, "-m", "fashion_classifier.cli", "migrate"], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BenchError(f"migrate failed: {proc.stderr.strip()}")


def count_rows() -> int:
    from cassandra.cluster import Cluster
    from cassandra.query import SimpleStatement

    cluster = Cluster(HOSTS.split(","), protocol_version=5)
    try:
        session = cluster.connect()
        day = datetime.now(UTC).date()
        scan = SimpleStatement(f"SELECT day FROM {KEYSPACE}.predictions_by_bucket", fetch_size=5000)
        return sum(row.day.date() == day for row in session.execute(scan, timeout=60))
    finally:
        cluster.shutdown()


def truncate() -> None:
    from cassandra.cluster import Cluster

    cluster = Cluster(HOSTS.split(","), protocol_version=5)
    try:
        session = cluster.connect()
        for table in ("predictions_by_bucket", "buckets_by_day"):
            session.execute(f"TRUNCATE {KEYSPACE}.{table}", timeout=60)
    finally:
        cluster.shutdown()


def node_cpu_seconds() -> float:
    """CPU time used so far by the local Cassandra JVMs (they share the two cores)."""
    total = 0.0
    for pid_file in Path(os.environ.get("FC_CASSANDRA_WORK", Path.home() / ".cache/fashion-classifier/cassandra")).glob(
        "data/node*/pid"
    ):
        try:
            fields = Path(f"/proc/{pid_file.read_text().strip()}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ValueError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(predlog: str, workdir: Path, png: Path, args: argparse.Namespace, duration: float | None = None) -> dict:
    duration = duration or args.duration
    extra = cassandra_env() if predlog == "cassandra" else {"FC_LOG_LEVEL": "warning"}
    server = start_serve(workdir, args.model_dir, workers=2, predlog=predlog, extra_env=extra, timeout=120)
    load = wrkrun.Load("png", "/api/v1/predict", "multipart.lua", {"WRK_FILE": str(png)})
    try:
        warm = wrkrun.run(server.base_url, load, 16, args.warmup)
        cpu_before = node_cpu_seconds()
        run = wrkrun.run(server.base_url, load, 16, duration)
        run["cassandra_cpu_share"] = (node_cpu_seconds() - cpu_before) / duration
    finally:
        server.stop(timeout=30)  # workers flush their queues on the way out
    run["requests_incl_warmup"] = warm["requests"] + run["requests"]
    return run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Prediction-log overhead benchmark (see the module docstring).")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 3 s, results in var/bench/")
    p.add_argument("--rounds", type=int, help="off/cassandra pairs (default 3, quick 1)")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 10, quick 3)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (default 3, quick 1)")
    p.add_argument("--jvm-warmup", type=float, help="logged load before the rounds (default 90, quick 10)")
    paths.add_path_args(p)
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup or (1.0 if args.quick else 3.0)
    args.jvm_warmup = args.jvm_warmup or (10.0 if args.quick else 90.0)
    paths.resolve_paths(args, paths.SCRATCH if args.quick else paths.RESULTS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now = datetime.now(UTC)
    started_cluster = False
    results: dict = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "machine": machine.describe(ROOT),
        "jvm_warmup_s": args.jvm_warmup,
        "runs": {"off": [], "cassandra": []},
    }
    try:
        if not cluster_up():
            t0 = time.monotonic()
            run_script("start")
            started_cluster = True
            results["cluster_start_s"] = round(time.monotonic() - t0, 1)
        migrate()
        truncate()
        with tempfile.TemporaryDirectory(prefix="fc-predlog-bench-") as tmp:
            images, _ = load_test_split(args.data_dir)
            png = Path(tmp) / "fashion-28x28.png"
            png.write_bytes(encode(images[0], "PNG"))
            # A freshly started cluster runs interpreted code until the JIT has compiled the write
            # path: warm it up once with logged load, not measured (its rows are counted).
            warm = measure("cassandra", Path(tmp) / "jvm-warmup", png, args, duration=args.jvm_warmup)
            logged = warm["requests_incl_warmup"]
            print(
                f"cluster warm-up: {warm['requests_per_s']:,.0f} req/s, Cassandra CPU "
                f"{warm['cassandra_cpu_share']:.0%} of a core",
                flush=True,
            )
            for n in range(args.rounds):
                for predlog in ("off", "cassandra"):
                    run = measure(predlog, Path(tmp) / f"{predlog}-{n}", png, args)
                    results["runs"][predlog].append(run)
                    if predlog == "cassandra":
                        logged += run["requests_incl_warmup"]
                    print(
                        f"round {n + 1} {predlog:>9}: {run['requests_per_s']:,.0f} req/s, "
                        f"p99 {run['p99_ms']:.2f} ms, errors {run['errors_total']}, "
                        f"Cassandra CPU {run['cassandra_cpu_share']:.0%} of a core",
                        flush=True,
                    )
            time.sleep(3)  # the last spool replay, if any
            results["rows_expected"], results["rows_stored"] = logged, count_rows()
    except (BenchError, ServerError, wrkrun.WrkError) as exc:
        print(f"predlog_overhead.py: {exc}", file=sys.stderr)
        return 1
    finally:
        if started_cluster:
            run_script("stop")
    off = statistics.median(r["requests_per_s"] for r in results["runs"]["off"])
    on = statistics.median(r["requests_per_s"] for r in results["runs"]["cassandra"])
    errors = sum(r["errors_total"] for runs in results["runs"].values() for r in runs)
    results["ratio"] = round(on / off, 3)
    results["target"] = TARGET
    ok = results["ratio"] >= TARGET and errors == 0 and results["rows_stored"] >= results["rows_expected"]
    results["verdict"] = "PASS" if ok else "FAIL"
    print(
        f"cassandra/off throughput ratio {results['ratio']:.3f} (target >= {TARGET}); "
        f"errors {errors}; rows {results['rows_stored']}/{results['rows_expected']}: {results['verdict']}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"predlog-overhead-{now:%Y-%m-%d}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
