"""Cheap requests never park a worker (issue 21 item 2), against a real gunicorn.

Two workers, the default SQLite log, an API token. Waves of 50 concurrent abusive requests --
feedback on made-up but recent-looking version-1 ids (with the API token, so they reach the
handler, which used to poll the log for 2 s for such an id) and the prediction counts and list
without the token -- while a probe loop calls ``/v2/health/live`` every 50 ms, as a kubelet
would. No probe may fail and their p99 must stay within 50 ms.

Timing-sensitive: the 50 ms bound is the issue's. On a quiet 2-core machine the p99 was 15-35 ms
(a probe that lands with a whole wave queued ahead of it waits for ~25 requests per worker, ~0.6
ms each); with other test suites loading the machine it reached 55-95 ms. On today's code (before
issue 21) every probe timed out: each feedback request polled the log for 2 s.
"""

from __future__ import annotations

import http.client
import json
import math
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest
from harness.server import start_serve

from fashion_classifier.config import DEFAULT_MODEL_DIR

TOKEN = "abuse-test-token-" + "z" * 20
CONCURRENT = 50
WAVES = 40
WAVE_INTERVAL = 0.25  # s between the starts of two waves: 10 s of abuse, ~200 probes (p99: all but 2)
PROBE_INTERVAL = 0.05
PROBE_P99_LIMIT = 0.050

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("abuse") / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, store)
    srv = start_serve(tmp_path_factory.mktemp("abuse-serve"), store, workers=2, extra_env={"FC_API_TOKEN": TOKEN})
    yield srv
    srv.stop()


def abusive_request(i: int) -> tuple[str, str, bytes, dict[str, str]]:
    """(method, path, body, headers) of the i-th request of a wave."""
    if i % 5 < 3:  # three in five: feedback on an id that looks a moment old and exists nowhere
        body = json.dumps({"prediction_id": str(uuid.uuid1()), "true_label": 1}).encode()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        return "POST", "/api/v1/feedback", body, headers
    path = "/api/v1/predictions/counts" if i % 5 == 3 else "/api/v1/predictions?limit=1000"
    return "GET", path, b"", {}


def call(port: int, method: str, path: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers={"Connection": "close", **headers})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# The probe runs in a process of its own, as a kubelet does: in this one, the 50 client threads'
# turns at the GIL would be measured as the server's delay. It probes until its stdin closes and
# then prints one JSON line: [[seconds, error or null], ...].
PROBER = """
import http.client, json, sys, threading, time
port, interval = int(sys.argv[1]), float(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
results, start, k = [], time.monotonic(), 0
print("ready", flush=True)
while not stop.is_set():
    began, error = time.monotonic(), None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/v2/health/live", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            error = f"status {response.status}"
    except OSError as exc:
        error = repr(exc)
    finally:
        conn.close()
    results.append([time.monotonic() - began, error])
    k += 1
    time.sleep(max(0.0, start + k * interval - time.monotonic()))
print(json.dumps(results), flush=True)
"""


@pytest.mark.slow
def test_abusive_requests_do_not_delay_the_liveness_probe(server):
    port = server.port
    answers: list[tuple[str, int | str, float]] = []
    answers_lock = threading.Lock()
    barrier = threading.Barrier(CONCURRENT + 1)

    def abuser(i: int) -> None:
        for _ in range(WAVES):
            barrier.wait()
            method, path, body, headers = abusive_request(i)
            began = time.monotonic()
            try:
                status: int | str = call(port, method, path, body, headers, timeout=3.0)
            except OSError as exc:
                status = repr(exc)
            with answers_lock:
                answers.append((path, status, time.monotonic() - began))

    abusers = [threading.Thread(target=abuser, args=(i,), daemon=True) for i in range(CONCURRENT)]
    for thread in abusers:
        thread.start()
    prober = subprocess.Popen(
        [sys.executable, "-c", PROBER, str(port), str(PROBE_INTERVAL)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert prober.stdout.readline().strip() == "ready"
        first = time.monotonic()
        for wave in range(WAVES):
            time.sleep(max(0.0, first + wave * WAVE_INTERVAL - time.monotonic()))
            barrier.wait(timeout=30)  # the wave starts when all 50 are ready
    except BaseException:
        barrier.abort()  # frees the abusers still waiting for a wave that will not start
        prober.kill()
        raise
    finally:
        for thread in abusers:
            thread.join(timeout=30)
    out, _ = prober.communicate(input="", timeout=10)  # closing stdin stops the probe loop
    results = json.loads(out.strip().splitlines()[-1])
    probes = [seconds for seconds, _ in results]
    probe_failures = [error for _, error in results if error]

    slowest = max((seconds for _, _, seconds in answers), default=0.0)
    ordered = sorted(probes)
    p99 = ordered[math.ceil(0.99 * len(ordered)) - 1]
    summary = (
        f"probe p99 {p99 * 1e3:.1f} ms over {len(probes)} probes (max {ordered[-1] * 1e3:.1f} ms); "
        f"slowest abusive answer {slowest * 1e3:.0f} ms"
    )
    assert not probe_failures, f"{len(probe_failures)} probes failed: {probe_failures[:5]}; {summary}"
    assert len(probes) >= 160, summary
    assert p99 <= PROBE_P99_LIMIT, summary
    assert len(answers) == CONCURRENT * WAVES
    # Each abusive request reached its answer: 409 (made-up recent id, at once) or 401.
    unexpected = [(path, status) for path, status, _ in answers if status != (409 if "feedback" in path else 401)]
    assert not unexpected, unexpected[:10]
