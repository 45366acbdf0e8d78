from __future__ import annotations

import io
from datetime import timedelta
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.annotations import service as annotations
from app.api.deps import CurrentUser, MemberProject, SessionDep, StorageDep
from app.core.db import utcnow
from app.core.queue import enqueue_map
from app.images.orm import Image
from app.projects import service as projects
from app.rounds.orm import Round, Suggestion
from app.storage import Storage, StorageError
from app.users.orm import Role
from models.layout import pca_2d
from models.strategies.params import defaults_for
from models.strategies.registry import SPECS

router = APIRouter(tags=["latent space"])


@router.get("/strategies")
def list_strategies() -> dict[str, Any]:
    """Registered selection strategies: what each one does, and the params a round may give it, with
    their defaults (a round's params may also hold its `seed`)."""
    data = [
        {"name": s.name, "description": s.description, "needs_labels": s.needs_labels, "params": defaults_for(s.name)}
        for s in SPECS.values()
    ]
    return {"data": sorted(data, key=lambda d: d["name"]), "count": len(data)}


# A map job that neither finished nor failed by then (its worker died) is asked for again.
MAP_RETRY = timedelta(minutes=10)
# How far back the map looks for a round that selected in a latent space.
MAP_ROUNDS_BACK = 50


def _load_npz(storage: Storage, key: str | None, *names: str) -> tuple[np.ndarray, ...] | None:
    """The named arrays of a stored .npz; "a|b" takes whichever of a or b the file has."""
    if not key:
        return None
    try:
        with np.load(io.BytesIO(storage.get(key))) as npz:
            return tuple(npz[next((n for n in name.split("|") if n in npz.files), name)] for name in names)
    except (StorageError, OSError, ValueError, KeyError):
        return None


def _request_map(session: Session, round_: Round) -> None:
    """Asks a worker for the round's t-SNE layout unless it is built or was asked for recently.
    A conditional UPDATE, so concurrent viewers enqueue one job between them."""
    now = utcnow()
    claimed = session.execute(
        update(Round)
        .where(
            Round.id == round_.id,
            Round.map_key.is_(None),
            or_(Round.map_requested_at.is_(None), Round.map_requested_at < now - MAP_RETRY),
        )
        .values(map_requested_at=now, map_error=None)
    )
    session.commit()
    if claimed.rowcount:  # type: ignore[attr-defined]
        enqueue_map(round_.id)
    session.refresh(round_)


@router.get("/projects/{project_id}/latent-map")
def latent_map(
    project: MemberProject,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 5000,
) -> dict[str, Any]:
    """The newest finished round's latent space in 2-D, each point with its status, label and (for
    engineers and admins) the task model's prediction.

    The layout is t-SNE (`layout: "tsne"`), built by a worker the first time the map is asked for;
    until then a PCA projection is returned with `layout_pending: true`, and asking again later gives
    the t-SNE one. `space` says which representation the round selected in.
    """
    # A round whose strategy needed no latent space (random without a representation) has none:
    # the map shows the newest round that has one.
    latest = next(
        (
            r
            for r in session.scalars(
                select(Round)
                .where(Round.project_id == project.id, Round.status.in_(["ready", "closed"]))
                .order_by(Round.index.desc())
                .limit(MAP_ROUNDS_BACK)
            )
            if (r.artifacts or {}).get("latents")
        ),
        None,
    )
    empty: dict[str, Any] = {"round_id": None, "data": [], "count": 0, "layout": None, "layout_pending": False}
    if latest is None:
        return {**empty, "message": "no latents yet: run a round whose strategy uses a latent space"}
    pending = False
    layout = _load_npz(storage, latest.map_key, "ids", "xy", "method")
    if layout is None:
        loaded = _load_npz(storage, latest.artifacts["latents"], "ids", "codes|features")
        if loaded is None:
            return {**empty, "round_id": latest.id, "message": "the latents artifact is missing"}
        _request_map(session, latest)
        pending = latest.map_error is None
    ids, values = layout[:2] if layout is not None else loaded
    if len(ids) > limit:
        keep = np.sort(np.random.default_rng(0).choice(len(ids), size=limit, replace=False))
        ids, values = ids[keep], values[keep]
    # The stored t-SNE layout, or a PCA projection of the (sampled) latents until it is built.
    xy, method = (values.astype(np.float64), str(layout[2])) if layout is not None else (pca_2d(values), "pca")
    predicted: dict[int, tuple[str, float]] = {}
    if user.role != Role.annotator:
        found = _load_npz(storage, (latest.artifacts or {}).get("predictions"), "ids", "predicted", "confidence")
        if found is not None:
            classes = project.classes
            predicted = {
                int(i): (classes[int(c)], round(float(p), 3))
                for i, c, p in zip(*found, strict=True)
                if 0 <= int(c) < len(classes)
            }
    labelled = annotations.current_labels(session, project_id=project.id)
    current = projects.open_round(session, project_id=project.id)
    suggested = (
        set(session.scalars(select(Suggestion.image_id).where(Suggestion.round_id == current.id))) if current else set()
    )
    synthetic = set(session.scalars(select(Image.id).where(Image.project_id == project.id, Image.synthetic.is_(True))))
    data = []
    for image_id, (x, y) in zip(ids.tolist(), xy.tolist(), strict=True):
        status = (
            "synthetic"
            if image_id in synthetic
            else "labelled"
            if image_id in labelled
            else "suggested"
            if image_id in suggested
            else "unlabelled"
        )
        guess = predicted.get(image_id)
        data.append(
            {
                "image_id": image_id,
                "x": round(x, 4),
                "y": round(y, 4),
                "status": status,
                "label": labelled.get(image_id),
                "predicted": guess[0] if guess else None,
                "confidence": guess[1] if guess else None,
            }
        )
    representation = (latest.metrics or {}).get("representation") or {}
    return {
        "round_id": latest.id,
        "round_index": latest.index,
        "layout": method,
        "layout_pending": pending,
        "layout_error": latest.map_error,
        "space": representation.get("kind"),
        "classes": project.classes,
        "data": data,
        "count": len(data),
    }
