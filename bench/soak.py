"""Soak test (issue 6): the full stack at 70% of its maximum throughput for 10 minutes, with a model
published and a Cassandra node killed and restarted mid-run.

From the repository root::

    flock /tmp/fc-heavy.lock .venv/bin/python bench/soak.py                  # 10 minutes (on demand)
    flock /tmp/fc-heavy.lock .venv/bin/python bench/soak.py --duration 60 --load 0.5   # CI (scripts/test)

Steps:

1. The local 2-node Cassandra cluster (scripts/cassandra-local) is started when down (and stopped
   at the end when this run started it); the keyspace ``bench_soak`` is dropped and migrated.
2. Unless ``--rate`` is given, our maximum is measured first: ``fashion-classifier serve`` (2
   workers, Cassandra logging on, a scratch keyspace) under wrk, one 28×28 PNG upload per request
   at 16 connections, each on a new connection like the generator's; the soak rate is ``--load``
   (default 0.7) of it. CI's 60-second run uses 0.5: wrk (closed loop, ~0.13 core) measures more
   than the two cores can serve while this open-loop Python generator takes ~0.3 core beside them,
   and the maximum measured on this shared machine varied from 1,061 to 1,599 req/s between runs
   minutes apart, so 70% of a high reading was the whole capacity of the next minute (the server
   then falls behind for good: every late answer is a timed-out request whose work was still done).
3. A fresh server (Cassandra logging on, a private copy of ``model/``) gets that rate from
   bench/loadgen.py, a constant-rate generator that records every prediction id it is answered.
   The first 15% (at most 60 s) is warm-up: each worker's RSS at its end is the reference.
4. At 30% of the run a new model version is published into the store copy with the artifacts
   store API (the current version, copied and checksummed under a new id); hot reload must swap it
   in and the answers must name it. At 45% Cassandra node 2 is killed with SIGKILL; after
   ``max(5 s, 5%)`` it is restarted (``cassandra-local restart 2``, which waits for CQL) at nice 10:
   on this 2-core machine the classifier and the cluster share the CPU, and a JVM starting at equal
   priority took about half of it for 20 s, CPU the server would have with Cassandra on other nodes.
5. After the load: node 2 up again, the server stopped (its workers flush their queues and
   spools), then the stored ids are read at consistency ALL until they match.

Checks (all must hold; the exit code is 1 otherwise): 0 failed requests; the generator held the
rate (it paced >= 97% of it); rows in Cassandra == successful predictions (the same ids,
no duplicates, none extra); RSS growth of every worker < 10% after warm-up, and the same worker
pids throughout (no worker died); the new version answered after the publish.

Results: ``var/bench/soak-<date>-<duration>s.json`` (``--out`` to change; a run of 600 s or more
writes to ``bench/results/`` as well), printed as a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the process harness is shared with the tests

import cassandra_cluster  # noqa: E402
import machine  # noqa: E402
import paths  # noqa: E402
import wrkrun  # noqa: E402
from harness.server import ServerError, rss_bytes, start_serve  # noqa: E402
from inference.store_copies import publish_copy  # noqa: E402

from fashion_classifier.predlog.days import day_of_id  # noqa: E402

KEYSPACE = "bench_soak"
PROBE_KEYSPACE = "bench_soak_probe"
WORKERS = 2
RSS_GROWTH_MAX = 0.10
RATE_HELD_MIN = 0.97
RESTART_NICE = 10  # the restarted node's CPU priority (see Timeline.run)


class SoakError(RuntimeError):
    pass


def server_env(keyspace: str) -> dict[str, str]:
    return {**cassandra_cluster.env(keyspace), "FC_LOG_LEVEL": "warning"}


def measure_max(model_dir: Path, png: Path, workdir: Path, seconds: float) -> dict:
    """Our maximum throughput for single-PNG uploads with Cassandra logging on (wrk, 16 connections).

    Each request on a new connection, as the load generator sends them: over kept-alive
    connections the server answers ~25% more, and 70% of that would overload it here.
    """
    server = start_serve(
        workdir, model_dir, workers=WORKERS, predlog="cassandra", extra_env=server_env(PROBE_KEYSPACE), timeout=120
    )
    load = wrkrun.Load("png", "/api/v1/predict", "multipart.lua", {"WRK_FILE": str(png), "WRK_CLOSE": "1"})
    try:
        # The warm-up also lets a freshly started cluster's JIT compile the write path.
        wrkrun.run(server.base_url, load, 16, max(5.0, seconds / 2))
        run = wrkrun.run(server.base_url, load, 16, seconds)
    finally:
        server.stop(timeout=30)
    if run["errors_total"]:
        raise SoakError(f"errors while measuring the maximum: {run['errors']}")
    return {k: run[k] for k in ("requests_per_s", "p50_ms", "p99_ms", "wrk_cpu_share")}


class Sampler(threading.Thread):
    """Each worker's RSS once a second (and which pids the server's workers are)."""

    def __init__(self, server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.samples: list[tuple[float, dict[int, int]]] = []
        self.stop_event = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop_event.is_set():
            rss = {}
            for pid in self.server.worker_pids():
                try:
                    rss[pid] = rss_bytes(pid)
                except (FileNotFoundError, ProcessLookupError, ServerError):
                    continue
            self.samples.append((time.monotonic() - self.t0, rss))
            self.stop_event.wait(1.0)


def rss_growth(samples: list[tuple[float, dict[int, int]]], warmup_s: float) -> dict:
    """Per worker: RSS at the end of the warm-up, the highest after it, and the growth between."""
    reference = next((rss for t, rss in samples if t >= warmup_s), {})
    out = {}
    for pid, ref in reference.items():
        later = [rss[pid] for t, rss in samples if t >= warmup_s and pid in rss]
        peak = max(later)
        out[str(pid)] = {
            "after_warmup_mb": round(ref / 2**20, 1),
            "peak_mb": round(peak / 2**20, 1),
            "growth": round((peak - ref) / ref, 4),
        }
    return out


class Timeline(threading.Thread):
    """The mid-run events, at fixed fractions of the run, each with its time and outcome."""

    def __init__(self, model_dir: Path, duration: float) -> None:
        super().__init__(daemon=True)
        self.model_dir = model_dir
        self.duration = duration
        self.events: list[dict] = []
        self.error: str | None = None
        self.new_version: str | None = None
        self.t0 = time.monotonic()

    def _at(self, seconds: float) -> None:
        time.sleep(max(0.0, self.t0 + seconds - time.monotonic()))

    def _log(self, what: str, **extra: object) -> None:
        event = {"t_s": round(time.monotonic() - self.t0, 1), "event": what, **extra}
        self.events.append(event)
        print(f"  t={event['t_s']:6.1f} s  {what} {extra or ''}", flush=True)

    def run(self) -> None:
        try:
            self._at(0.30 * self.duration)
            self.new_version = publish_copy(self.model_dir, f"soak{uuid.uuid4().hex[:4]}")
            self._log("published a new model version", version=self.new_version)
            self._at(0.45 * self.duration)
            cassandra_cluster.script("kill", "2")
            self._log("killed Cassandra node 2 (SIGKILL)")
            time.sleep(max(5.0, 0.05 * self.duration))
            started = time.monotonic()
            # Keeps its data, waits for CQL and gossip. A starting JVM takes about a core for 20 s;
            # sharing 2 cores with the classifier at equal priority it took CPU the server has on a
            # real cluster (Cassandra on its own nodes), and the server fell behind the rate.
            cassandra_cluster.script("restart", "2", nice=RESTART_NICE)
            self._log("Cassandra node 2 restarted and serving CQL", restart_s=round(time.monotonic() - started, 1))
        except Exception as exc:  # reported as a failed check, not a crash of the soak
            self.error = f"{type(exc).__name__}: {exc}"
            self._log("timeline failed", error=self.error)


def wait_for_rows(admin: cassandra_cluster.Admin, ids: list[uuid.UUID], timeout: float) -> list[uuid.UUID]:
    days = {day_of_id(i) for i in ids}
    deadline = time.monotonic() + timeout
    want = sorted(ids)
    while True:
        try:
            stored = admin.stored_ids(KEYSPACE, days)
        except Exception as exc:  # a node that came back a moment ago can refuse a read
            print(f"  read failed, retrying: {exc}", flush=True)
            stored = []
        if sorted(stored) == want or time.monotonic() > deadline:
            return stored
        time.sleep(2)


def check(results: dict) -> list[dict]:
    lg, rows = results["loadgen"], results["rows"]
    growth = results["rss"]
    checks = [
        (
            "0 failed requests",
            lg["failed"] == 0 and lg["not_sent"] == 0,
            f"{lg['failed']} failed {lg.get('failure_kinds', {})}, {lg['not_sent']} not sent (too many pending); "
            f"first: {lg['failures'][:3]}",
        ),
        (
            f"generator held the rate (paced >= {RATE_HELD_MIN:.0%} of it)",
            lg["paced_rate"] >= RATE_HELD_MIN * lg["target_rate"],
            f"paced {lg['paced_rate']}/s for {lg['target_rate']}/s, max lag {lg['max_schedule_lag_ms']} ms; "
            f"sent {lg['sent']} of {lg['planned']}",
        ),
        (
            "rows in Cassandra == successful predictions",
            rows["stored"] == lg["ok"] and rows["missing"] == 0 and rows["extra"] == 0 and rows["duplicates"] == 0,
            f"{rows['stored']} rows for {lg['ok']} answers; missing {rows['missing']}, extra {rows['extra']}, "
            f"duplicates {rows['duplicates']}",
        ),
        (
            f"RSS growth per worker < {RSS_GROWTH_MAX:.0%} after warm-up",
            bool(growth) and all(w["growth"] < RSS_GROWTH_MAX for w in growth.values()),
            ", ".join(
                f"{pid}: {w['after_warmup_mb']} -> {w['peak_mb']} MB ({w['growth']:+.1%})" for pid, w in growth.items()
            ),
        ),
        ("same workers throughout (none died)", results["workers_stable"], str(results["worker_pids_seen"])),
        (
            "new model version served after the publish",
            results["new_version"] is not None and results["new_version"] in lg["versions"],
            f"new {results['new_version']}; answers by version: { {v: s['count'] for v, s in lg['versions'].items()} }",
        ),
        (
            "node 2 killed and restarted",
            results["timeline_error"] is None and len(results["events"]) == 3,
            results["timeline_error"] or "ok",
        ),
    ]
    return [{"check": name, "result": "PASS" if ok else "FAIL", "detail": detail} for name, ok, detail in checks]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Soak test (see the module docstring).")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600; CI: 60)")
    p.add_argument("--rate", type=float, help="requests/s (default: --load × our measured maximum)")
    p.add_argument("--load", type=float, default=0.7, help="fraction of the maximum (default 0.7)")
    paths.add_path_args(p, out_help="default var/bench/ (and bench/results/ for runs of >= 600 s)")
    args = p.parse_args(argv)
    paths.resolve_paths(args, None)  # None: chosen by duration when writing
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now = datetime.now(UTC)
    warmup_s = min(60.0, 0.15 * args.duration)
    results: dict = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": args.duration,
        "warmup_s": warmup_s,
        "load_fraction": args.load,
        "workers": WORKERS,
        "machine": machine.describe(ROOT),
    }
    started_cluster = False
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="fc-soak-") as tmp:
            work = Path(tmp)
            png, store = paths.scratch_inputs(work, args.data_dir, args.model_dir)  # the soak publishes into it
            cluster_start = cassandra_cluster.ensure_up()
            started_cluster = cluster_start is not None
            results["cluster_start_s"] = cluster_start
            admin = cassandra_cluster.Admin()
            for keyspace in (KEYSPACE, PROBE_KEYSPACE):
                admin.drop(keyspace)
                cassandra_cluster.migrate(keyspace)
            if args.rate:
                rate = args.rate
                results["rate_source"] = "--rate"
            else:
                probe = measure_max(store, png, work / "probe", seconds=10.0)
                rate = round(args.load * probe["requests_per_s"])
                results["max_measured"] = probe
                results["rate_source"] = f"{args.load:.0%} of the measured maximum"
                print(
                    f"maximum {probe['requests_per_s']:,.0f} req/s (p99 {probe['p99_ms']:.1f} ms): "
                    f"soak at {rate:,} req/s",
                    flush=True,
                )
            results["rate"] = rate
            server = start_serve(
                work / "soak", store, workers=WORKERS, predlog="cassandra", extra_env=server_env(KEYSPACE), timeout=120
            )
            results["ready_s"] = server.ready_seconds
            workers_at_start = server.worker_pids()
            sampler = Sampler(server)
            timeline = Timeline(store, args.duration)
            out_dir = work / "loadgen"
            print(f"soak: {args.duration:.0f} s at {rate:,} req/s, warm-up {warmup_s:.0f} s", flush=True)
            sampler.start()
            timeline.start()
            gen = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bench" / "loadgen.py"),
                    "--url",
                    server.base_url,
                    "--png",
                    str(png),
                    "--rate",
                    str(rate),
                    "--duration",
                    str(args.duration),
                    "--out",
                    str(out_dir),
                ],
                capture_output=True,
                text=True,
                timeout=args.duration + 300,
            )
            if gen.returncode != 0:
                raise SoakError(f"loadgen failed: {gen.stderr[-3000:]}")
            timeline.join(timeout=600)  # node 2's restart may still be under way
            sampler.stop_event.set()
            sampler.join()
            results["worker_pids_seen"] = sorted({pid for _, rss in sampler.samples for pid in rss})
            results["workers_stable"] = results["worker_pids_seen"] == sorted(workers_at_start)
            results["rss"] = rss_growth(sampler.samples, warmup_s)
            results["rss_timeline_mb"] = [  # every 5 s: when RSS grew, and what happened then
                [round(t), {str(pid): round(v / 2**20, 1) for pid, v in rss.items()}] for t, rss in sampler.samples[::5]
            ]
            server.stop(timeout=60)  # workers flush their queues and spools on the way out
            results["server_log_tail"] = server.log_tail(20)
            server = None
            results["loadgen"] = json.loads((out_dir / "loadgen.json").read_text())
            ids = [uuid.UUID(line) for line in (out_dir / "ids.txt").read_text().split()]
            results["events"], results["timeline_error"] = timeline.events, timeline.error
            results["new_version"] = timeline.new_version
            print("waiting for every answered prediction in Cassandra (consistency ALL)", flush=True)
            t0 = time.monotonic()
            stored = wait_for_rows(admin, ids, timeout=180)
            results["rows"] = {
                "answered": len(ids),
                "stored": len(stored),
                "missing": len(set(ids) - set(stored)),
                "extra": len(set(stored) - set(ids)),
                "duplicates": len(stored) - len(set(stored)),
                "settled_after_s": round(time.monotonic() - t0, 1),
            }
            admin.close()
    except (SoakError, ServerError, wrkrun.WrkError, cassandra_cluster.ClusterError) as exc:
        print(f"soak.py: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop(timeout=30)
        if started_cluster:
            cassandra_cluster.script("stop")
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["checks"] = check(results)
    ok = all(c["result"] == "PASS" for c in results["checks"])
    results["verdict"] = "PASS" if ok else "FAIL"
    lg = results["loadgen"]
    print(
        f"soak {args.duration:.0f} s at {results['rate']:,} req/s: sent {lg['sent']}, ok {lg['ok']}, "
        f"failed {lg['failed']}; latency p50 {lg['latency_ms']['p50']} p99 {lg['latency_ms']['p99']} "
        f"max {lg['latency_ms']['max']} ms; generator CPU {lg['generator_cpu_share']:.0%} of a core"
    )
    slowest = sorted((s for s in lg.get("timeline", []) if "p99_ms" in s), key=lambda s: -s["p99_ms"])[:5]
    print(
        "slowest seconds (p99 ms): "
        + ", ".join(f"t={s['s']}s {s['p99_ms']:,.0f}" for s in sorted(slowest, key=lambda s: s["s"]))
    )
    for c in results["checks"]:
        print(f"  {c['result']}  {c['check']}: {c['detail']}")
    print(f"soak: {results['verdict']}")
    outs = (
        [args.out]
        if args.out
        else [ROOT / "var" / "bench"] + ([ROOT / "bench" / "results"] if args.duration >= 600 else [])
    )
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"soak-{now:%Y-%m-%d}-{args.duration:.0f}s.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
