"""Thin Celery tasks: ids in, the work is in worker.pipeline."""

from __future__ import annotations

from app.core.queue import (
    BUILD_MAP_TASK,
    PREPARE_ROUNDS_TASK,
    RUN_ROUND_TASK,
    RUN_SIMULATION_TASK,
    TRAIN_REPRESENTATION_TASK,
)
from app.core.settings import get_settings
from worker import maps, pipeline, representation, simulation
from worker.celery_app import celery_app


@celery_app.task(name=RUN_ROUND_TASK, acks_late=True, reject_on_worker_lost=True)
def run_round(round_id: int) -> None:
    pipeline.run_round(round_id, get_settings())


@celery_app.task(name=RUN_SIMULATION_TASK, acks_late=True, reject_on_worker_lost=True)
def run_simulation(simulation_id: int) -> None:
    simulation.run_simulation(simulation_id, get_settings())


@celery_app.task(name=TRAIN_REPRESENTATION_TASK, acks_late=True, reject_on_worker_lost=True)
def train_representation(representation_id: int) -> None:
    representation.train_representation(representation_id, get_settings())


@celery_app.task(name=BUILD_MAP_TASK, acks_late=True, reject_on_worker_lost=True)
def build_map(round_id: int) -> None:
    maps.build_map(round_id, get_settings())


@celery_app.task(name=PREPARE_ROUNDS_TASK, acks_late=True, reject_on_worker_lost=True)
def prepare_rounds(representation_id: int) -> None:
    pipeline.prepare_rounds(representation_id, get_settings())
