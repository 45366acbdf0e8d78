"""The worker's Celery app. Built from the same configuration the API sends tasks with."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from app.core.db import dispose_engines
from app.core.queue import make_celery

celery_app = make_celery()
celery_app.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool child must not reuse the parent's database connections.
    dispose_engines()
