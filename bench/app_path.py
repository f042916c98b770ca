"""The app's own cost per request, without a worker or a socket: two source trees side by side.

Calls the WSGI app (``create_app``, prediction log off) in-process with a one-image PNG upload to
``/api/v1/predict`` and a one-image V2 JSON tensor, and reports CPU µs per request. Each tree
(``LABEL=SRC``, a ``src`` directory; the first is the reference) runs in its own child process, the
trees alternating round by round, so a change's cost is told apart from the worker's and from the
host's drift. Example (the tree before a change, exported with ``git archive``)::

    flock /tmp/fc-heavy.lock .venv/bin/python bench/app_path.py --name app-path-2026-12-07 \\
        before=/tmp/before/src after=src

Writes ``bench/results/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import describe
from paths import RESULTS, ROOT, write_results

BOUNDARY = "bench-app-path"


def bodies(data_dir: Path) -> dict[str, tuple[str, str, bytes]]:
    """Per workload: path, content type and body, from the first test image."""
    sys.path.insert(0, str(ROOT / "tests"))
    from harness.images import encode, load_test_split

    images, _ = load_test_split(data_dir)
    pixels = images[0]
    png = encode(pixels, "PNG")
    part = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
    )
    tensor = {
        "name": "pixels",
        "shape": [1, 28, 28],
        "datatype": "FP32",
        "data": [float(v) / 255 for v in pixels.ravel()],
    }
    return {
        "png": (
            "/api/v1/predict",
            f"multipart/form-data; boundary={BOUNDARY}",
            part.encode() + png + f"\r\n--{BOUNDARY}--\r\n".encode(),
        ),
        "v2": ("/v2/models/fashion/infer", "application/json", json.dumps({"inputs": [tensor]}).encode()),
    }


def child(model_dir: Path, data_dir: Path, requests: int) -> dict[str, float]:
    """In the child: CPU µs per request of each workload, after a warm-up."""
    from werkzeug.test import EnvironBuilder

    from fashion_classifier.config import Settings
    from fashion_classifier.web import create_app

    app = create_app(Settings(model_dir=model_dir, predlog="off", reload_interval=0))
    result = {}
    for name, (path, ctype, body) in bodies(data_dir).items():
        base = EnvironBuilder(path=path, method="POST", data=body, content_type=ctype).get_environ()
        base["REMOTE_ADDR"] = "127.0.0.1"

        def call(base: dict = base, body: bytes = body, name: str = name) -> None:
            status = []
            b"".join(app({**base, "wsgi.input": io.BytesIO(body)}, lambda s, h, e=None: status.append(s)))
            if not status[0].startswith("200"):
                raise RuntimeError(f"{name}: {status[0]}")

        for _ in range(requests // 5):
            call()
        started = time.process_time()
        for _ in range(requests):
            call()
        result[name] = (time.process_time() - started) / requests * 1e6
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="*", metavar="LABEL=SRC")
    p.add_argument("--name", help="result files bench/results/<name>.json/.md")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--requests", type=int, default=3000, help="measured requests per workload and round")
    p.add_argument("--model-dir", type=Path, default=ROOT / "model")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model_dir, args.data_dir, args.requests)))
        return 0
    if not args.trees:
        p.error("name at least one LABEL=SRC")
    trees = dict(t.split("=", 1) for t in args.trees)
    rounds: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for label, src in order:
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "OMP_NUM_THREADS": "1"}
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--requests",
                    str(args.requests),
                    "--model-dir",
                    str(args.model_dir),
                    "--data-dir",
                    str(args.data_dir),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                cwd="/tmp",
            )
            rounds[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(label, rounds[label][-1], flush=True)
    reference = next(iter(trees))
    medians = {label: {w: statistics.median(r[w] for r in rs) for w in rs[0]} for label, rs in rounds.items()}
    results = {
        "machine": describe(ROOT),
        "trees": trees,
        "requests": args.requests,
        "rounds": rounds,
        "medians_us": medians,
        "cost_ratios": {label: {w: m[w] / medians[reference][w] for w in m} for label, m in medians.items()},
    }
    lines = [
        f"# The app's CPU µs per request, in-process: {', '.join(trees)}",
        "",
        f"{args.rounds} alternating rounds of {args.requests} requests per workload; prediction log off.",
        "",
        "| label | workload | µs/request (median) | cost ratio |",
        "|---|---|---:|---:|",
    ]
    for label, m in medians.items():
        for w, us in m.items():
            lines.append(f"| {label} | {w} | {us:.1f} | {results['cost_ratios'][label][w]:.3f}× |")
    lines += ["", "Rounds (µs per request):", ""]
    lines += [
        f"- {label}: " + "; ".join(", ".join(f"{w} {v:.1f}" for w, v in r.items()) for r in rs)
        for label, rs in rounds.items()
    ]
    if args.name:
        write_results(RESULTS, args.name, results, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
