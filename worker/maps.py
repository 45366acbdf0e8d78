"""The latent map of a finished round: a t-SNE layout of the round's latent space, built once.

The API asks for it the first time someone opens the map (rounds nobody looks at never pay for it)
and shows a PCA projection until it is ready. The job runs on the light queue beside rounds; it
needs numpy and openTSNE only, no torch.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from sqlalchemy import select, update

from app.annotations.service import current_labels
from app.core.db import session_scope
from app.core.settings import Settings
from app.rounds.orm import Round, Suggestion
from app.storage import get_storage
from models.cores import usable_cores
from models.layout import layout_2d, map_sample
from worker.jobs import failure_text

log = logging.getLogger("suggestlab.worker")

# t-SNE on 5,000 points takes 7-9 s on 2 cores (benchmarks/map_layout.py); the map shows at most this many.
MAP_POINTS = 5000


def map_key(project_id: int, round_id: int) -> str:
    return f"projects/{project_id}/rounds/{round_id}/map.npz"


def build_map(round_id: int, settings: Settings) -> None:
    with session_scope(settings) as session:
        round_ = session.get(Round, round_id)
        if round_ is None or round_.map_key or not (round_.artifacts or {}).get("latents"):
            return
        project_id, latents_key = round_.project_id, round_.artifacts["latents"]
        keep = set(current_labels(session, project_id=project_id))
        keep |= set(session.scalars(select(Suggestion.image_id).where(Suggestion.round_id == round_id)))
    storage = get_storage(settings)
    try:
        with np.load(io.BytesIO(storage.get(latents_key))) as npz:
            # A round's own latents ("codes"), or the representation's features it selected in.
            ids, codes = npz["ids"], npz["codes" if "codes" in npz.files else "features"]
        chosen = map_sample(ids, keep, MAP_POINTS)
        xy, method = layout_2d(codes[chosen], seed=round_id, n_jobs=min(usable_cores(), 8))
        buf = io.BytesIO()
        np.savez_compressed(buf, ids=ids[chosen], xy=xy.astype(np.float32), method=np.array(method))
        key = map_key(project_id, round_id)
        storage.put(key, buf.getvalue())
    except Exception as exc:
        log.warning("latent map of round %s failed", round_id, exc_info=True)
        with session_scope(settings) as session:
            session.execute(update(Round).where(Round.id == round_id).values(map_error=failure_text(exc)))
        return
    with session_scope(settings) as session:
        session.execute(update(Round).where(Round.id == round_id).values(map_key=key, map_error=None))
