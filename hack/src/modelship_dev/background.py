"""A worker thread used as a context manager: started on enter, stopped on exit.

Traffic generators, the demo's watcher and the benchmarks' clients all need the same
lifecycle; `_run` must return once `_stop` is set (wait on it rather than sleep).
"""

from __future__ import annotations

import threading
from typing import Self


class Background:
    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._starting()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._stopped()

    def _run(self) -> None:
        raise NotImplementedError

    def _starting(self) -> None:
        """Called in the caller's thread just before the worker starts."""

    def _stopped(self) -> None:
        """Called once the worker has returned (or 30 s have passed)."""
