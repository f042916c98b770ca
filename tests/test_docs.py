"""The README and docs/ stay true to the tree: every relative link resolves, every FC_* variable exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "k8s" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Markdown links and images: [text](target); targets with a scheme or only an anchor are not files.
LINK = re.compile(r"\]\(([^)\s]+)\)")
VARIABLE = re.compile(r"\bFC_[A-Z0-9_]*[A-Z0-9]\b")
# Where a variable can be read or set: the code, the scripts, the manifests, the tests.
SOURCES = ["src", "scripts", "tests", "bench", "helm", "k8s", "Dockerfile", "Makefile", "skaffold.yaml"]


def _code_text() -> str:
    parts = []
    for name in SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and p.suffix != ".md"]
        parts.extend(p.read_text(errors="ignore") for p in files if "__pycache__" not in p.parts)
    return "\n".join(parts)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (doc.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"


def test_every_variable_the_docs_name_exists_in_the_code():
    code = _code_text()
    named = {v for doc in DOCS for v in VARIABLE.findall(doc.read_text())}
    assert named, "no FC_* variable found in the docs: the pattern is wrong"
    missing = sorted(v for v in named if v not in code)
    assert not missing, f"the docs name variables that nothing reads or sets: {missing}"


def test_the_configuration_table_is_the_one_settings_generates():
    from fashion_classifier.config import Settings

    text = (ROOT / "docs" / "configuration.md").read_text()
    assert Settings.markdown() in text, "run: fashion-classifier config --markdown, and paste it into the page"
