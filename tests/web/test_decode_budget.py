"""The decode budget against a real gunicorn (issue 21, item 1): large and hostile uploads of every kind.

One worker serves each image of ``harness.images.DECODE_BUDGET_CASES`` (every Pillow mode the
accepted formats can carry, interlaced and 16-bit PNG, APNG and GIF with thousands of frames, a
GIF whose screen differs from its frame, CMYK and progressive JPEG, RLE BMP, and files of many
tiny chunks, blocks or markers). Accepted ones (just inside the limits) must answer 200; hostile
ones 422 with a JSON error naming the limit. For each, the worker's peak RSS (``VmHWM``, reset
through ``/proc/PID/clear_refs`` before the request) may exceed its resting RSS by at most 64 MB
and the request may cost it at most 250 ms of CPU (``utime + stime``). On dec2ef7 the issue's
9400×9400 16-bit PNG took a worker from 85 MB to 2.3 GB and 5–10 s of CPU.

Also: a batch of images shares one budget, and the largest base64 upload in JSON stays within it.

Timing-sensitive: CPU times were ≤ ~160 ms on a loaded 2-core machine, ≤ ~220 ms at a slow hour
of the VM (the worst: RGBA and 16-bit PNGs at the byte limit, interlaced Paeth-filtered ones at
theirs, which are a third of the other PNGs' since they cost more per pixel). The peak
RSS growth was ≤ 50 MB (a 10 MB upload; most of it the request body in the web layer).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
import requests
from harness.images import DECODE_BUDGET_CASES, gif_zeros, jpeg_gradient, png_noisy_rgba, png_zeros
from harness.server import start_serve

from fashion_classifier.config import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.timeout(300)

MAX_RSS_GROWTH = 64 * 2**20
MAX_CPU_SECONDS = 0.250
_TICK = os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("budget") / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, store)
    srv = start_serve(tmp_path_factory.mktemp("budget-serve"), store, workers=1, predlog="off")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def corpus():
    """name -> file bytes, each built once and only when a test asks for it."""
    built: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in built:
            built[name] = DECODE_BUDGET_CASES[name][0]()
        return built[name]

    return get


def _status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for pid {pid}")


def _cpu_seconds(pid: int) -> float:
    # Fields after the command name (which may contain spaces): utime and stime are 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _reset_peak(pid: int) -> None:
    """Set VmHWM to the current RSS (Linux ≥ 4.0; as root). Without it VmHWM is the peak since the
    worker started, which can only make the check stricter."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _upload(server, name: str, data: bytes) -> requests.Response:
    return requests.post(
        f"{server.base_url}/api/v1/predict",
        files={"file": (name, data, "application/octet-stream")},
        headers={"Accept": "application/json"},
        timeout=120,
    )


@pytest.fixture(scope="module")
def worker(server):
    """The worker's pid and its resting RSS, after one request of every format and mode."""
    (pid,) = server.worker_pids()
    warm = [png_zeros(300, 200, kind) for kind in ("1", "L", "I;16", "P", "LA", "RGB", "RGBA")]
    warm += [png_zeros(300, 200, "P", transparency=True), gif_zeros((300, 200), frames=3)]
    warm += [jpeg_gradient(300, 200, mode) for mode in ("L", "RGB", "CMYK")]
    warm += [jpeg_gradient(300, 200, "RGB", progressive=True)]
    for i, data in enumerate(warm * 2):
        assert _upload(server, f"warm-{i}", data).status_code == 200
    assert server.worker_pids() == [pid]
    return pid, _status_bytes(pid, "VmRSS")


def _measured(server, pid: int, resting: int, send) -> tuple[requests.Response, int, float]:
    """``send()``'s response, the worker's peak RSS above ``resting`` meanwhile, and its CPU seconds."""
    _reset_peak(pid)
    cpu_before = _cpu_seconds(pid)
    response = send()
    cpu = _cpu_seconds(pid) - cpu_before
    growth = _status_bytes(pid, "VmHWM") - resting
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    assert server.worker_pids() == [pid], f"the worker died or was replaced:\n{server.log_tail()}"
    return response, growth, cpu


def _check_costs(what: str, growth: int, cpu: float, resting: int) -> None:
    above = f"{growth / 2**20:.1f} MB above the resting {resting / 2**20:.1f} MB"
    assert growth <= MAX_RSS_GROWTH, f"{what}: peak RSS {above}"
    assert cpu <= MAX_CPU_SECONDS, f"{what}: {cpu * 1000:.0f} ms of CPU"


@pytest.mark.parametrize("name", DECODE_BUDGET_CASES)
def test_every_upload_stays_within_the_decode_budget(server, worker, corpus, name):
    pid, resting = worker
    data = corpus(name)
    expected = DECODE_BUDGET_CASES[name][1]
    response, growth, cpu = _measured(server, pid, resting, lambda: _upload(server, name, data))
    # With -s: the numbers for the docs.
    print(f"\n{name:40s} {len(data):>10,} B  {response.status_code}  +{growth / 2**20:5.1f} MB  {cpu * 1000:4.0f} ms")

    body = response.json()
    if expected is None:
        assert response.status_code == 200, body
        assert body["predictions"][0]["label"]
    else:
        assert response.status_code == 422, body
        assert "limit" in body["error"].lower() and expected in body["error"], body
    _check_costs(f"{name} ({len(data):,} bytes)", growth, cpu, resting)


def test_a_batch_shares_one_budget(server, worker, corpus):
    """Four images at the per-image pixel limit in one request: the second one is refused."""
    pid, resting = worker
    data = corpus("png-L")
    files = [("file", (f"{i}.png", data, "image/png")) for i in range(4)]

    def send() -> requests.Response:
        url = f"{server.base_url}/api/v1/predict"
        return requests.post(url, files=files, headers={"Accept": "application/json"}, timeout=120)

    response, growth, cpu = _measured(server, pid, resting, send)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error.startswith('file "1.png": the images of one request may decode to 12,582,912 pixels in all'), error
    _check_costs("a batch of four", growth, cpu, resting)


def test_the_largest_base64_upload_stays_within_the_budget(server, worker):
    """JSON bodies carry the file as base64 text: the largest that fits FC_MAX_UPLOAD_BYTES."""
    pid, resting = worker
    data = png_noisy_rgba(1250, 4800)  # ~6 MB (8 MB of base64), 6.25 MB decoded: 5 × 6 + 6.25 fits 36 MiB
    body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]})
    assert len(body) < 10 * 2**20

    def send() -> requests.Response:
        url = f"{server.base_url}/v1/models/fashion:predict"
        return requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=120)

    response, growth, cpu = _measured(server, pid, resting, send)
    print(f"\nbase64 {len(data):,} B: {response.status_code} +{growth / 2**20:.1f} MB {cpu * 1000:.0f} ms")
    assert response.status_code == 200, response.text[:300]
    _check_costs(f"{len(data):,} bytes as base64", growth, cpu, resting)
