from __future__ import annotations

import io
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from sqlalchemy import select

from app.annotations import service as annotations
from app.api.deps import MemberProject, SessionDep, StorageDep
from app.images.orm import Image
from app.projects import service as projects
from app.rounds.orm import Round, Suggestion
from app.storage import StorageError
from models.strategies.registry import SPECS

router = APIRouter(tags=["latent space"])


@router.get("/strategies")
def list_strategies() -> dict[str, Any]:
    """Registered selection strategies with what each one does."""
    data = [{"name": s.name, "description": s.description, "needs_labels": s.needs_labels} for s in SPECS.values()]
    return {"data": sorted(data, key=lambda d: d["name"]), "count": len(data)}


def pca_2d(codes: np.ndarray) -> np.ndarray:
    centred = codes - codes.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


@router.get("/projects/{project_id}/latent-map")
def latent_map(
    project: MemberProject,
    session: SessionDep,
    storage: StorageDep,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 5000,
) -> dict[str, Any]:
    """The pool's VAE latents projected to 2-D (PCA), each point with its status for colouring."""
    latest = session.scalar(
        select(Round)
        .where(Round.project_id == project.id, Round.status.in_(["ready", "closed"]))
        .order_by(Round.index.desc())
        .limit(1)
    )
    key = (latest.artifacts or {}).get("latents") if latest else None
    if latest is None or not key:
        return {"round_id": None, "data": [], "count": 0, "message": "no latents yet: run a round first"}
    try:
        with np.load(io.BytesIO(storage.get(key))) as npz:
            ids, codes = npz["ids"], npz["codes"]
    except (StorageError, OSError, ValueError, KeyError):
        return {"round_id": latest.id, "data": [], "count": 0, "message": "the latents artifact is missing"}
    if len(ids) > limit:
        keep = np.random.default_rng(0).choice(len(ids), size=limit, replace=False)
        ids, codes = ids[keep], codes[keep]
    xy = pca_2d(codes.astype(np.float64)) if len(ids) > 2 else np.zeros((len(ids), 2))
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
        data.append(
            {
                "image_id": image_id,
                "x": round(x, 4),
                "y": round(y, 4),
                "status": status,
                "label": labelled.get(image_id),
            }
        )
    return {"round_id": latest.id, "data": data, "count": len(data)}
