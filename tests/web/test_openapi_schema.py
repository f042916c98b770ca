"""``/openapi.json`` matches the code: same routes, and responses that follow the document.

The route comparison reads Flask's URL map; schemathesis then generates requests from the
document for every operation (valid and invalid ones), calls the app in-process (WSGI) and
checks that nothing answers 5xx and that statuses, content types and bodies conform.
"""

from __future__ import annotations

import dataclasses
import re
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fashion_classifier.config import DEFAULT_MODEL_DIR, Settings
from fashion_classifier.predlog import open_log
from fashion_classifier.web import create_app
from fashion_classifier.web.state import EXTENSION

pytestmark = pytest.mark.timeout(600)

# Machine-facing routes must be documented; the HTML pages may be.
API_PREFIXES = ("/api/", "/v1/", "/v2")
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
EXAMPLES = 25  # per operation and generation mode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def schema_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openapi")
    shutil.copytree(DEFAULT_MODEL_DIR, tmp / "model")
    chosen = dataclasses.replace(
        Settings.from_env(),
        model_dir=tmp / "model",
        reload_interval=0,
        predlog="sqlite",
        sqlite_path=tmp / "predictions.sqlite3",
        spool_dir=tmp / "spool",
    )
    app = create_app(chosen, open_log(chosen))
    yield app
    app.extensions[EXTENSION].close()


@pytest.fixture(scope="module")
def document(schema_app) -> dict:
    response = schema_app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def _openapi_path(rule: str) -> str:
    """Flask's ``/v2/models/<model_name>/infer`` as OpenAPI's ``/v2/models/{model_name}/infer``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>:]+)>", r"{\1}", rule)


def _app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods or ():
            if method.lower() in HTTP_METHODS:
                routes.add((method.lower(), _openapi_path(rule.rule)))
    return routes


def _documented(document: dict) -> set[tuple[str, str]]:
    return {
        (method, path) for path, item in document.get("paths", {}).items() for method in item if method in HTTP_METHODS
    }


def test_document_is_openapi_3(document):
    assert document.get("openapi", "").startswith("3.")
    assert document.get("paths"), "the document lists no paths"


def test_every_api_route_is_documented(schema_app, document):
    undocumented = sorted(r for r in _app_routes(schema_app) - _documented(document) if r[1].startswith(API_PREFIXES))
    assert not undocumented, f"routes missing from /openapi.json: {undocumented}"


def test_every_documented_route_exists(schema_app, document):
    missing = sorted(_documented(document) - _app_routes(schema_app))
    assert not missing, f"/openapi.json documents routes the app does not have: {missing}"


@pytest.fixture(scope="module")
def openapi_schema(schema_app, document):
    return schemathesis.openapi.from_wsgi("/openapi.json", schema_app)


def _check_operation(operation, mode: GenerationMode, concrete_paths: set[str]) -> None:
    # One hypothesis run per operation and mode (schemathesis' pytest loader for fixtures does
    # not work with pytest 9, so the operations are driven here).
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case):
        # OpenAPI matches concrete paths before templated ones: a generated id of "counts"
        # (hypothesis draws string constants from our source) asks for /predictions/counts,
        # another operation with its own response schema.
        assume(case.path == case.formatted_path or case.formatted_path not in concrete_paths)
        case.call_and_validate(checks=CHECKS)

    run()


@pytest.mark.slow
def test_responses_conform_to_the_document(openapi_schema, document):
    concrete_paths = {path for path in document["paths"] if "{" not in path}
    failures, checked = [], 0
    for result in openapi_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            checked += 1
            try:
                _check_operation(operation, mode, concrete_paths)
            except Unsatisfiable:
                continue  # e.g. no invalid request exists for an operation without inputs
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - report every operation
                failures.append(f"{operation.label} ({mode}): {exc}")
    assert checked, "the document has no operations"
    assert not failures, f"{len(failures)} of {checked} runs failed:\n" + "\n\n".join(f[:3000] for f in failures)
