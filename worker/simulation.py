"""The REST simulation job: the project's labelled pool becomes an oracle for `models.simulate`."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select, update

from app.core.db import session_scope, utcnow
from app.core.settings import Settings
from app.images.orm import Image, Split
from app.projects.orm import Project
from app.projects.schemas import ProjectSettings
from app.representations import service as representations
from app.simulations.orm import Simulation
from app.storage import Storage, get_storage
from worker.data import load_arrays
from worker.jobs import JobCancelled, failure_text

if TYPE_CHECKING:
    from models.simulate import GivenRepresentation

log = logging.getLogger("suggestlab.worker")


def run_simulation(simulation_id: int, settings: Settings) -> None:
    from models.simulate import SimulationConfig, SimulationData, run_simulation, split, summarise, write_results
    from models.simulate import full_pool_accuracy as full_accuracy

    with session_scope(settings) as session:
        sim = session.get(Simulation, simulation_id)
        if sim is None or sim.status not in ("queued", "running"):
            return
        sim.status, sim.started_at, sim.progress = "running", utcnow(), 0.0
        project = session.get(Project, sim.project_id)
        assert project is not None
        params = dict(sim.params)
        classes = list(project.classes)
        project_settings = ProjectSettings.model_validate(project.settings or {})
        rows = session.execute(
            select(Image.id, Image.storage_key, Image.ground_truth).where(
                Image.project_id == project.id,
                Image.split == Split.pool,
                Image.synthetic.is_(False),
                Image.ground_truth.in_(classes),
            )
        ).all()
    storage = get_storage(settings)
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last < 1 and done < total:
            return
        last = time.monotonic()
        with session_scope(settings) as session:
            updated = session.execute(
                update(Simulation)
                .where(Simulation.id == simulation_id, Simulation.status == "running")
                .values(progress=done / total)
            )
        if not updated.rowcount:  # type: ignore[attr-defined]
            raise JobCancelled

    try:
        x = load_arrays(storage, [r[1] for r in rows], project_settings.image_size, project_settings.channels)
        y = np.asarray([classes.index(r[2]) for r in rows], dtype=np.int64)
        pool_x, pool_y, test_x, test_y = split(x, y, 0.2)
        learner = "cnn" if project_settings.representation == "none" else "simclr"
        given: GivenRepresentation | None = None
        representation: dict[str, Any] | None = None  # None: the CNN learner reads no representation
        if learner == "simclr":
            ids = np.asarray([r[0] for r in rows], dtype=np.int64)
            given, representation = _project_representation(project.id, ids, x, y, storage, settings)
        data = SimulationData(project.name, pool_x, pool_y, test_x, test_y, classes, given=given)
        config = SimulationConfig(
            strategies=params["strategies"],
            initial=params["initial"],
            batch=params["batch"],
            rounds=params["rounds"],
            seeds=params["seeds"],
            params=params.get("params", {}),
            vae_epochs=project_settings.vae_epochs,
            latent_dim=project_settings.latent_dim,
            representation_epochs=project_settings.representation_epochs,
            # The curves measure what the project's rounds would do: a project that turned
            # representations off learns with a CNN on its labels and selects among VAE codes.
            learner=learner,
            fine_tune=project_settings.fine_tune,
        )
        results = run_simulation(data, config, progress=progress)
        full = float(np.mean(full_accuracy(data, range(1), config)))
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_results(results, Path(tmp), f"{project.name}: simulated", full)
            files = {}
            for path in paths.values():
                key = f"projects/{project.id}/simulations/{simulation_id}/{path.name}"
                storage.put(key, path.read_bytes())
                files[path.name] = key
        summary = json.loads(
            json.dumps({**summarise(results, full), "learner": config.learner, "representation": representation})
        )
        with session_scope(settings) as session:
            session.execute(
                update(Simulation)
                .where(Simulation.id == simulation_id, Simulation.status == "running")
                .values(status="ready", progress=1.0, files=files, summary=summary, finished_at=utcnow())
            )
    except JobCancelled:
        log.info("simulation %s was cancelled", simulation_id)
    except Exception as exc:
        log.exception("simulation %s failed", simulation_id)
        with session_scope(settings) as session:
            session.execute(
                update(Simulation)
                .where(Simulation.id == simulation_id, Simulation.status == "running")
                .values(status="failed", error=failure_text(exc), finished_at=utcnow())
            )


def _project_representation(
    project_id: int, image_ids: np.ndarray, x: np.ndarray, y: np.ndarray, storage: Storage, settings: Settings
) -> tuple[GivenRepresentation | None, dict[str, Any]]:
    """The simulation's images in the project's newest ready representation (`in_representation`), so
    the curves measure the features the project's rounds select in, not a second encoder trained with
    other epochs (a project's own is cut by the worker's time budget; a simulation's is not). None,
    and a note of what the simulation learns instead, when the project has no ready representation."""
    with session_scope(settings) as session:
        ready = representations.latest_ready(session, project_id=project_id)
        if ready is None:
            return None, {"kind": "learned for this simulation", "why": "the project has no ready representation"}
        representation_id, artifacts = ready.id, dict(ready.artifacts)
    given, encoded = in_representation(artifacts, image_ids, x, y, storage)
    return given, {"kind": "project", "id": representation_id, "encoded_now": encoded}


def in_representation(
    artifacts: dict[str, str], image_ids: np.ndarray, x: np.ndarray, y: np.ndarray, storage: Storage
) -> tuple[GivenRepresentation, int]:
    """The images' rows in a stored representation (its `encoder` and `features` artifacts), split into
    pool and test exactly as `models.simulate.split` splits the pixels, and how many images were
    encoded because the representation has no row for them (uploaded after it was learned)."""
    from models.representation import JointEncoder, encode
    from models.simulate import GivenRepresentation, split
    from models.training import select_device
    from worker.pipeline import known_then_encoded
    from worker.representation import load_encoder, load_features

    encoder = load_encoder(storage, artifacts["encoder"], select_device())
    rows, encoded, _ = known_then_encoded(
        image_ids,
        [lambda: load_features(storage, artifacts["features"])],
        lambda positions: encode(encoder, x[positions]),
    )
    pool, _, test, _ = split(rows, y, 0.2)
    blocks = [encoder.conv.out_dim, encoder.patches.out_dim] if isinstance(encoder, JointEncoder) else None
    return GivenRepresentation(pool=pool, test=test, encoder=encoder, blocks=blocks), int(encoded)
