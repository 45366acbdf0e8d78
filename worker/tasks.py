"""Thin Celery tasks: ids in, the work is in worker.pipeline."""

from __future__ import annotations

from app.core.queue import RUN_ROUND_TASK
from app.core.settings import get_settings
from worker import pipeline
from worker.celery_app import celery_app


@celery_app.task(name=RUN_ROUND_TASK, acks_late=True, reject_on_worker_lost=True)
def run_round(round_id: int) -> None:
    pipeline.run_round(round_id, get_settings())
