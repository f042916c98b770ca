"""A rollout: an optional candidate version served beside the current one, and its moves.

The store's ``CANDIDATE`` file (JSON, replaced in one rename like ``CURRENT``) names a published
version and how it is tried:

- ``canary``: ``weight`` % of requests are answered by the candidate;
- ``shadow``: the current version answers every request; the candidate predicts it as well,
  off the response path, for comparison only.

Servers that predate the file read only ``CURRENT`` and ignore it. :func:`promote` points
``CURRENT`` at the candidate and then removes the file; a reader between the two steps sees a
candidate equal to the current version, which means no candidate. :func:`withdraw` is one
unlink; :func:`rollback` withdraws the candidate, or, without one, points ``CURRENT`` back at the
version the last promotion replaced. Each move appends a line to ``ROLLOUTS.jsonl``, the store's record of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fashion_classifier.artifacts import store

CANDIDATE = "CANDIDATE"
HISTORY = "ROLLOUTS.jsonl"
LOCK = ".rollout.lock"
CANARY = "canary"
SHADOW = "shadow"
MODES = (CANARY, SHADOW)
# The moves ROLLOUTS.jsonl records: a candidate set, promoted, withdrawn by hand or by the guard, and
# a promotion undone.
AUTO_ROLLBACK = "auto-rollback"
ACTIONS = ("set", "promote", "rollback", AUTO_ROLLBACK, "demote")


@dataclass(frozen=True)
class Candidate:
    version: str
    mode: str  # CANARY or SHADOW
    weight: float  # percent of requests the candidate answers (canary); 0 in shadow mode
    since: str  # when it was set, ISO 8601 UTC

    def describe(self) -> str:
        share = f" at {self.weight:g} %" if self.mode == CANARY else ""
        return f"{self.version} ({self.mode}{share}, since {self.since})"


def check_weight(weight: float) -> float:
    try:
        weight = float(weight)
    except OverflowError:  # a JSON integer too large for a float
        weight = math.inf
    if not 0.0 <= weight <= 100.0:  # also refuses NaN
        raise store.ArtifactError(f"a canary's weight is a percentage in 0-100, not {weight:g}")
    return weight


def _parse(text: str, source: Path) -> Candidate | None:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise store.ArtifactError(f"{source} is not valid JSON: {exc}") from None
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise store.ArtifactError(f"{source} holds {type(raw).__name__}, not an object")
    version, mode, weight = raw.get("version"), raw.get("mode"), raw.get("weight", 0)
    if not isinstance(version, str) or mode not in MODES:
        raise store.ArtifactError(f"{source} needs a version and a mode ({' or '.join(MODES)})")
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise store.ArtifactError(f"{source}: weight {weight!r} is not a number")
    return Candidate(store.validate_version_id(version), mode, check_weight(weight), str(raw.get("since", "")))


def read_candidate(model_dir: Path) -> Candidate | None:
    """The store's candidate, or None. Raises ArtifactError for a file that is not one."""
    path = Path(model_dir) / CANDIDATE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise store.ArtifactError(f"{path} is not UTF-8 text: {exc}") from None
    try:
        return _parse(text, path)
    except ValueError as exc:  # json's limits (an integer of thousands of digits), not a JSONDecodeError
        raise store.ArtifactError(f"{path} is not a candidate: {exc}") from None


def set_candidate(model_dir: Path, version: str, mode: str, weight: float = 0.0) -> Candidate:
    """Make a published version the candidate (replacing any other)."""
    if mode not in MODES:
        raise store.ArtifactError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    with _moving(model_dir):
        if not store.version_path(model_dir, version).is_dir():
            raise store.ArtifactError(f"version {version} is not published in {model_dir}")
        if version == store.current_version(model_dir):
            raise store.ArtifactError(f"version {version} is already the current one")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        candidate = Candidate(version, mode, check_weight(weight) if mode == CANARY else 0.0, now)
        store.replace_file(model_dir, CANDIDATE, json.dumps(asdict(candidate)) + "\n")
        _record(model_dir, "set", candidate)
        return candidate


