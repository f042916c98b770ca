"""/openapi.json documents exactly the routes the app has (schemathesis checks the shapes)."""

from __future__ import annotations

import re


def flask_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        if "{name}" in path and path.startswith("/model/"):
            path = "/model/{name}.png"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def test_every_route_is_documented_and_nothing_else(client, app):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == flask_routes(app)


def test_documented_schemas_resolve(client):
    doc = client.get("/openapi.json").get_json()
    text = client.get("/openapi.json").get_data(as_text=True)
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref
