from __future__ import annotations

import pytest

from fashion_classifier.predlog.base import InvalidPageState
from fashion_classifier.predlog.page_tokens import (
    decode_signed_token,
    decode_token,
    encode_signed_token,
    encode_token,
    token_key,
)


@pytest.mark.parametrize("token", ["", "%%%", "bm90IGpzb24", encode_token({"a": 1})[:-3] + "!!", "WzFd"])
def test_bad_tokens_are_rejected_or_decoded_to_something_checkable(token):
    try:
        payload = decode_token(token)
    except InvalidPageState:
        return
    assert isinstance(payload, dict)


def test_signed_tokens_round_trip_and_refuse_any_change():
    key = token_key("api-token", "salt", "ks")
    token = encode_signed_token({"d": "2026-03-04", "before": "ab" * 16}, key)
    assert decode_signed_token(token, key) == {"d": "2026-03-04", "before": "ab" * 16}
    for bad in (
        token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1],  # a changed byte
        encode_token({"d": "2026-03-04", "before": "ab" * 16}),  # unsigned
        "",
        "%%%",
    ):
        with pytest.raises(InvalidPageState):
            decode_signed_token(bad, key)
    with pytest.raises(InvalidPageState):
        decode_signed_token(token, token_key("another-token", "salt", "ks"))
