"""The prediction routes answered below Flask (``fast_path``): the same answers as the Flask views.

A request with a Content-Length is answered by the fast path; the same request sent chunked
(no Content-Length, as gunicorn passes it: ``wsgi.input_terminated``) goes to the Flask view.
"""

from __future__ import annotations

import base64
import gc
import io
import json

import pytest
from werkzeug.test import EnvironBuilder

from fashion_classifier.web.fast_path import pattern, routes
from web.test_metrics_endpoint import scrape, value

VIEWS = ("api.predict", "tfserving.predict", "oip.infer")
V2_OUTPUTS = [{"name": "probabilities"}, {"name": "class"}, {"name": "label"}]  # no ids: they differ


def multipart(*files: bytes, boundary: str = "b0undary") -> tuple[bytes, str]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def v2(pixels: list, shape: list[int], datatype: str = "UINT8", **extra) -> bytes:
    tensor = {"name": "pixels", "shape": shape, "datatype": datatype, "data": pixels}
    return json.dumps({"inputs": [tensor], "outputs": V2_OUTPUTS, **extra}).encode()


def post(client, path: str, body: bytes, content_type: str, *, chunked: bool = False, **headers: str):
    if chunked:
        return client.post(
            path,
            input_stream=io.BytesIO(body),
            content_type=content_type,
            headers={"Transfer-Encoding": "chunked", **headers},
            # As gunicorn passes a chunked body: no length, the input ends with the body.
            environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
        )
    return client.post(path, data=body, content_type=content_type, headers=headers)


def comparable(response) -> tuple[int, str, object]:
    """Status, content type and body, without what differs per request (ids, filenames' order)."""
    body = response.get_json() if response.is_json else response.get_data(as_text=True)
    if isinstance(body, dict):
        for result in body.get("predictions", []):
            if isinstance(result, dict):
                result.pop("prediction_id", None)
    return response.status_code, response.content_type, body


@pytest.fixture
def requests_ok(png, sample_images, state):
    """One valid request per fast route: (path, body, content type)."""
    pixels = sample_images[0][:2].tolist()
    version = state.model.version
    return [
        ("/api/v1/predict", *multipart(png(0), png(1))),
        ("/v1/models/fashion:predict", json.dumps({"instances": pixels}).encode(), "application/json"),
        ("/v2/models/fashion/infer", v2(pixels, [2, 28, 28]), "application/json"),
        (f"/v2/models/fashion/versions/{version}/infer", v2(pixels, [2, 28, 28]), "application/json"),
    ]


@pytest.fixture
def view_calls(app):
    """Wraps the Flask views of the prediction routes; the list records the ones called."""
    calls: list[str] = []
    for endpoint in VIEWS:
        view = app.view_functions[endpoint]

        def counted(*args, _view=view, _endpoint=endpoint, **kwargs):
            calls.append(_endpoint)
            return _view(*args, **kwargs)

        app.view_functions[endpoint] = counted
    return calls


def test_the_table_is_the_post_rules_of_the_prediction_views(app):
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint in VIEWS and "POST" in rule.methods}
    assert (
        {route.rule for route in routes(app)}
        == rules
        == {
            "/api/v1/predict",
            "/v1/models/<model_name>:predict",
            "/v2/models/<model_name>/infer",
            "/v2/models/<model_name>/versions/<model_version>/infer",
        }
    )


def test_a_rule_becomes_the_regex_werkzeug_matches():
    infer = pattern("/v2/models/<model_name>/versions/<model_version>/infer")
    assert infer.fullmatch("/v2/models/fashion/versions/7/infer").groupdict() == {
        "model_name": "fashion",
        "model_version": "7",
    }
    assert infer.fullmatch("/v2/models/a/b/versions/7/infer") is None  # a variable is one path segment
    assert pattern("/v1/models/<model_name>:predict").fullmatch("/v1/models/a.b:predict")["model_name"] == "a.b"
    assert pattern("/api/v1/predict").fullmatch("/api/v1Xpredict") is None  # static text is literal
    with pytest.raises(ValueError, match="converter"):
        pattern("/v2/models/<int:model_name>/infer")


