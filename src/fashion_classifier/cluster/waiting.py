"""Polling until a condition holds: simpler than watches, and fine at one request a second."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from fashion_classifier.cluster.errors import OperationFailed

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something other than None; OperationFailed after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise OperationFailed(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
