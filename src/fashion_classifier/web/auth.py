"""Who may read the prediction log and send feedback: one bearer token, and signed feedback tokens.

With ``FC_API_TOKEN`` or ``FC_API_TOKEN_FILE`` set, the views marked :func:`require_token` (the
prediction history, ``/api/v1/feedback`` and the ``/predictions`` page) answer 401 with
``WWW-Authenticate`` unless the request carries ``Authorization: Bearer <token>``; the token is
compared in constant time. Without either variable they are open (``make run`` on 127.0.0.1).
A token file (a mounted Secret) is re-read when it changes, so the token can be rotated without
a restart.

A browser user has no API token, so the result page carries a feedback token for its one
prediction: id, model version and predicted class, signed and timestamped by ``itsdangerous``
(HMAC-SHA256, keyed by ``HMAC(api token, "feedback-signing")``). The ``/feedback`` form is
accepted with it for one hour, and needs no lookup of the prediction: the token vouches for the
version and class. Rotating the API token invalidates the feedback tokens out there.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import current_app, request
from flask.sansio.blueprints import BlueprintSetupState
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from fashion_classifier.config import ConfigError, Settings
from fashion_classifier.errors import ServiceError

REALM = 'Bearer realm="fashion-classifier"'
FEEDBACK_TOKEN_TTL = 3600  # s a result page's feedback form stays valid
TOKEN_FILE_RECHECK = 1.0  # s between checks of the token file for a new token
MAX_FEEDBACK_TOKEN = 512  # characters; anything longer is refused before it is parsed
_EXTENSION = "fashion_classifier.auth"

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class Unauthorized(ServiceError):
    """No API token, or not the configured one (``errors`` answers with the REALM challenge)."""


class InvalidFeedbackToken(ServiceError):
    """A feedback token that is malformed, expired, or signed for another prediction."""


class ApiToken:
    """The configured token, fixed or read from a file; checks headers and signs feedback."""

    def __init__(self, token: str = "", path: Path | None = None) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None  # the file's (inode, mtime, size) read last
        self._checked = 0.0
        self._lock = threading.Lock()
        self._token = b""
        self._signer: URLSafeTimedSerializer | None = None
        if path is None:
            self._use(token.encode())
        else:
            self._reload(force=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiToken | None:
        """The guard the settings ask for, or None when the routes are open."""
        if settings.api_token and settings.api_token_file:
            raise ConfigError("set FC_API_TOKEN or FC_API_TOKEN_FILE, not both")
        if settings.api_token_file:
            return cls(path=settings.api_token_file)
        if settings.api_token:
            return cls(settings.api_token)
        return None

    def _use(self, token: bytes) -> None:
        if not token:
            raise ConfigError("the API token is empty")
        self._token = token
        key = hmac.new(token, b"feedback-signing", hashlib.sha256).digest()
        self._signer = URLSafeTimedSerializer(key, salt="feedback", signer_kwargs={"digest_method": hashlib.sha256})

    def _reload(self, force: bool = False) -> None:
        """Read the token file if it changed (at most once per TOKEN_FILE_RECHECK seconds).

        A file that vanishes or turns empty later keeps the last token (a Secret volume swaps
        its files in one rename, but a half-written file must not open or lock the API)."""
        now = time.monotonic()
        if not force and now - self._checked < TOKEN_FILE_RECHECK:
            return
        with self._lock:
            if not force and now - self._checked < TOKEN_FILE_RECHECK:
                return
            self._checked = now
            assert self._path is not None
            try:
                st = os.stat(self._path)
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if stamp == self._stamp:
                    return
                token = self._path.read_bytes().strip()
            except OSError as exc:
                if force:
                    raise ConfigError(f"FC_API_TOKEN_FILE={self._path}: {exc.strerror or exc}") from None
                return
            if not token:
                if force:
                    raise ConfigError(f"FC_API_TOKEN_FILE={self._path} is empty")
                return
            self._use(token)
            self._stamp = stamp

    def _current(self) -> tuple[bytes, URLSafeTimedSerializer]:
        if self._path is not None:
            self._reload()
        assert self._signer is not None  # _use ran in __init__
        return self._token, self._signer

    def check(self, authorization: str | None) -> None:
        """Raise :class:`Unauthorized` unless ``authorization`` is ``Bearer <the token>``."""
        if not authorization:
            raise Unauthorized("this endpoint needs the API token: send Authorization: Bearer <token>")
        scheme, _, credentials = authorization.partition(" ")
        token, _ = self._current()
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), token):
            raise Unauthorized("the API token in Authorization: Bearer is not valid")

    def sign_feedback(self, prediction_id: uuid.UUID, version: str, predicted: int) -> str:
        """The feedback token of one prediction, valid for FEEDBACK_TOKEN_TTL seconds."""
        _, signer = self._current()
        return signer.dumps([str(prediction_id), version, predicted])

    def verify_feedback(self, token: str, prediction_id: uuid.UUID) -> tuple[str, int]:
        """(model version, predicted class) a feedback token vouches for; InvalidFeedbackToken if not."""
        if len(token) > MAX_FEEDBACK_TOKEN:
            raise InvalidFeedbackToken("the feedback token is malformed; classify the image again")
        _, signer = self._current()
        try:
            signed_id, version, predicted = signer.loads(token, max_age=FEEDBACK_TOKEN_TTL)
        except SignatureExpired:
            raise InvalidFeedbackToken(
                "the feedback token has expired (after 1 hour); classify the image again"
            ) from None
        except BadSignature:
            raise InvalidFeedbackToken("the feedback token is not valid; classify the image again") from None
        if signed_id != str(prediction_id):
            raise InvalidFeedbackToken("the feedback token is not valid for this prediction; classify the image again")
        return version, predicted


def install(setup: BlueprintSetupState) -> None:
    """Build the app's guard once, when a blueprint using it is registered (a bad token file
    fails the worker's boot, not its first request)."""
    from fashion_classifier.web.state import EXTENSION

    app = setup.app
    if _EXTENSION in app.extensions:
        return
    settings = app.extensions[EXTENSION].settings
    app.extensions[_EXTENSION] = token = ApiToken.from_settings(settings)
    if token is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "no FC_API_TOKEN or FC_API_TOKEN_FILE: the prediction history and feedback are open to "
            "every client that reaches %s",
            settings.host,
        )


def guard() -> ApiToken | None:
    """This app's token, or None when the protected routes are open."""
    return current_app.extensions[_EXTENSION]  # KeyError, not an open door, if never installed


def check_request() -> None:
    """Raise :class:`Unauthorized` unless this request may read what the token protects."""
    token = guard()
    if token is not None:
        token.check(request.headers.get("Authorization"))


def require_token(view: F) -> F:
    """Mark a view as needing the API token (when one is configured)."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_request()
        return view(*args, **kwargs)

    return checked  # type: ignore[return-value]
