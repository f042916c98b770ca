"""Which loaded version answers a request: the current one, or a rollout's candidate.

A :class:`Serving` is what one process serves at a moment: the current model and, during a
rollout, a candidate with its mode and weight. It is immutable and swapped whole by the
reloader, so a request that read it once sees one consistent rollout to its end.

A canary's share is assigned by a key: the same key always gets the same arm, so a retried
request (same request id) or a client's session (same session id) stays with one version. The
key is hashed with the candidate's version, so each rollout tries its candidate on other
clients. A request without a key gets a random draw.

A request may name the model and a version (V2 over REST and gRPC, V1 by name): the checks of
those names are here, once; ``shown`` is how a protocol quotes a client's string in its message.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from fashion_classifier.artifacts.rollout import CANARY, SHADOW
from fashion_classifier.errors import ModelNotFound
from fashion_classifier.inference.loader import LoadedModel

CURRENT_ARM = "current"
CANDIDATE_ARM = "candidate"
_SCALE = 10_000  # the weight's resolution: 0.01 %


@dataclass(frozen=True, slots=True)
class Choice:
    model: LoadedModel  # the version that answers
    arm: str  # CURRENT_ARM or CANDIDATE_ARM
    shadow: LoadedModel | None = None  # a candidate that also predicts, off the response path


class Serving:
    """Immutable by convention: the reloader builds a new one for every change."""

    __slots__ = ("current", "candidate", "mode", "weight", "_current", "_candidate", "_shadowed", "_threshold", "_salt")

    def __init__(
        self, current: LoadedModel, candidate: LoadedModel | None = None, mode: str | None = None, weight: float = 0.0
    ) -> None:
        self.current = current
        self.candidate = candidate
        self.mode = mode if candidate is not None else None  # CANARY or SHADOW while a candidate is set
        self.weight = weight if self.mode == CANARY else 0.0  # percent of requests the candidate answers
        # The answers are made once here: choose() runs on every request.
        self._current = Choice(current, CURRENT_ARM)
        self._candidate = Choice(candidate, CANDIDATE_ARM) if candidate is not None else None
        self._shadowed = Choice(current, CURRENT_ARM, candidate) if self.mode == SHADOW else None
        self._threshold = round(self.weight * _SCALE / 100)
        self._salt = candidate.version.encode()[:64] if candidate is not None else b""

    @property
    def versions(self) -> list[str]:
        """The versions loaded: current first."""
        return [self.current.version] + ([self.candidate.version] if self.candidate is not None else [])

    def version(self, version: str) -> Choice | None:
        """The arm serving exactly ``version``, or None when it is not loaded."""
        if version == self.current.version:
            return self._shadowed or self._current  # named or not, the current version's answers are shadowed
        if self.candidate is not None and version == self.candidate.version:
            return self._candidate
        return None

    def choose(self, key: str | None = None) -> Choice:
        """The arm for one request (see the module's docstring)."""
        if self.candidate is None:
            return self._current
        if self.mode == SHADOW:
            return self._shadowed
        if self.mode == CANARY and self.in_canary(key):
            return self._candidate
        return self._current

    def in_canary(self, key: str | None) -> bool:
        threshold = self._threshold
        if threshold <= 0:
            return False
        if threshold >= _SCALE:
            return True
        if key is None:
            return random.randrange(_SCALE) < threshold  # noqa: S311 - a traffic split, not a secret
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=self._salt).digest()
        return int.from_bytes(digest, "big") % _SCALE < threshold


def check_model_name(model_name: str, served: str, shown: Callable[[str], str] = repr) -> None:
    """Refuse a request that names a model other than the one this server serves."""
    if model_name != served:
        raise ModelNotFound(f"model {shown(model_name)} not found; this server serves {served!r}")


def not_loaded(model_name: str, version: str, shown: Callable[[str], str] = repr) -> ModelNotFound:
    return ModelNotFound(f"version {shown(version)} of model {shown(model_name)} is not loaded")


def choose_version(
    serving: Serving, model_name: str, version: str | None, key: str | None, shown: Callable[[str], str] = repr
) -> Choice:
    """The arm serving exactly ``version`` when the request names one, else the arm for ``key``."""
    if not version:
        return serving.choose(key)
    choice = serving.version(version)
    if choice is None:
        raise not_loaded(model_name, version, shown)
    return choice
