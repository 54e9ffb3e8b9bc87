"""Says when the event loop stops turning. A thread posts a beat to the loop every second;
when a beat waits longer than the stall limit, it logs the loop thread's stack (a blocking
call there stops every reconcile, watch and /healthz at once, and would otherwise leave no
trace), counts it, and logs again when the loop turns."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)


class LoopWatchdog:
    def __init__(self, loop: asyncio.AbstractEventLoop, loop_thread: int, stall_s: float,
                 on_stall: Callable[[], None] = lambda: None, interval_s: float = 1.0) -> None:
        self.loop, self.loop_thread = loop, loop_thread
        self.stall_s, self.interval_s, self.on_stall = stall_s, interval_s, on_stall
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def stack(self) -> str:
        frame = sys._current_frames().get(self.loop_thread)
        return "".join(traceback.format_stack(frame)) if frame is not None else "(gone)"

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            beat, posted = threading.Event(), time.monotonic()
            try:
                self.loop.call_soon_threadsafe(beat.set)
            except RuntimeError:  # the loop is closed: the operator is exiting
                return
            if beat.wait(self.stall_s):
                continue
            self.on_stall()
            log.error("the event loop has not turned for %.0fs; it is running:\n%s",
                      self.stall_s, self.stack())
            while not beat.wait(self.interval_s):
                if self._stop.is_set():
                    return
            log.warning("the event loop turned again after %.1fs", time.monotonic() - posted)
