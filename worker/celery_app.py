"""The worker's Celery app. Built from the same configuration the API sends tasks with."""

from __future__ import annotations

import importlib
from typing import Any

from celery.signals import worker_process_init

from app.core.db import dispose_engines
from app.core.queue import make_celery

celery_app = make_celery()
celery_app.conf.include = ["worker.tasks"]
PRELOADED = (
    "faiss",
    "torch",
    "models.active",
    "models.latent_index",
    "models.learner",
    "models.representation",
    "models.strategies.registry",
    "models.vae_training",
)


def preload_training_stack() -> None:
    """Imports what every task imports, before Celery forks its pool: a new pool child (the first,
    or one started after a child died mid-round) then begins its task with torch, faiss and the
    models loaded instead of spending 2-3 s of a 2-core CPU on imports. Importing starts no
    OpenMP or torch threads, so the fork stays safe; no tensor work runs in this process."""
    for module in PRELOADED:
        importlib.import_module(module)


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool child must not reuse the parent's database connections.
    dispose_engines()
