"""Turns `helm template` output into the generated part of the kustomize base (scripts/render-manifests).

usage: kustomize_base.py RENDERED.yaml OUTDIR

One file per chart template, holding its objects as Helm rendered them (comments kept), minus what
only Helm needs: the random Secrets (the base's Secrets Job creates them at run time), each
object's namespace (the base's kustomization sets it), the labels Helm and the kustomization set
themselves, Helm's hook and resource-policy annotations, and the pod template's config checksum.
Lines are removed from the text, never re-serialised; each object is then checked against the
same removal done on its parsed form, so an edit that missed or overshot fails here.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

# Secrets with random values: Helm generates them; kustomize cannot (k8s/base/secrets-job.yaml).
DROPPED_KINDS = {"Secret"}
# Set by k8s/base/kustomization.yaml (`labels`), or Helm's alone.
DROPPED_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
}
# Helm's bookkeeping, by where it sits: hooks and keep-on-uninstall on the object, and on the pod
# template the checksum that rolls the pods when the ConfigMap changes (kustomize edits no pods).
DROPPED = {
    ("metadata",): re.compile(r"namespace$"),
    ("metadata", "annotations"): re.compile(r"helm\.sh/"),
    ("spec", "template", "metadata", "annotations"): re.compile(r"checksum/config$"),
}
SOURCE = re.compile(r"^# Source: [^/]+/templates/(.+\.yaml)$")
# yamllint skips the chart's templates (.yamllint.yaml), and so their renderings: Helm's whitespace
# (indentation of included blocks, trailing spaces) is not what a person would write.
HEADER = """\
# Rendered from helm/fashion-classifier/templates/{template} (default values) by
# scripts/render-manifests: edit the chart and run that script, never this file.
# yamllint disable
"""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _without_keys(lines: list[str], drop: Callable[[tuple[str, ...], str], bool]) -> list[str]:
    """The lines without each mapping key that drop(path, key) names (with its value's lines and
    the comments just above it), and without a mapping left empty by that; paths are tuples of
    the keys above a line, e.g. ("metadata", "labels")."""
    out: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings above the current line
    skip_below: int | None = None
    for line in lines:
        stripped = line.strip()
        if skip_below is not None:
            if not stripped or _indent(line) > skip_below:
                continue
            skip_below = None
        if not stripped or stripped.startswith("#"):
            out.append(line)
            continue
        indent = _indent(line)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        match = re.match(r"^\s*([^\s:#][^:]*?):(\s|$)", line)
        if match and not stripped.startswith("- "):
            key = match[1].strip("\"'")
            if drop(tuple(k for _, k in stack), key):
                while out and out[-1].strip().startswith("#") and _indent(out[-1]) == indent:
                    out.pop()  # the key's own comment
                skip_below = indent
                continue
            stack.append((indent, key))
        out.append(line)
    return _without_empty_mappings(out)


def _without_empty_mappings(lines: list[str]) -> list[str]:
    """Drops `labels:`/`annotations:` lines whose entries were all removed."""
    out: list[str] = []
    for i, line in enumerate(lines):
        if re.match(r"^\s*(labels|annotations):\s*$", line):
            rest = [ln for ln in lines[i + 1 :] if ln.strip() and not ln.strip().startswith("#")]
            if not rest or _indent(rest[0]) <= _indent(line):
                continue
        out.append(line)
    return out


def _drop(path: tuple[str, ...], key: str) -> bool:
    if path == ("metadata", "labels"):
        return key in DROPPED_LABELS
    return path in DROPPED and bool(DROPPED[path].match(key))


def _expected(obj: dict) -> dict:
    """What _without_keys must leave of obj, computed on the parsed object."""
    meta = obj["metadata"]
    for key in DROPPED_LABELS:
        meta.get("labels", {}).pop(key, None)
    for path, pattern in DROPPED.items():
        holder = obj
        for step in path[:-1]:
            holder = holder.get(step) or {}
        mapping = holder.get(path[-1])
        if isinstance(mapping, dict):
            for key in [k for k in mapping if pattern.match(k)]:
                del mapping[key]
            if not mapping:
                del holder[path[-1]]
    if "labels" in meta and not meta["labels"]:
        del meta["labels"]
    return obj


def split(rendered: str) -> dict[str, list[str]]:
    """The kept documents of `helm template` output, by template file name, in Helm's order."""
    files: dict[str, list[str]] = {}
    for doc in re.split(r"^---\s*$", rendered, flags=re.M):
        lines = doc.strip("\n").splitlines()
        if not lines or not (source := SOURCE.match(lines[0])):
            if yaml.safe_load(doc):
                sys.exit(f"kustomize_base: a document without its # Source line:\n{doc[:400]}")
            continue
        obj = yaml.safe_load(doc)
        if obj is None or obj["kind"] in DROPPED_KINDS:
            continue
        kept = _without_keys(lines[1:], _drop)
        text = "\n".join(kept) + "\n"
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if yaml.safe_load(text) != _expected(obj):
            sys.exit(f"kustomize_base: {name}: removing Helm's fields changed more than them")
        files.setdefault(source[1].replace("/", "-"), []).append(text)
    return files


def write(files: dict[str, list[str]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, docs in files.items():
        (out / name).write_text(HEADER.format(template=name) + "---\n".join(docs))
    resources = "".join(f"  - {name}\n" for name in sorted(files))
    (out / "kustomization.yaml").write_text(
        "# Generated by scripts/render-manifests: the Helm chart's objects with default values, which\n"
        "# ../kustomization.yaml completes (namespace, labels, images, Namespace, Secrets Job).\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n{resources}"
    )


if __name__ == "__main__":
    rendered_file, out_dir = sys.argv[1:]
    write(split(Path(rendered_file).read_text()), Path(out_dir))
