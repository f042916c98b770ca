"""The lock files in requirements/ (scripts/lock) match pyproject.toml and are what is installed,
and the dependencies whose internals the code uses are pinned to the release series tested here.

The shape of each internal is tested beside the code that uses it:
- cassandra-driver ``BatchStatement._statements_and_parameters``: tests/predlog/test_cassandra_sink.py
- prometheus-client ``Histogram`` buckets: tests/web/test_metrics_endpoint.py
- gunicorn's worker and HTTP parser: tests/server/test_keepalive_worker.py
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PYTHONS = ("3.11", "3.12", "3.13")
INTERNALS = ("cassandra-driver", "prometheus-client", "gunicorn")
# A requirement line of a lock: `name==version [; marker] \`, then its `--hash=sha256:...` lines.
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(?: ; (.+?))? \\$")


def _environment(python: str) -> dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_machine": "x86_64",
    }


def _lock(name: str) -> list[tuple[str, Version, Marker | None, list[str]]]:
    """The pins of requirements/<name>.txt: (name, version, marker, hashes). Every line is a pin, a
    hash of the pin above it, or a comment: anything else fails, so nothing is skipped unseen."""
    pins = []
    for line in (ROOT / "requirements" / f"{name}.txt").read_text().splitlines():
        if match := PIN.match(line):
            marker = Marker(match[3]) if match[3] else None
            pins.append((canonicalize_name(match[1]), Version(match[2]), marker, []))
        elif line.strip().startswith("--hash=sha256:"):
            pins[-1][3].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f"{name}.txt: unexpected line {line!r}"
    return pins


def _pins_for(name: str, python: str) -> dict[str, Version]:
    env = _environment(python)
    pins: dict[str, Version] = {}
    for package, version, marker, _ in _lock(name):
        if marker is None or marker.evaluate(env):
            assert package not in pins, f"{name}.txt pins {package} twice for Python {python}"
            pins[package] = version
    return pins


def _inputs(name: str) -> list[Requirement]:
    deps = [Requirement(d) for d in PROJECT["project"]["dependencies"]]
    extras = PROJECT["project"]["optional-dependencies"]
    if name == "dev":
        return deps + [Requirement(d) for d in extras["train"] + extras["test"] + extras["cluster"]]
    if name == "train":
        return deps + [Requirement(d) for d in extras["train"] + extras["cluster"]]
    if name == "serve":
        return deps
    if name == "build":
        return [Requirement(d) for d in PROJECT["build-system"]["requires"] + ["pip"]]
    return [
        Requirement(line)
        for line in (ROOT / "requirements" / "platform.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


LOCKS = ("dev", "serve", "train", "build", "platform")


@pytest.mark.parametrize("name", LOCKS)
def test_every_pin_carries_sha256_hashes(name):
    pins = _lock(name)
    assert pins
    unhashed = [package for package, _, _, hashes in pins if not hashes]
    assert not unhashed, f"requirements/{name}.txt: no hash for {unhashed}"
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for *_, hashes in pins for h in hashes)


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("name", LOCKS)
def test_the_lock_satisfies_what_it_is_made_from(name, python):
    """A requirement edited in pyproject.toml without `scripts/lock` fails here."""
    pins = _pins_for(name, python)
    unmet = [
        str(req)
        for req in _inputs(name)
        if not req.specifier.contains(pins.get(canonicalize_name(req.name), Version("0.dev0")))
    ]
    assert not unmet, f"requirements/{name}.txt does not satisfy {unmet}: run scripts/lock"


# What the serving image may run at another version than the tests: TensorFlow holds ml-dtypes
# below 0.6 in dev and train, whose wheel is many times the size of the current one. scripts/lock says why.
SERVE_OWN = {"ml-dtypes"}


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("name", ["serve", "train", "build"])
def test_the_images_run_the_versions_the_tests_run(name, python):
    dev = _pins_for("dev", python)
    pins = _pins_for(name, python)
    assert set(pins) - set(dev) <= {"pip"}  # the installer, which dev.txt leaves to build.txt
    own = SERVE_OWN if name == "serve" else set()
    assert {p: v for p, v in pins.items() if p in dev and dev[p] != v and p not in own} == {}


def test_the_serving_lock_leaves_kubernetes_out():
    assert "kubernetes" not in _pins_for("serve", "3.11")
    assert "tensorflow-cpu" not in _pins_for("serve", "3.11")
    # ...because the serving dependencies leave it to an extra, which the train image installs.
    assert not any(Requirement(d).name == "kubernetes" for d in PROJECT["project"]["dependencies"])
    assert "kubernetes" in _pins_for("train", "3.11")


def test_this_environment_was_installed_from_the_lock():
    """scripts/setup installs from requirements/dev.txt: every pin is what this Python has."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    wrong = {}
    for package, version in _pins_for("dev", python).items():
        try:
            installed = Version(metadata.version(package))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[package] = (str(version), str(installed))
    assert wrong == {}, "pinned vs installed; run scripts/setup"


@pytest.mark.parametrize("package", INTERNALS)
def test_dependencies_used_beyond_their_api_stay_in_one_release_series(package):
    """A new minor release may reshape an internal: upgrading one is a decision, with its test."""
    spec = next(
        SpecifierSet(str(r.specifier))
        for r in map(Requirement, PROJECT["project"]["dependencies"])
        if canonicalize_name(r.name) == package
    )
    lower = min(Version(s.version) for s in spec if s.operator in (">=", "=="))
    assert spec.contains(lower) and not spec.contains(Version(f"{lower.major}.{lower.minor + 1}")), spec
    assert spec.contains(Version(metadata.version(package)))
