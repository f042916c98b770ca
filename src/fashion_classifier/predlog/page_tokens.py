"""``page_state`` tokens: a page's position as opaque URL-safe text, plain or signed.

SQLite issues plain tokens (its reader is the only one); Cassandra signs them, so a client can
only hand back a position this service gave it. Anything that is not a token of the expected kind
raises :class:`InvalidPageState`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from fashion_classifier.predlog.base import InvalidPageState

_MAC_BYTES = 16


def encode_token(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    """The payload of a page_state token; InvalidPageState for anything else."""
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        raise InvalidPageState("page_state is not a token issued by this service") from None
    if not isinstance(payload, dict):
        raise InvalidPageState("page_state is not a token issued by this service")
    return payload


def token_key(*secrets: str) -> bytes:
    """The HMAC key of signed page tokens, derived from the deployment's secrets."""
    return hashlib.sha256("\0".join(("fashion-classifier page token", *secrets)).encode()).digest()


def encode_signed_token(payload: dict[str, Any], key: bytes) -> str:
    """A page token a client cannot alter: the payload with an HMAC-SHA256 tag (16 bytes)."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    tag = hmac.new(key, raw, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(tag + raw).decode().rstrip("=")


def decode_signed_token(token: str, key: bytes) -> dict[str, Any]:
    """The payload of a token from :func:`encode_signed_token`; InvalidPageState for anything else."""
    try:
        data = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode("ascii"))
    except (ValueError, UnicodeError):
        raise InvalidPageState("page_state is not a token issued by this service") from None
    tag, raw = data[:_MAC_BYTES], data[_MAC_BYTES:]
    if not hmac.compare_digest(tag, hmac.new(key, raw, hashlib.sha256).digest()[:_MAC_BYTES]):
        raise InvalidPageState("page_state is not a token issued by this service")
    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise InvalidPageState("page_state is not a token issued by this service")
    return payload
