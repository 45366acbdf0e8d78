"""What the worker's long jobs (rounds, representations, simulations) share."""

from __future__ import annotations


class JobCancelled(Exception):
    """Raised from a job's progress report once its row no longer says it is running (cancelled by a
    user, or taken over): the job stops without overwriting that status."""


def failure_text(exc: BaseException) -> str:
    """The error a failed job records on its row (bounded: it is shown in the UI)."""
    return f"{type(exc).__name__}: {exc}"[:2000]
