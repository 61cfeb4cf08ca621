"""Small helpers shared by the tests."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy and return its value (a bounded wait, not a timing
    assertion); raise ``AssertionError`` naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    value = predicate()
    if value:
        return value
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