def test_with_a_content_length_flask_is_skipped_and_the_answer_is_the_views(client, view_calls, requests_ok):
    for path, body, content_type in requests_ok:
        fast = post(client, path, body, content_type)
        assert fast.status_code == 200, (path, fast.get_json())
        assert view_calls == []
        assert int(fast.headers["Content-Length"]) == len(fast.get_data())
        flask = post(client, path, body, content_type, chunked=True)
        assert view_calls == [view_calls[0]] and view_calls.pop()  # the chunked one went to Flask
        assert comparable(fast) == comparable(flask), path


def test_binary_outputs_keep_their_header(client, sample_images, view_calls):
    pixels = sample_images[0][:1].tolist()
    body = v2(pixels, [1, 28, 28], parameters={"binary_data_output": True})
    fast = post(client, "/v2/models/fashion/infer", body, "application/json")
    flask = post(client, "/v2/models/fashion/infer", body, "application/json", chunked=True)
    assert view_calls == ["oip.infer"]
    assert fast.content_type == flask.content_type == "application/octet-stream"
    length = fast.headers["Inference-Header-Content-Length"]
    assert length == flask.headers["Inference-Header-Content-Length"]
    assert fast.get_data() == flask.get_data()
    assert json.loads(fast.get_data()[: int(length)])["outputs"][0]["parameters"]["binary_data_size"] == 40


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status"),
    [
        ("/v2/models/fashion/infer", b'{"inputs": [', "application/json", 400),
        ("/v2/models/fashion/infer", b'{"inputs": []}', "application/json", 400),
        ("/v2/models/shoes/infer", b'{"inputs": []}', "application/json", 404),
        ("/v2/models/fashion/versions/0/infer", b'{"inputs": []}', "application/json", 404),
        ("/v2/models/fashion/infer", v2([1, 2, 3], [1, 3]), "application/json", 400),
        ("/v1/models/shoes:predict", b'{"instances": []}', "application/json", 404),
        ("/v1/models/fashion:predict", b"[1]", "application/json", 400),
        ("/v1/models/fashion:predict", b"{}", "text/plain", 415),
        ("/api/v1/predict", b"hello", "text/plain", 415),
        ("/api/v1/predict", b"not an image", "image/png", 415),
        ("/api/v1/predict", b"--x--\r\n", "multipart/form-data; boundary=x", 400),
        ("/api/v1/predict", b'{"instances": [[1, 2]]}', "application/json", 400),
    ],
)
def test_errors_are_the_flask_error_handlers_answers(client, view_calls, path, body, content_type, status):
    fast = post(client, path, body, content_type)
    assert view_calls == []
    flask = post(client, path, body, content_type, chunked=True)
    assert len(view_calls) == 1
    assert fast.status_code == status and fast.get_json()["error"]
    assert comparable(fast) == comparable(flask)


def test_a_browser_gets_the_error_page(client):
    response = post(client, "/api/v1/predict", b"not an image", "image/png", Accept="text/html,*/*;q=0.8")
    assert response.status_code == 415 and response.mimetype == "text/html"
    assert "<html" in response.get_data(as_text=True).lower()


def test_too_many_images_is_413(make_app, png):
    client = make_app(max_batch=2).test_client()
    response = post(client, "/api/v1/predict", *multipart(png(0), png(1), png(2)))
    assert response.status_code == 413 and "limit is 2" in response.get_json()["error"]


def test_a_body_over_the_upload_limit_goes_to_flask_and_is_413(make_app, view_calls):
    client = make_app(max_upload_bytes=100).test_client()
    response = post(client, "/v2/models/fashion/infer", b" " * 101, "application/json")
    assert response.status_code == 413 and "the limit is 100 bytes" in response.get_json()["error"]


