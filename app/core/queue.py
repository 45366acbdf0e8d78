"""Celery configuration and the one way the API hands work to workers: a task sent by name.

The API never imports the worker package (nor torch); both sides build their Celery app from
`celery_config` so the broker settings cannot drift apart.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from celery import Celery

from app.core.broker import TRANSPORT as BROKER_TRANSPORT
from app.core.settings import Settings, get_settings

RUN_ROUND_TASK = "suggestlab.run_round"
RUN_SIMULATION_TASK = "suggestlab.run_simulation"
TRAIN_REPRESENTATION_TASK = "suggestlab.train_representation"
BUILD_MAP_TASK = "suggestlab.build_map"
PREPARE_ROUNDS_TASK = "suggestlab.prepare_rounds"
TRAINING_QUEUE = "training"
LIGHT_QUEUE = "light"
# Long jobs that no round may wait behind: representation training and simulations.
BACKGROUND_QUEUE = "background"
SIMULATION_QUEUE = "simulations"
# Every queue a worker may serve: rounds first, then the long background jobs.
QUEUES = (TRAINING_QUEUE, LIGHT_QUEUE, BACKGROUND_QUEUE, SIMULATION_QUEUE)


def embedded_broker_dirs(settings: Settings) -> dict[str, Path]:
    root = settings.data_dir / "broker"
    return {"queue": root / "queue", "processed": root / "processed", "control": root / "control"}


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "task_ignore_result": True,
        # A round is acknowledged only once it has finished, and a worker that dies mid-round
        # puts it back on the queue; the task itself counts attempts in the database.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Seconds a prefork worker waits for the result of a pool child that died before it calls the
        # child lost and puts its round back (Celery's default is 10). Rounds publish no results, and
        # the claim in worker.pipeline waits out the dead child's heartbeat before taking over.
        "worker_lost_wait": 1.0,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": TRAINING_QUEUE,
        "task_routes": {
            RUN_ROUND_TASK: {"queue": TRAINING_QUEUE},
            RUN_SIMULATION_TASK: {"queue": SIMULATION_QUEUE},
            TRAIN_REPRESENTATION_TASK: {"queue": BACKGROUND_QUEUE},
            BUILD_MAP_TASK: {"queue": LIGHT_QUEUE},
            PREPARE_ROUNDS_TASK: {"queue": TRAINING_QUEUE},
        },
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "task_soft_time_limit": settings.round_soft_time_limit,
        "task_time_limit": settings.round_time_limit,
    }
    if settings.embedded_broker:
        dirs = embedded_broker_dirs(settings)
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        # kombu's own filesystem transport can hand a worker a half-written message (app/core/broker.py).
        config["broker_transport"] = BROKER_TRANSPORT
        config["broker_transport_options"] = {
            "data_folder_in": str(dirs["queue"]),
            "data_folder_out": str(dirs["queue"]),
            "processed_folder": str(dirs["processed"]),
            "store_processed": False,
            # kombu's default is ./control in whatever folder the process was started from.
            "control_folder": str(dirs["control"]),
            # The folder is polled; kombu's default of 1 s would add up to a second to every warm
            # round (listing a small local folder five times a second costs nothing).
            "polling_interval": 0.2,
        }
    elif settings.broker_url.startswith("redis"):
        # Longer than the longest round (its hard time limit), or Redis would hand an unacknowledged
        # round to a second worker while the first is still training.
        config["broker_transport_options"] = {"visibility_timeout": settings.round_time_limit + 3600}
    return config


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery = Celery("suggestlab")
    celery.conf.update(celery_config(settings))
    return celery


@lru_cache
def _client() -> Celery:
    return make_celery()


def enqueue_round(round_id: int) -> None:
    _client().send_task(RUN_ROUND_TASK, args=[round_id], queue=TRAINING_QUEUE)


def enqueue_representation(representation_id: int) -> None:
    _client().send_task(TRAIN_REPRESENTATION_TASK, args=[representation_id], queue=BACKGROUND_QUEUE)


def enqueue_simulation(simulation_id: int) -> None:
    _client().send_task(RUN_SIMULATION_TASK, args=[simulation_id], queue=SIMULATION_QUEUE)


def enqueue_prepare_rounds(representation_id: int) -> None:
    """Asks a rounds worker to load a representation that just became ready before a round needs it."""
    _client().send_task(PREPARE_ROUNDS_TASK, args=[representation_id], queue=TRAINING_QUEUE)


def enqueue_map(round_id: int) -> None:
    _client().send_task(BUILD_MAP_TASK, args=[round_id], queue=LIGHT_QUEUE)
