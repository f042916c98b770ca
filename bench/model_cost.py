"""What a model version costs in serving (issue 23, "Its cost, a budget"): two versions, one run.

From the repository root, on a quiet machine::

    flock /tmp/fc-heavy.lock .venv/bin/python bench/model_cost.py           # full run, about 5 minutes
    flock /tmp/fc-heavy.lock .venv/bin/python bench/model_cost.py --quick   # smoke run, results in var/bench/

``--baseline DIR`` and ``--candidate DIR`` are version directories (``model.tflite`` and
``metadata.json``); by default the newest ``*-mlp-*`` version of the store (``--model-dir``,
default ``model/``) and the store's current version. The two alternate in rounds (baseline,
candidate, baseline, candidate, ...) so that the host's drift hits both; each figure is the
median over the rounds, and each ratio is candidate / baseline of those medians. Per round and
version:

* in process: ``load_version`` (checksums, LiteRT interpreter, test inferences), then
  ``Predictor.predict`` on one test image at a time, float32 [1, 28, 28], one thread, as a
  worker calls it: µs per image (median of 5 blocks of calls);
* served: ``fashion-classifier serve`` on a temporary store holding only that version, the
  default worker count (one per CPU), prediction log off, driven by wrk at 16 connections as
  bench/peers.py does: ``png`` (one 28×28 test PNG per multipart upload to ``/api/v1/predict``;
  the API takes uploads, not a bare image/png body), ``v2`` (one FP32 [1, 28, 28] JSON tensor
  to ``/v2/models/fashion/infer``) and ``batch256-v2binary`` (UINT8 [256, 28, 28] with the
  binary tensor extension, bench/serving.py's body). Each workload's answer is checked first:
  the served version, and the class of the test image, which must be the one the version
  predicts in process (the served stack adds no error; the model's accuracy is not this
  benchmark's business). The largest worker's RSS (VmRSS) after the single-image loads and
  after the batches (LiteRT keeps a batch's buffers), and its peak (VmHWM);
* worker start, as bench/serving.py measures it: a 1-worker server whose worker is killed three
  times; the time from the kill to the respawned worker answering ready (gunicorn forks, the
  worker imports the app, verifies, loads and test-runs the model). Also the model load alone
  (``load_seconds``, in process and as ``/api/v1/model`` reports it).

Targets: png and V2 req/s ratios ≥ 0.85; the candidate's worker RSS ≤ 100 MB (after the
single-image loads, and after the batches) and worker start ≤ 0.5 s; the images/s ratio of the
binary batches is reported without a target.

Results: printed, and written to ``bench/results/model-cost-<date>[-<suffix>].json`` and ``.md``
(``--quick``: ``var/bench/``). Exit code 0 when it ran (PASS/FAIL is in the report), 1 when a
server or wrk failed or an answer was wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the process harness is shared with the tests

import machine  # noqa: E402
import paths  # noqa: E402
import peers  # noqa: E402
import serving  # noqa: E402
import wrkrun  # noqa: E402
from harness.images import load_test_split  # noqa: E402
from harness.server import ServerError  # noqa: E402

from fashion_classifier.artifacts import store  # noqa: E402
from fashion_classifier.inference.loader import load_version  # noqa: E402
from fashion_classifier.server import runtime  # noqa: E402

LABELS = ("baseline", "candidate")
BINARY = "batch256-v2binary"
WORKLOADS = ("png", "v2", BINARY)
TARGETS = {"req_s_ratio": 0.85, "rss_mb": 100.0, "worker_start_s": 0.5}
BLOCKS = 5  # timed blocks of single-image calls per round; the round's figure is their median


@dataclass(frozen=True)
class Version:
    label: str
    path: Path
    metadata: dict = field(repr=False)

    @property
    def id(self) -> str:
        return str(self.metadata["version"])

    def describe(self) -> dict:
        m = self.metadata
        return {
            "version": self.id,
            "path": str(self.path),
            "architecture": m.get("architecture"),
            "parameters": m.get("parameters"),
            "test_accuracy": m.get("test_accuracy"),
            "tflite_kb": round((self.path / store.TFLITE).stat().st_size / 1024, 1),
        }


def resolve_versions(args: argparse.Namespace) -> tuple[Version, Version]:
    """The two version directories, checked (checksums) before anything is measured."""
    baseline = args.baseline
    if baseline is None:
        mlps = [v for v in store.list_versions(args.model_dir) if "-mlp-" in v]
        if not mlps:
            raise store.ArtifactError(f"no *-mlp-* version in {args.model_dir}: name one with --baseline")
        baseline = store.version_path(args.model_dir, mlps[-1])
    candidate = args.candidate or store.current_path(args.model_dir)
    return tuple(
        Version(label, Path(p).resolve(), store.verify(Path(p), (store.TFLITE,)))
        for label, p in zip(LABELS, (baseline, candidate), strict=True)
    )


def single_store(version: Version, workdir: Path) -> Path:
    """A model store holding only ``version``, current (artifacts/store.py's layout)."""
    model_dir = workdir / "model"
    shutil.copytree(version.path, store.version_path(model_dir, version.id))
    (model_dir / store.CURRENT).write_text(version.id + "\n")
    return model_dir


# ---------------------------------------------------------------------------------------------
# In process


def in_process(version: Version, images: np.ndarray, calls: int) -> dict:
    """Load the version as a worker does, then time single-image predictions on one thread."""
    loaded = load_version(version.path)
    predict = loaded.predictor.predict
    singles = [images[i : i + 1] for i in range(len(images))]
    for x in singles:  # warm: every input once
        predict(x)
    blocks = []
    for _ in range(BLOCKS):
        started = time.perf_counter()
        for i in range(calls):
            predict(singles[i % len(singles)])
        blocks.append((time.perf_counter() - started) / calls * 1e6)
    # What the served answers must be: this version's own class for the checked test image.
    predicted = int(np.argmax(predict(images[peers.IMAGE_INDEX : peers.IMAGE_INDEX + 1])[0]))
    return {
        "load_s": round(loaded.load_seconds, 4),
        "us_per_image": round(statistics.median(blocks), 2),
        "us_per_image_blocks": [round(b, 2) for b in blocks],
        "predicted_class": predicted,
    }


# ---------------------------------------------------------------------------------------------
# Served


@dataclass
class AnswerCheck:
    """peers.check_answer for png and v2, plus the binary batch, plus the served version; keeps
    what ``/api/v1/model`` said."""

    binary: wrkrun.Load
    version: str
    model_info: dict = field(default_factory=dict)

    def __call__(self, base_url: str, workload: str, bodies: dict[str, bytes], expected: int) -> None:
        if workload == BINARY:
            check_binary(base_url, self.binary, expected)
        else:
            peers.check_answer(base_url, workload, bodies, expected)
        if not self.model_info:
            with urllib.request.urlopen(base_url + "/api/v1/model", timeout=30) as resp:
                self.model_info = json.loads(resp.read())
        if self.model_info.get("version") != self.version:
            raise ServerError(f"the server runs {self.model_info.get('version')}, expected {self.version}")


def check_binary(base_url: str, load: wrkrun.Load, expected: int) -> None:
    """Send the binary batch once; the first image's ``class`` (INT64, binary) must be ``expected``."""
    env = load.env
    headers = {"Content-Type": env["WRK_CONTENT_TYPE"], env["WRK_HEADER_NAME"]: env["WRK_HEADER_VALUE"]}
    req = urllib.request.Request(base_url + load.path, Path(env["WRK_BODY"]).read_bytes(), headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        length = int(resp.headers[env["WRK_HEADER_NAME"]])
        raw = resp.read()
    (output,) = json.loads(raw[:length])["outputs"]
    got = int(np.frombuffer(raw[length : length + 8], dtype="<i8")[0])
    if output["name"] != "class" or got != expected:
        raise ServerError(f"{BINARY}: output {output['name']} first value {got}, expected class {expected}")


def prepare_loads(workdir: Path, data_dir: Path) -> tuple[dict[str, wrkrun.Load], dict[str, bytes]]:
    """peers.py's png and v2 workloads and serving.py's binary V2 batch."""
    for sub in ("peers", "serving"):
        (workdir / sub).mkdir()
    loads, bodies = peers.prepare_inputs(workdir / "peers", data_dir)
    files, header = serving.prepare_inputs(workdir / "serving", data_dir)
    spec = serving.ours("off", workdir)  # only to ask serving.loads for its V2 workloads
    binary = {name: load for name, load, _ in serving.loads(files, header, spec)}["batch256-v2binary-c16"]
    return {"png": loads["png"], "v2": loads["v2"], BINARY: binary}, bodies


def served(
    version: Version,
    model_dir: Path,
    loads: dict[str, wrkrun.Load],
    bodies: dict[str, bytes],
    workdir: Path,
    args: argparse.Namespace,
) -> dict:
    """peers.bench_server on ``model_dir`` with the default worker count, the log off."""
    server = peers.ours("off", model_dir, workdir, f"{version.label}")
    server.env.pop("FC_WORKERS")  # the project's default: one worker per CPU
    server.gunicorn_workers = runtime.cpu_count()
    server.workloads = WORKLOADS
    server.description = f"{version.id}: fashion-classifier serve, default workers, prediction log off"
    check = AnswerCheck(loads[BINARY], version.id)
    entry = peers.bench_server(server, loads, bodies, workdir, args, check)  # args.expected_class: in process
    if entry.get("unavailable"):
        raise ServerError(f"{version.label}: {entry['unavailable']}")
    invalid = {w: r["invalid"] for w, r in entry["runs"].items() if "invalid" in r or r.get("errors_total")}
    if invalid:
        raise ServerError(f"{version.label} ({version.id}): {invalid}")
    entry["workers"] = sum(p["role"] == "child" for p in entry["processes"])
    # After the single-image loads, and after the batches: LiteRT keeps the arena a 256-image
    # batch needed (the input is resized back, the memory stays), so both count.
    entry["worker_rss_mb_single"] = worker_rss(entry["runs"]["v2"]["processes_after"])
    entry["worker_rss_mb"] = worker_rss(entry["runs"][BINARY]["processes_after"])
    entry["model_load_s_in_worker"] = check.model_info.get("load_seconds")
    return entry


def worker_rss(processes: list[dict]) -> float:
    """The largest gunicorn worker's RSS (MB) in a peers.processes() list."""
    return max(p["rss_mb"] for p in processes if p["role"] == "child")


def worker_start(model_dir: Path, workdir: Path) -> dict:
    """serving.py's measure: kill the one worker three times, time each respawn to ready."""
    return serving.worker_start(serving.ours("off", model_dir), workdir)


# ---------------------------------------------------------------------------------------------
# Rounds, figures, report


def run_round(
    n: int,
    versions: tuple[Version, Version],
    stores: dict[str, Path],
    images: np.ndarray,
    loads: dict[str, wrkrun.Load],
    bodies: dict[str, bytes],
    work: Path,
    args: argparse.Namespace,
) -> dict:
    out = {}
    for version in versions:
        print(f"round {n + 1}/{args.rounds}, {version.label} ({version.id}):", flush=True)
        entry = {"loadavg_before": os.getloadavg(), "in_process": in_process(version, images, args.calls)}
        print(f"  LiteRT in process: {entry['in_process']['us_per_image']:.1f} µs/image", flush=True)
        workdir = work / f"round{n + 1}-{version.label}"
        expected = argparse.Namespace(**{**vars(args), "expected_class": entry["in_process"]["predicted_class"]})
        entry["served"] = served(version, stores[version.label], loads, bodies, workdir, expected)
        entry["worker_start"] = worker_start(stores[version.label], workdir / "start")
        print(
            f"  worker RSS {entry['served']['worker_rss_mb_single']:.0f} MB after single images, "
            f"{entry['served']['worker_rss_mb']:.0f} MB after batches, respawn to ready "
            f"{entry['worker_start']['respawn_ready_s_median']:.3f} s",
            flush=True,
        )
        out[version.label] = entry
    return out


def figures(entry: dict) -> dict[str, float]:
    """The figures one round gives for one version."""
    runs = entry["served"]["runs"]
    return {
        "us_per_image": entry["in_process"]["us_per_image"],
        "png_req_s": runs["png"]["requests_per_s"],
        "v2_req_s": runs["v2"]["requests_per_s"],
        "batch_images_s": runs[BINARY]["images_per_s"],
        "worker_rss_mb_single": entry["served"]["worker_rss_mb_single"],
        "worker_rss_mb": entry["served"]["worker_rss_mb"],
        "worker_peak_rss_mb": entry["served"]["peak_rss_per_worker_mb"],
        "worker_start_s": entry["worker_start"]["respawn_ready_s_median"],
        "server_ready_s": entry["served"]["ready_s"],
        "model_load_s": entry["in_process"]["load_s"],
        "model_load_s_worker": entry["served"]["model_load_s_in_worker"],
    }


def summarize(rounds: list[dict]) -> dict:
    per_round = {label: [figures(r[label]) for r in rounds] for label in LABELS}
    medians = {
        label: {k: round(statistics.median(f[k] for f in rows), 4) for k in rows[0]}
        for label, rows in per_round.items()
    }
    ratio = {
        k: round(medians["candidate"][k] / medians["baseline"][k], 3)
        for k in ("us_per_image", "png_req_s", "v2_req_s", "batch_images_s", "worker_start_s")
    }
    paired = {
        k: [round(c[k] / b[k], 3) for b, c in zip(per_round["baseline"], per_round["candidate"], strict=True)]
        for k in ("png_req_s", "v2_req_s", "batch_images_s")
    }
    return {"per_round": per_round, "medians": medians, "ratios": ratio, "ratios_per_round": paired}


def targets(summary: dict) -> list[dict]:
    c, r = summary["medians"]["candidate"], summary["ratios"]
    rows = [
        ("png upload req/s, candidate / baseline ≥ 0.85", r["png_req_s"], TARGETS["req_s_ratio"], True),
        ("V2 single tensor req/s, candidate / baseline ≥ 0.85", r["v2_req_s"], TARGETS["req_s_ratio"], True),
        ("candidate worker RSS after single images ≤ 100 MB", c["worker_rss_mb_single"], TARGETS["rss_mb"], False),
        ("candidate worker RSS after 256-image batches ≤ 100 MB", c["worker_rss_mb"], TARGETS["rss_mb"], False),
        ("candidate worker start (respawn to ready) ≤ 0.5 s", c["worker_start_s"], TARGETS["worker_start_s"], False),
    ]
    return [
        {
            "target": name,
            "value": value,
            "goal": goal,
            "result": "PASS" if (value >= goal if higher else value <= goal) else "FAIL",
        }
        for name, value, goal, higher in rows
    ]


def markdown(results: dict) -> str:
    m, s = results["machine"], results["summary"]
    v = results["versions"]
    lines = [
        f"# Model cost, {results['date']} ({results['mode']}): {v['candidate']['version']} against "
        f"{v['baseline']['version']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, {m['os']}, kernel {m['kernel']}, "
        f"Python {m['python']}; {m['wrk']}; commit {m['commit']}.",
        f"Load average at start: {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}; at end: "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_end'])}. Wall time {results['wall_s'] / 60:.1f} min.",
        f"{results['rounds']} rounds, baseline then candidate in each. Served: `fashion-classifier serve`, "
        f"{results['workers']} workers (the default, one per CPU), prediction log off, 127.0.0.1, wrk -t1 "
        f"-c{peers.CONNECTIONS} on the same cores, {results['warmup_s']:.0f} s warm-up then "
        f"{results['duration_s']:.0f} s measured per workload. In process: LiteRT, one thread, one image per "
        f"`Predictor.predict`, {BLOCKS} blocks of {results['calls']} calls. Command: `{results['command']}`.",
        "",
        f"| version | label | architecture | parameters | test accuracy | model.tflite KB | class of test image "
        f"{results['test_image']['index']} (label {results['test_image']['label']}) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for label in LABELS:
        d = v[label]
        predicted = results["per_round"][0][label]["in_process"]["predicted_class"]
        lines.append(
            f"| {d['version']} | {label} | {d['architecture']} | {d['parameters'] or '—'} | "
            f"{d['test_accuracy'] or '—'} | {d['tflite_kb']:,.0f} | {predicted} |"
        )
    names = [
        ("us_per_image", "LiteRT µs/image (1 thread, in process)", ".1f"),
        ("png_req_s", "png upload req/s", ",.0f"),
        ("v2_req_s", "V2 single tensor req/s", ",.0f"),
        ("batch_images_s", "V2 binary batch256 images/s", ",.0f"),
        ("worker_rss_mb_single", "worker RSS after the single-image loads, MB", ".1f"),
        ("worker_rss_mb", "worker RSS after the 256-image batches, MB", ".1f"),
        ("worker_peak_rss_mb", "worker peak RSS, MB", ".1f"),
        ("worker_start_s", "worker start s (respawn to ready, median of 3)", ".3f"),
        ("server_ready_s", "server start to ready s (all workers)", ".2f"),
        ("model_load_s", "model load s in process (verify, interpreter, test inferences)", ".4f"),
        ("model_load_s_worker", "model load s in a worker (/api/v1/model load_seconds)", ".4f"),
    ]
    lines += [
        "",
        "Medians over the rounds; ratio = candidate / baseline:",
        "",
        "| figure | baseline | candidate | ratio |",
        "|---|---:|---:|---:|",
    ]
    for key, name, spec in names:
        ratio = s["ratios"].get(key)
        lines.append(
            f"| {name} | {format(s['medians']['baseline'][key], spec)} | "
            f"{format(s['medians']['candidate'][key], spec)} | {'—' if ratio is None else f'{ratio:.3f}×'} |"
        )
    lines += ["", "| target | value | result |", "|---|---:|---|"]
    lines += [f"| {t['target']} | {t['value']:.3g} | {t['result']} |" for t in results["targets"]]
    lines += [
        "",
        "Per round, with the ratios of each round's pair:",
        "",
        "| round | label | µs/image | png req/s | V2 req/s | batch images/s | RSS MB single / batch | "
        "start s | load avg before |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, entry in enumerate(results["per_round"]):
        for label in LABELS:
            f = s["per_round"][label][n]
            lines.append(
                f"| {n + 1} | {label} | {f['us_per_image']:.1f} | {f['png_req_s']:,.0f} | "
                f"{f['v2_req_s']:,.0f} | {f['batch_images_s']:,.0f} | {f['worker_rss_mb_single']:.1f} / "
                f"{f['worker_rss_mb']:.1f} | "
                f"{f['worker_start_s']:.3f} | {entry[label]['loadavg_before'][0]:.2f} |"
            )
        pair = " | ".join(f"{s['ratios_per_round'][k][n]:.3f}×" for k in ("png_req_s", "v2_req_s", "batch_images_s"))
        lines.append(f"| {n + 1} | candidate / baseline | | {pair} | | | |")
    if results["notes"]:
        lines += ["", "Notes:", "", *(f"- {n}" for n in results["notes"])]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Serving cost of two model versions (see the module docstring).")
    p.add_argument("--baseline", type=Path, help="version directory (default: the store's newest *-mlp-* version)")
    p.add_argument("--candidate", type=Path, help="version directory (default: the store's current version)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 1 s warm-up, 2 s per run, var/bench/")
    p.add_argument("--rounds", type=int, help="baseline/candidate rounds (default 3, quick 2)")
    p.add_argument("--duration", type=float, help="measured seconds per workload (default 10, quick 2)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per workload (default 3, quick 1)")
    p.add_argument("--calls", type=int, help="single-image calls per timed block in process (default 2000, quick 300)")
    p.add_argument("--suffix", help="appended to the result files' name: model-cost-<date>-<suffix>")
    paths.add_path_args(p)
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.warmup = args.warmup or (1.0 if args.quick else 3.0)
    args.calls = args.calls or (300 if args.quick else 2000)
    paths.resolve_paths(args, paths.SCRATCH if args.quick else paths.RESULTS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    now = datetime.now(UTC)
    try:
        versions = resolve_versions(args)
    except store.ArtifactError as exc:
        print(f"model_cost.py: {exc}", file=sys.stderr)
        return 2
    results: dict = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["bench/model_cost.py", *(argv if argv is not None else sys.argv[1:])]),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "calls": args.calls,
        "workers": runtime.cpu_count(),
        "connections": peers.CONNECTIONS,
        "versions": {v.label: v.describe() for v in versions},
        "machine": machine.describe(ROOT),
        "notes": [],
    }
    if results["machine"]["loadavg_at_start"][0] > 0.5:
        results["notes"].append(
            f"load average {results['machine']['loadavg_at_start'][0]:.2f} at start: "
            "the machine may not have been quiet"
        )
    if versions[0].id == versions[1].id:
        results["notes"].append("baseline and candidate are the same version: the ratios show the run's noise")
    images, labels = load_test_split(args.data_dir)
    results["test_image"] = {"index": peers.IMAGE_INDEX, "label": int(labels[peers.IMAGE_INDEX])}
    pixels = np.asarray(images[:256], dtype=np.float32) / np.float32(255)
    try:
        with tempfile.TemporaryDirectory(prefix="fc-model-cost-") as tmp:
            work = Path(tmp)
            loads, bodies = prepare_loads(work, args.data_dir)
            stores = {v.label: single_store(v, work / v.label) for v in versions}
            results["per_round"] = [
                run_round(n, versions, stores, pixels, loads, bodies, work, args) for n in range(args.rounds)
            ]
    except (ServerError, wrkrun.WrkError) as exc:
        print(f"model_cost.py: {exc}", file=sys.stderr)
        return 1
    results["summary"] = summarize(results["per_round"])
    results["targets"] = targets(results["summary"])
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["wall_s"] = round(time.monotonic() - started, 1)
    text = markdown(results)
    print(text)
    name = "-".join(["model-cost", f"{now:%Y-%m-%d}", *([args.suffix] if args.suffix else [])])
    paths.write_results(args.out, name, results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