def test_a_body_shorter_than_its_content_length_is_408(client, view_calls):
    response = client.post(
        "/v2/models/fashion/infer",
        input_stream=io.BytesIO(b'{"inputs"'),
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": "100"},  # the client would correct content_length=
    )
    assert response.status_code == 408 and "stopped arriving" in response.get_json()["error"]
    assert view_calls == []


def test_other_methods_and_paths_go_to_flask(client, view_calls):
    assert client.get("/v2/models/fashion/infer").status_code == 405
    assert post(client, "/v2/models/fashion/infer/", b"{}", "application/json").status_code == 404
    assert post(client, "/api/v1/predict/", b"{}", "application/json").status_code == 404
    assert view_calls == []


def test_a_failure_to_log_is_a_500_and_counted(app, client, state, png, monkeypatch):
    def broken(outcome, client_address):
        raise RuntimeError("the log is broken")

    monkeypatch.setattr(state.classifier, "log", broken)
    before = scrape(client)
    response = post(client, "/api/v1/predict", *multipart(png(0)))
    assert response.status_code == 500 and response.get_json() == {"error": "internal error; the request was logged"}
    after = scrape(client)
    key = {"endpoint": "/api/v1/predict", "method": "POST", "status": "500"}
    assert value(after, "fc_http_requests_total", **key) - value(before, "fc_http_requests_total", **key) == 1


def test_metrics_label_each_route_by_its_rule(app, client, requests_ok):
    before = scrape(client)
    for path, body, content_type in requests_ok:
        post(client, path, body, content_type)
    post(client, "/v2/models/fashion/infer", b"{", "application/json")
    after = scrape(client)
    for route in routes(app):
        key = {"endpoint": route.rule, "method": "POST", "status": "200"}
        assert value(after, "fc_http_requests_total", **key) - value(before, "fc_http_requests_total", **key) == 1
    key = {"endpoint": "/v2/models/<model_name>/infer", "method": "POST", "status": "400"}
    assert value(after, "fc_http_requests_total", **key) - value(before, "fc_http_requests_total", **key) == 1


def test_predictions_answered_here_are_logged(app, client, state, png, sample_images):
    post(client, "/api/v1/predict", *multipart(png(0), png(1)))
    instance = {"b64": base64.b64encode(png(2)).decode()}
    post(client, "/v1/models/fashion:predict", json.dumps({"instances": [instance]}).encode(), "application/json")
    post(client, "/v2/models/fashion/infer", v2(sample_images[0][:1].tolist(), [1, 28, 28]), "application/json")
    state.predlog.flush(timeout=5)
    rows = state.predlog.recent(limit=10)
    assert sorted(row.source for row in rows) == ["api", "api", "v1", "v2"]


def test_requests_answered_here_leave_no_garbage_for_the_cyclic_gc(app, requests_ok):
    """A request's objects are freed by reference counting. Cyclic garbage from each request (a
    Werkzeug request reachable from its own environ) piled up for the full collections, whose
    pauses were the p99 of a loaded worker."""

    def call(path: str, body: bytes, content_type: str) -> None:
        environ = EnvironBuilder(path=path, method="POST", data=body, content_type=content_type).get_environ()
        statuses: list[str] = []
        answer = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(answer)
        assert statuses == ["200 OK"]

    for request in requests_ok:  # first calls fill caches
        call(*request)
    rounds = 10
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for request in requests_ok:
                call(*request)
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable < rounds  # not some per request


def test_no_flask_request_hook_is_skipped_unknowingly(app):
    """The fast path stands in for ``observability``'s after_request hook (the route label) and
    ``security_headers``' (its answers carry ``nosniff`` themselves), and for no other: a hook
    added later would not run for the prediction routes."""
    assert not any(app.before_request_funcs.values())
    assert not any(app.url_value_preprocessors.values())
    assert not any(app.teardown_request_funcs.values())
    hooks = {bp: [f.__name__ for f in fs] for bp, fs in app.after_request_funcs.items()}
    assert hooks == {None: ["_route_template", "_secure"]}