def promote(model_dir: Path) -> Candidate:
    """Make the candidate the current version; returns the candidate it was."""
    with _moving(model_dir):
        candidate = _required(model_dir)
        previous = store.current_version(model_dir)
        # Recorded first: a crash after CURRENT moved still lets rollback find what it replaced.
        _record(model_dir, "promote", candidate, previous=previous)
        store.set_current(model_dir, candidate.version)
        _remove(model_dir)
        return candidate


def withdraw(
    model_dir: Path, reason: str = "rollback", why: str | None = None, expected: Candidate | None = None
) -> Candidate:
    """Stop serving the candidate (only if it is still ``expected``, when given); the current
    version answers everything again."""
    with _moving(model_dir):
        candidate = _required(model_dir)
        if expected is not None and candidate != expected:
            raise store.ArtifactError(f"the candidate changed to {candidate.describe()}; it was not withdrawn")
        _remove(model_dir)
        _record(model_dir, reason, candidate, why=why)
        return candidate


def rollback(model_dir: Path) -> str:
    """Withdraw the candidate; without one, undo the last promotion. Says what it did."""
    with _moving(model_dir):
        current = store.current_version(model_dir)
        candidate = read_candidate(model_dir)
        if candidate is not None and candidate.version != current:
            _remove(model_dir)
            _record(model_dir, "rollback", candidate)
            return f"withdrew {candidate.version}: the current version answers every request"
        if candidate is not None:  # a promotion cut short before it removed the file: it was promoted
            _remove(model_dir)
        promoted = next((m for m in reversed(history(model_dir)) if m.get("action") == "promote"), None)
        if promoted is None or promoted.get("version") != current or not promoted.get("previous"):
            raise store.ArtifactError(f"no candidate is set in {model_dir}, and {current} was not promoted from one")
        previous = str(promoted["previous"])
        store.set_current(model_dir, previous)
        _record(
            model_dir,
            "demote",
            Candidate(current, str(promoted.get("mode")), 0.0, str(promoted.get("since"))),
            previous=previous,
        )
        return f"{previous} is the current version again; {current} is no longer served"


def history(model_dir: Path, limit: int | None = 20) -> list[dict[str, Any]]:
    """The store's last ``limit`` rollout moves (None: all), oldest first."""
    try:
        lines = (Path(model_dir) / HISTORY).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    moves = []
    for line in lines[-limit if limit else 0 :]:
        try:
            move = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: the others still stand
        if isinstance(move, dict):
            moves.append(move)
    return moves


def count_moves(model_dir: Path) -> dict[str, int]:
    """How many of each move the store has recorded (every action in :data:`ACTIONS`, 0 if none)."""
    counts = dict.fromkeys(ACTIONS, 0)
    for move in history(model_dir, limit=None):
        action = move.get("action")
        if isinstance(action, str) and action in counts:
            counts[action] += 1
    return counts


def last_withdrawal_by_guard(model_dir: Path, version: str) -> dict[str, Any] | None:
    """The guard's withdrawal of ``version``, if that is the last move recorded for it (a version
    set again by hand since is not withdrawn)."""
    last = next((move for move in reversed(history(model_dir, limit=None)) if move.get("version") == version), None)
    return last if last is not None and last.get("action") == AUTO_ROLLBACK else None


def _required(model_dir: Path) -> Candidate:
    candidate = read_candidate(model_dir)
    if candidate is None:
        raise store.ArtifactError(f"no candidate is set in {model_dir}")
    return candidate


@contextlib.contextmanager
def _moving(model_dir: Path) -> Iterator[None]:
    """One move at a time on a store (an operator's command and the guard may meet)."""
    with open(Path(model_dir) / LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _remove(model_dir: Path) -> None:
    Path(model_dir, CANDIDATE).unlink(missing_ok=True)
    store.fsync_dir(Path(model_dir))


def _record(model_dir: Path, action: str, candidate: Candidate, **extra: str | None) -> None:
    line = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "action": action, **asdict(candidate), **extra}
    with open(Path(model_dir) / HISTORY, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
