"""Prediction ids: version-1 UUIDs, unique, time-ordered, and different in every process."""

from __future__ import annotations

import os
import uuid

from fashion_classifier.timeuuid import TimeIds, is_recent


def test_ids_are_unique_time_based_and_increasing():
    ids = TimeIds()
    batch = ids.take(5000) + ids.take(1) + ids.take(300)
    assert len(set(batch)) == len(batch)
    assert all(i.version == 1 and i.variant == uuid.RFC_4122 for i in batch)
    assert [i.time for i in batch] == sorted(i.time for i in batch)
    assert all(is_recent(i, seconds=5) for i in batch[:1] + batch[-1:])
    assert batch[0].node & (1 << 40)  # a random node, marked as such


def test_a_forked_process_draws_new_random_parts(monkeypatch):
    ids = TimeIds()
    first = ids.take(1)[0]
    monkeypatch.setattr(os, "getpid", lambda: -12345)
    second = ids.take(1)[0]
    assert (first.node, first.clock_seq) != (second.node, second.clock_seq)


def test_old_or_random_ids_are_not_recent():
    assert not is_recent(uuid.uuid4(), seconds=10)
    old = uuid.UUID(fields=(0, 0, 0x1000, 0x80, 0, 1))
    assert not is_recent(old, seconds=10)
