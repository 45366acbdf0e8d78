"""The background job that learns a project's representation (SimCLR beside k-means patch features)
from every pool image.

It never runs on a round's critical path: rounds use the newest ready representation and request a
new one when the pool has changed by more than the project's refresh fraction.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import numpy as np
from sqlalchemy import select, update

from app.core.db import session_scope, utcnow
from app.core.settings import Settings
from app.images.orm import Image, Split
from app.projects.orm import Project
from app.projects.schemas import ProjectSettings
from app.representations.orm import Representation
from app.storage import Storage, get_storage
from worker.data import pixel_cache
from worker.jobs import Heartbeat, JobCancelled, failure_text

log = logging.getLogger("suggestlab.worker")


def encoder_setting(device_type: str, project: ProjectSettings, pool_images: int) -> dict[str, Any]:
    from models.representation import setting_for

    return setting_for(
        device_type, project.representation_epochs, pool_images=pool_images, image_size=project.image_size
    )


def _key(project_id: int, representation_id: int, name: str) -> str:
    return f"projects/{project_id}/representations/{representation_id}/{name}"


def save_encoder(storage: Storage, key: str, encoder: Any) -> None:
    import torch

    from models.representation import encoder_config

    buf = io.BytesIO()
    torch.save(
        {"config": encoder_config(encoder), "state_dict": {k: v.cpu() for k, v in encoder.state_dict().items()}}, buf
    )
    storage.put(key, buf.getvalue())


def load_encoder(storage: Storage, key: str, device: Any) -> Any:
    import torch

    from models.representation import build_encoder

    payload = torch.load(io.BytesIO(storage.get(key)), map_location=device, weights_only=True)
    encoder = build_encoder(payload["config"]).to(device)
    encoder.load_state_dict(payload["state_dict"])
    encoder.eval()
    return encoder


def save_features(storage: Storage, key: str, ids: np.ndarray, features: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, ids=ids.astype(np.int64), features=features.astype(np.float32))
    storage.put(key, buf.getvalue())


def load_features(storage: Storage, key: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(storage.get(key))) as data:
        return data["ids"], data["features"]


def representation_heartbeat(representation_id: int, settings: Settings) -> Heartbeat:
    """Keeps a training row's heartbeat fresh while its job runs, however long a step takes."""

    def beat() -> None:
        with session_scope(settings) as session:
            session.execute(
                update(Representation)
                .where(Representation.id == representation_id, Representation.status == "training")
                .values(heartbeat_at=utcnow())
            )

    return Heartbeat(f"representation-{representation_id}", beat, settings.round_heartbeat_seconds)


def wait_for_uploads_to_settle(representation_id: int, settings: Settings) -> bool:
    """Holds a queued job while its project's pool is still arriving: until no pool image has come in
    for `representation_settle_seconds`, and at most `representation_settle_max_seconds`. Without it a
    dataset uploaded as several requests (zips in a loop) was learned from its first request alone,
    and the rest needed a second training once a round saw the pool had changed. False when the job
    was cancelled meanwhile. A job picked up again after its worker died starts at once."""
    settle, give_up = settings.representation_settle_seconds, settings.representation_settle_max_seconds
    started = time.monotonic()
    said = False
    while True:
        with session_scope(settings) as session:
            row = session.get(Representation, representation_id)
            if row is None or row.status not in ("queued", "training"):
                return False
            if row.status == "training":
                return True
            newest = session.scalar(
                select(Image.uploaded_at)
                .where(Image.project_id == row.project_id, Image.split == Split.pool, Image.synthetic.is_(False))
                .order_by(Image.id.desc())
                .limit(1)
            )
            quiet = settle if newest is None else (utcnow() - newest).total_seconds()
            if quiet >= settle or time.monotonic() - started >= give_up:
                return True
            if not said:
                row.phase, said = "waiting for the upload to finish", True
        time.sleep(min(max(settle - quiet, 0.05), 1.0))


def _prepare_rounds(representation_id: int) -> None:
    """Has a rounds worker load the new representation while the annotators label; never fails the job."""
    from app.core.queue import enqueue_prepare_rounds

    try:
        enqueue_prepare_rounds(representation_id)
    except Exception:
        log.warning("could not ask a rounds worker to prepare representation %s", representation_id, exc_info=True)


