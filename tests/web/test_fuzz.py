"""Bad input against a real 2-worker ``fashion-classifier serve`` (issue 3, "Bad input").

Over a thousand generated bad requests (``harness.bad_requests``, seeded: set FC_FUZZ_SEED to
explore other ones) and hypothesis-generated JSON bodies hit every endpoint over raw TCP.
Every request must get an answer below 500; every 4xx the app produces must carry a JSON
``{"error": "..."}`` body; afterwards the same two workers must still be serving.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness.bad_requests import PROTOCOL_KINDS, Assets, BadRequest, Generator, multipart
from harness.images import DECODE_BUDGET_CASES, encode, load_test_split
from harness.rawhttp import NoResponse, RawResponse, send
from harness.server import http_status, start_serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashion_classifier.config import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.timeout(300)

CASES = 1200
SEED = int(os.environ.get("FC_FUZZ_SEED", "20261124"))
MAX_UPLOAD = 256 * 1024  # a small limit keeps the oversize cases cheap; the default is 10 MiB
MAX_BATCH = 64
JSON = "application/json"
JSON_ENDPOINTS = (
    "/api/v1/predict",
    "/v1/models/fashion:predict",
    "/v2/models/fashion/infer",
    "/api/v1/feedback",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("fuzz") / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, store)
    srv = start_serve(
        tmp_path_factory.mktemp("fuzz-serve"),
        store,
        workers=2,
        predlog="sqlite",
        extra_env={"FC_MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "FC_MAX_BATCH": str(MAX_BATCH)},
    )
    pids = srv.worker_pids()
    yield srv
    try:
        assert srv.worker_pids() == pids, "a worker died or was replaced during the fuzz tests"
        log = srv.log_tail(100_000)
        for sign in ("WORKER TIMEOUT", "Traceback", "was sent SIGKILL", "Worker exiting"):
            assert sign not in log, f"server log shows {sign!r}:\n{log[-4000:]}"
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def assets(data_dir) -> Assets:
    images, _ = load_test_split(data_dir)
    pixels = images[1]
    files = {fmt: encode(pixels, fmt) for fmt in ("PNG", "GIF", "BMP")}
    files["JPEG"] = encode(pixels, "JPEG", quality=90)
    return Assets(files, pixels.tolist())


def problem(req: BadRequest, resp: RawResponse | Exception) -> str | None:
    """Why this answer breaks the contract, or None when it is fine."""
    if isinstance(resp, Exception):
        return f"no answer ({resp})"
    if resp.status >= 500:
        return f"{resp.status}: {resp.body[:300]!r}"
    if not 400 <= resp.status < 500:
        return None  # a "bad" request that happens to be valid (e.g. a harmless odd filename)
    if req.kind in PROTOCOL_KINDS and resp.status not in (400, 413, 414, 431):
        # gunicorn's HTTP parser answers these before the app runs, in JSON too (server.protocol_errors).
        return f"unexpected protocol status {resp.status}"
    if not resp.headers.get("content-type", "").startswith("application/json"):
        return f"{resp.status} with Content-Type {resp.headers.get('content-type')!r}: {resp.body[:200]!r}"
    try:
        body = json.loads(resp.body)
    except ValueError:
        return f"{resp.status} with a body that is not JSON: {resp.body[:200]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        return f"{resp.status} without an 'error' message: {body!r:.200}"
    return None


def exchange(server, req: BadRequest) -> RawResponse | Exception:
    try:
        return send(server.host, server.port, req.method, req.path, req.headers, req.body)
    except (NoResponse, OSError) as exc:
        return exc


def test_generator_is_seeded_and_covers_every_kind(assets):
    one = Generator(assets, seed=SEED, max_upload=MAX_UPLOAD, max_batch=MAX_BATCH).make(CASES)
    two = Generator(assets, seed=SEED, max_upload=MAX_UPLOAD, max_batch=MAX_BATCH).make(CASES)
    assert one == two
    kinds = Counter(r.kind for r in one)
    assert len(one) >= 1000
    assert min(kinds.values()) >= 20, kinds
    assert {"bomb", "deep-json", "bad-v2-binary", "oversize", "unknown-model", "huge-header"} <= set(kinds)


def test_generated_bad_requests_get_4xx_json(server, assets):
    cases = Generator(assets, seed=SEED, max_upload=MAX_UPLOAD, max_batch=MAX_BATCH).make(CASES)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda r: exchange(server, r), cases))
    failures = [
        f"{why}\n    {req.describe()}" for req, resp in zip(cases, answers, strict=True) if (why := problem(req, resp))
    ]
    statuses = Counter(a.status for a in answers if isinstance(a, RawResponse))
    assert not failures, f"{len(failures)} of {len(cases)} requests broke the contract:\n" + "\n".join(failures[:25])
    # The generator must really produce bad requests: nearly all are refused.
    refused = sum(n for status, n in statuses.items() if 400 <= status < 500)
    assert refused >= 0.9 * len(cases), statuses
    assert http_status(server.base_url + "/v2/health/ready") == 200


def test_decode_budget_images_get_200_or_json_4xx(server):
    """The decode budget's large and hostile images (issue 21; those under this server's upload
    limit) as uploads and as base64 instances: answers below 500, JSON errors, workers alive."""
    corpus = {name: build() for name, (build, _) in DECODE_BUDGET_CASES.items()}
    cases = []
    for name, data in corpus.items():
        if len(data) * 4 // 3 + 1024 > MAX_UPLOAD:
            continue
        headers, body = multipart([("file", f"{name}.img", "application/octet-stream", data)])
        cases.append(BadRequest("decode-budget", "POST", "/api/v1/predict", {**headers, "Accept": JSON}, body))
        instance = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
        v1 = "/v1/models/fashion:predict"
        cases.append(BadRequest("decode-budget", "POST", v1, {"Content-Type": JSON}, instance))
    assert len(cases) >= 60
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda r: exchange(server, r), cases))
    failures = [
        f"{why}\n    {req.describe()}" for req, resp in zip(cases, answers, strict=True) if (why := problem(req, resp))
    ]
    assert not failures, "\n".join(failures[:25])
    statuses = Counter(a.status for a in answers if isinstance(a, RawResponse))
    assert statuses[200] and statuses[422], statuses
    assert http_status(server.base_url + "/v2/health/ready") == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=30)
        | st.dictionaries(
            st.sampled_from(
                [
                    "instances",
                    "inputs",
                    "name",
                    "shape",
                    "datatype",
                    "data",
                    "b64",
                    "prediction_id",
                    "true_label",
                    "parameters",
                    "outputs",
                    "pixels",
                    "id",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, endpoint=st.sampled_from(JSON_ENDPOINTS))
def test_any_json_body_gets_an_answer_below_500(server, value, endpoint):
    body = json.dumps(value).encode()
    req = BadRequest(
        "hypothesis-json",
        "POST",
        endpoint,
        {"Content-Type": "application/json", "Accept": "application/json"},
        body,
    )
    why = problem(req, exchange(server, req))
    assert why is None, f"{why}\n    {req.describe()}"
