"""What the worker's long jobs (rounds, representations, simulations) share."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("suggestlab.worker")


class JobCancelled(Exception):
    """Raised from a job's progress report once its row no longer says it is running (cancelled by a
    user, or taken over): the job stops without overwriting that status."""


def failure_text(exc: BaseException) -> str:
    """The error a failed job records on its row (bounded: it is shown in the UI)."""
    return f"{type(exc).__name__}: {exc}"[:2000]


class Heartbeat:
    """Calls `beat` every `interval` seconds from a background thread while a job runs, so long steps
    without progress reports (a big VAE epoch, loading a large pool, a worker niced below a busy
    API) never make a live job look like one whose worker died. Only a dead process stops beating."""

    def __init__(self, name: str, beat: Callable[[], None], interval: float) -> None:
        self.name, self.beat, self.interval = name, beat, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a missed beat is harmless; the next one retries
                log.warning("heartbeat for %s failed", self.name, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