def train_representation(representation_id: int, settings: Settings) -> None:
    from models.representation import SimCLR
    from models.training import select_device

    if not wait_for_uploads_to_settle(representation_id, settings):
        return
    with session_scope(settings) as session:
        row = session.get(Representation, representation_id, with_for_update=True)
        if row is None or row.status not in ("queued", "training"):
            return
        project = session.get(Project, row.project_id)
        assert project is not None
        project_settings = ProjectSettings.model_validate(project.settings or {})
        pool = session.execute(
            select(Image.id, Image.storage_key)
            .where(Image.project_id == project.id, Image.split == Split.pool, Image.synthetic.is_(False))
            .order_by(Image.id)
        ).all()
        row.status, row.phase, row.started_at, row.progress = "training", "loading pool", utcnow(), 0.0
        row.heartbeat_at = row.started_at
        row.pool_size = len(pool)
        project_id = project.id
    storage = get_storage(settings)
    last = 0.0

    def report(phase: str, progress: float, *, force: bool = False) -> None:
        nonlocal last
        if not force and time.monotonic() - last < 1.0:
            return
        last = time.monotonic()
        with session_scope(settings) as session:
            result = session.execute(
                update(Representation)
                .where(Representation.id == representation_id, Representation.status == "training")
                .values(phase=phase, progress=round(progress, 4), heartbeat_at=utcnow())
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise JobCancelled

    with representation_heartbeat(representation_id, settings):
        try:
            if len(pool) < 32:
                raise ValueError(f"the pool has {len(pool)} images; a representation needs at least 32")
            cache = pixel_cache(settings.data_dir, project_id, project_settings.image_size, project_settings.channels)
            x = cache.load(storage, [r[1] for r in pool])
            device = select_device(settings.torch_device)
            setting = encoder_setting(device.type, project_settings, len(pool))
            if settings.representation_time_budget_s is not None:
                setting["time_budget_s"] = settings.representation_time_budget_s
            report("training", 0.02, force=True)
            started = time.monotonic()
            model = SimCLR.from_setting(setting, seed=project_id, device=device).fit(
                x, progress=lambda f: report("training", 0.02 + 0.9 * f)
            )
            report("encoding the pool", 0.93, force=True)
            ids = np.asarray([r[0] for r in pool], dtype=np.int64)
            # On a CPU a million images take longer to encode than the training's budget: the bar moves.
            features = model.transform(x, progress=lambda f: report("encoding the pool", 0.93 + 0.06 * f))
            encoder_key = _key(project_id, representation_id, "encoder.pt")
            features_key = _key(project_id, representation_id, "features.npz")
            save_encoder(storage, encoder_key, model.encoder)
            save_features(storage, features_key, ids, features)
            history = model.history
            assert history is not None
            budget = setting.get("time_budget_s")
            metrics = {
                "device": device.type,
                "epochs": history.epochs,
                # Fractional when the time budget stopped an epoch part way (a very large pool).
                "passes": round(history.steps / history.steps_per_epoch, 3),
                "seconds": round(time.monotonic() - started, 1),
                "time_budget_s": None if budget is None else round(budget, 1),
                "loss_first_last": [round(history.losses[0], 4), round(history.losses[-1], 4)],
                "widths": list(setting["widths"]),
                "patches": bool(setting.get("patches", False)),
                # False for a grayscale pool whatever the setting: one channel has one colour axis.
                "patch_colour_axis": bool(getattr(getattr(model.encoder, "patches", None), "colour_axis", False)),
                "precision": "bfloat16" if setting.get("bfloat16") else "float32",
                "feature_dim": int(features.shape[1]),
            }
            with session_scope(settings) as session:
                session.execute(
                    update(Representation)
                    .where(Representation.id == representation_id, Representation.status == "training")
                    .values(
                        status="ready",
                        phase="ready",
                        progress=1.0,
                        metrics=metrics,
                        artifacts={"encoder": encoder_key, "features": features_key},
                        finished_at=utcnow(),
                    )
                )
            _prepare_rounds(representation_id)
        except JobCancelled:
            log.info("representation %s was cancelled", representation_id)
        except Exception as exc:
            log.exception("representation %s failed", representation_id)
            with session_scope(settings) as session:
                session.execute(
                    update(Representation)
                    # Only a job still training fails: a cancelled one keeps its status.
                    .where(Representation.id == representation_id, Representation.status == "training")
                    .values(status="failed", phase="failed", error=failure_text(exc), finished_at=utcnow())
                )
