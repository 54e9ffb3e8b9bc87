"""One bounded poll for the benchmarks and tools: check until truthy, or time out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Call `check` every `interval` seconds until it returns something truthy (returned);
    TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
