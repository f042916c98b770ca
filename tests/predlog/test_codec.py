from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from fashion_classifier import timeuuid
from fashion_classifier.predlog.base import InvalidPageState
from fashion_classifier.predlog.codec import (
    MAX_FILENAME_CHARS,
    Feedback,
    day_of,
    day_of_id,
    decode_signed_token,
    decode_token,
    encode_signed_token,
    encode_token,
    item_from_json,
    item_to_json,
    limit_record,
    token_key,
)

from .conftest import make_record


def test_record_survives_a_json_line_round_trip():
    rec = make_record(3, filename='a"b\'c\n\u2028../日本.png', true_label=4)
    line = item_to_json(rec)
    assert "\n" not in line and "\u2028" not in line
    assert item_from_json(line) == rec
    assert item_from_json(line).true_label == 4


def test_feedback_round_trip():
    fb = Feedback(uuid.uuid1(), 7, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert item_from_json(item_to_json(fb)) == fb


def test_day_comes_from_the_timeuuid():
    moment = datetime(2026, 3, 4, 23, 59, 59, tzinfo=UTC)
    ticks = int((moment - datetime(1582, 10, 15, tzinfo=UTC)).total_seconds() * 10_000_000)
    pid = uuid.UUID(fields=(ticks & 0xFFFFFFFF, (ticks >> 32) & 0xFFFF, (ticks >> 48) | 0x1000, 0x80, 0, 1))
    assert pid.version == 1
    assert timeuuid.moment(pid) == moment
    assert day_of_id(pid) == date(2026, 3, 4)
    # created_at a moment later (next day) does not move the row away from its id's day
    rec = make_record(id=pid, created_at=datetime(2026, 3, 5, 0, 0, 0, 1, tzinfo=UTC))
    assert day_of(rec) == date(2026, 3, 4)


def test_random_uuid_has_no_day():
    assert day_of_id(uuid.uuid4()) is None


def test_long_filenames_are_cut_and_marked():
    short = make_record(filename="x" * 10_240)
    assert limit_record(short) is short
    cut = limit_record(make_record(filename="y" * (MAX_FILENAME_CHARS + 5)))
    assert len(cut.filename) == MAX_FILENAME_CHARS and cut.filename.endswith("[truncated]")


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
