"""The /v2 part of openapi.json follows the Open Inference Protocol's published REST document:
KServe's docs/predict-api/v2/rest_predict_v2.yaml, fetched (checksum-pinned) by scripts/oip-specs.

Every published operation is documented here, and each schema it names is matched: the same
properties with the same types, every field the protocol makes a server send marked required,
and nothing required of a client that the protocol leaves optional.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(os.environ.get("FC_OIP_SPECS_DIR", Path.home() / ".cache" / "fashion-classifier" / "oip-specs"))
OURS = json.loads((ROOT / "src" / "fashion_classifier" / "web" / "openapi.json").read_text())
# Fields the protocol requires in a response that its binary data extension (which this server
# implements) moves out of the JSON: a binary output's data follows the JSON header.
EXTENSION_EXEMPT = {("response_output", "data")}


@pytest.fixture(scope="module")
def published() -> dict[str, Any]:
    path = SPECS / "rest_predict_v2.yaml"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/oip-specs install")
    return yaml.safe_load(path.read_text())


def _our_path(path: str) -> str:
    return path.replace("${MODEL_NAME}", "{model_name}").replace("${MODEL_VERSION}", "{model_version}").rstrip("/")


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(component name, schema) with a top-level $ref followed."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return name, doc["components"]["schemas"][name]
    return None, schema


def _follows(spec: dict, theirs: dict, ours: dict, sends: bool, where: str) -> list[str]:
    """Where ``ours`` departs from ``theirs``; ``sends``: the server sends it (a response)."""
    name, theirs = _resolve(spec, theirs)
    _, ours = _resolve(OURS, ours)
    problems = []
    if "type" in theirs and "type" in ours and theirs["type"] != ours["type"]:
        problems.append(f"{where}: type {ours['type']}, published {theirs['type']}")
    for prop, sub in (theirs.get("properties") or {}).items():
        if prop not in (ours.get("properties") or {}):
            problems.append(f"{where}.{prop}: not documented")
        else:
            problems += _follows(spec, sub, ours["properties"][prop], sends, f"{where}.{prop}")
    if "items" in theirs and "items" in ours and "anyOf" not in theirs["items"]:
        problems += _follows(spec, theirs["items"], ours["items"], sends, f"{where}[]")
    theirs_required, ours_required = set(theirs.get("required", [])), set(ours.get("required", []))
    if sends:
        missing = {f for f in theirs_required - ours_required if (name, f) not in EXTENSION_EXEMPT}
        problems += [f"{where}.{f}: the protocol requires the server to send it" for f in sorted(missing)]
    else:
        problems += [
            f"{where}.{f}: required of clients, optional in the protocol"
            for f in sorted(ours_required - theirs_required)
        ]
    return problems


def _json_schema(content: dict[str, Any] | None) -> dict[str, Any] | None:
    return ((content or {}).get("application/json") or {}).get("schema")


def test_every_published_operation_is_documented(published):
    ours = {(path, method) for path, item in OURS["paths"].items() for method in item}
    expected = {
        (_our_path(path), method)
        for path, item in published["paths"].items()
        for method in item
        if method in ("get", "post")
    }
    assert len(expected) == 6 and expected <= ours, sorted(expected - ours)


def test_request_and_response_schemas_follow_the_published_ones(published):
    problems = []
    for path, item in published["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post"):
                continue
            mine = OURS["paths"][_our_path(path)][method]
            where = f"{method.upper()} {_our_path(path)}"
            theirs_body = _json_schema(op.get("requestBody", {}).get("content"))
            if theirs_body is not None:
                problems += _follows(
                    published, theirs_body, _json_schema(mine["requestBody"]["content"]), False, f"{where} request"
                )
            for status, response in op.get("responses", {}).items():
                theirs_schema = _json_schema(response.get("content"))
                # A published error this server never answers (GET /v2 cannot fail) is not documented.
                if theirs_schema is not None and status in mine["responses"]:
                    problems += _follows(
                        published,
                        theirs_schema,
                        _json_schema(mine["responses"][status]["content"]),
                        True,
                        f"{where} {status}",
                    )
    assert problems == []


def test_the_comparison_sees_a_departure(published):
    """The check above would pass vacuously if it never compared anything."""
    inference_response = {"$ref": "#/components/schemas/inference_response"}
    broken = json.loads(json.dumps(OURS["components"]["schemas"]["InferResponse"]))
    broken["properties"].pop("model_name")
    broken["required"].remove("outputs")
    problems = _follows(published, inference_response, broken, True, "r")
    assert "r.model_name: not documented" in problems
    assert "r.outputs: the protocol requires the server to send it" in problems
