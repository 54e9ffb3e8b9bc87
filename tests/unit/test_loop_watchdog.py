"""A blocked event loop is said, with the stack that blocks it, and counted once per stall."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from modelship.adapters.loop_watchdog import LoopWatchdog


def blocking_call() -> None:
    time.sleep(0.6)  # a synchronous call inside a coroutine: nothing else runs meanwhile


def test_a_blocked_loop_is_logged_with_its_stack_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    stalls: list[int] = []

    async def main() -> None:
        dog = LoopWatchdog(asyncio.get_running_loop(), threading.get_ident(), stall_s=0.2,
                           on_stall=lambda: stalls.append(1), interval_s=0.05)
        dog.start()
        try:
            await asyncio.sleep(0.3)  # turning: no stall
            assert stalls == []
            blocking_call()
            await asyncio.sleep(0.2)
        finally:
            dog.stop()

    with caplog.at_level(logging.WARNING, logger="modelship.adapters.loop_watchdog"):
        asyncio.run(main())
    assert stalls == [1]
    (stalled, turned) = [r.getMessage() for r in caplog.records]
    assert "has not turned for 0s" in stalled and "in blocking_call" in stalled
    assert "time.sleep(0.6)" in stalled
    assert turned.startswith("the event loop turned again after 0.")
