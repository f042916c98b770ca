"""The README and docs/ stay true to the tree: every relative link resolves, every FC_* variable exists."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest

from fashion_classifier.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "k8s" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Markdown links and images: [text](target); targets with a scheme are not files.
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
VARIABLE = re.compile(r"\bFC_[A-Z0-9_]*[A-Z0-9]\b")
# Where a variable can be read or set: the code, the scripts, the manifests, the tests.
SOURCES = ["src", "scripts", "tests", "bench", "helm", "k8s", "Dockerfile", "Makefile", "skaffold.yaml"]
# Variables the application reads without a Settings field, each with where and why.
OUTSIDE_SETTINGS = {
    "FC_ACCESS_LOG": "gunicorn's access log, read by server/gunicorn_conf.py",
    "FC_LOG_LEVEL": "gunicorn's and the gRPC process's log level, read where each sets up logging",
}


def _files(name: str) -> list[Path]:
    path = ROOT / name
    if path.is_file():
        return [path]
    return [p for p in path.rglob("*") if p.is_file() and p.suffix != ".md" and "__pycache__" not in p.parts]


def _text_of(names: list[str]) -> str:
    return "\n".join(p.read_text(errors="ignore") for name in names for p in _files(name))


def _slug(title: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, without punctuation, spaces as hyphens."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    """The anchors of a page's headings (not of the comments in its code blocks), repeats numbered."""
    seen: Counter[str] = Counter()
    anchors = set()
    for title in HEADING.findall(FENCE.sub("", doc.read_text())):
        slug = _slug(title)
        anchors.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path) if path else doc
        missing_heading = anchor and file.suffix == ".md" and file.exists() and anchor not in _anchors(file)
        if not file.exists() or missing_heading:
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files or headings: {broken}"


def test_anchors_follow_githubs_rules():
    assert _slug("`make test` and CI") == "make-test-and-ci"
    assert _slug("gRPC (Open Inference Protocol)") == "grpc-open-inference-protocol"
    assert _slug("What is lost in which failure") == "what-is-lost-in-which-failure"


def test_every_variable_the_docs_name_exists_in_the_code():
    code = _text_of(SOURCES)
    named = {v for doc in DOCS for v in VARIABLE.findall(doc.read_text())}
    assert named, "no FC_* variable found in the docs: the pattern is wrong"
    missing = sorted(v for v in named if v not in code)
    assert not missing, f"the docs name variables that nothing reads or sets: {missing}"


def test_every_variable_the_app_reads_is_a_setting():
    """A variable the docs name and src/ mentions is a Settings field; the others belong to scripts and tests."""
    settings = {f.metadata["env"] for f in fields(Settings)}
    app = _text_of(["src"])
    named = {v for doc in DOCS for v in VARIABLE.findall(doc.read_text())}
    stray = sorted(v for v in named if v in app and v not in settings and v not in OUTSIDE_SETTINGS)
    assert not stray, f"the app reads variables that Settings does not declare: {stray}"
    assert not set(OUTSIDE_SETTINGS) & settings, "a variable became a setting: remove it from OUTSIDE_SETTINGS"


def test_the_configuration_table_is_the_one_settings_generates():
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert Settings.markdown() in text, "run: fashion-classifier config --markdown, and paste it into the page"
