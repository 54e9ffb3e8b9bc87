"""A reconcile pass that never ends is cancelled and said, with where it waited."""

from __future__ import annotations

import asyncio

import pytest

from modelship.handlers import runtime
from modelship.handlers.runtime import PassTimeoutError, bounded_pass


async def _stuck(cancelled: list[bool]) -> float | None:
    try:
        await asyncio.Event().wait()  # nothing ever sets it
    except asyncio.CancelledError:
        cancelled.append(True)
        raise
    return None


async def _quick() -> float | None:
    await asyncio.sleep(0)
    return 3.0


def test_a_stuck_pass_is_cancelled_naming_the_await_it_was_stuck_in() -> None:
    cancelled: list[bool] = []

    async def main() -> None:
        with pytest.raises(PassTimeoutError) as err:
            await bounded_pass(_stuck(cancelled), limit_s=0.05)
        assert "within 0.05s" in str(err.value)
        assert "_stuck (test_bounded_pass.py:" in str(err.value)

    asyncio.run(main())
    assert cancelled == [True]


def test_a_pass_that_ends_gives_its_result_and_its_errors() -> None:
    async def failing() -> float | None:
        raise ValueError("boom")

    async def main() -> None:
        assert await bounded_pass(_quick(), limit_s=5) == 3.0
        with pytest.raises(ValueError, match="boom"):
            await bounded_pass(failing(), limit_s=5)

    asyncio.run(main())


def test_a_pass_that_ignores_its_cancellation_is_left_behind_not_waited_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "CANCEL_GRACE_S", 0.05)
    deaf = [True]

    async def ignores_cancellation() -> float | None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not deaf[0]:
                    raise

    async def main() -> None:
        with pytest.raises(PassTimeoutError, match=r"did not stop within 0\.05s of being "
                                                   "cancelled and was left behind"):
            await asyncio.wait_for(bounded_pass(ignores_cancellation(), limit_s=0.05),
                                   timeout=5)
        (left,) = asyncio.all_tasks() - {asyncio.current_task()}
        assert not left.done()  # still running, and nobody waits on it
        deaf[0] = False
        left.cancel()
        with pytest.raises(asyncio.CancelledError):
            await left

    asyncio.run(main())
